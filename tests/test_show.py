import imageio.v2 as iio
import numpy as np
import pytest
from PIL import Image

from reasonact.data.show import show
from reasonact.viz import draw_trace

pytestmark = pytest.mark.sim


def test_show_writes_a_contact_sheet_and_a_video(tiny_dataset, tmp_path):
    sheet = show(tiny_dataset, 0, tmp_path / "sheet.png")
    img = np.asarray(Image.open(sheet))
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 800
    gif = show(tiny_dataset, 1, tmp_path / "ep.gif")
    frames = iio.mimread(gif)
    assert len(frames) > 10
    mp4 = show(tiny_dataset, 1, tmp_path / "ep.mp4")
    assert iio.get_reader(mp4).count_frames() == len(frames)
    with pytest.raises(ValueError, match=r"\.png"):
        show(tiny_dataset, 0, tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="out of range"):
        show(tiny_dataset, 99, tmp_path / "y.png")


def test_draw_trace_marks_the_given_pixels():
    img = np.zeros((32, 32, 3), np.uint8)
    out = draw_trace(img, np.array([[4.0, 4.0], [20.0, 10.0], [28.0, 28.0]]), scale=4, color=(0, 255, 0))
    assert out.shape == (128, 128, 3)
    assert out[112, 112, 1] == 255  # the last point, filled
    assert out[64, 64].sum() == 0  # far from the path
