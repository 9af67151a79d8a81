import numpy as np
import pytest
import torch

from reasonact.tokenizers import ActionTokenizer, TextTokenizer, TraceTokenizer, Vocab, resample_trace
from reasonact.tokenizers.trace import UNKNOWN


def test_action_tokens_round_trip_within_one_bin():
    tok = ActionTokenizer(low=[-1.0, -0.5, 0.0, -1.0], high=[1.0, 0.5, 2.0, 1.0])
    rng = np.random.default_rng(0)
    a = rng.uniform(tok.low, tok.high, size=(1000, 4))
    ids = tok.encode(a)
    assert ids.min() >= 0 and ids.max() < 256 and ids.dtype == np.int64
    err = np.abs(tok.decode(ids) - a)
    assert (err <= tok.bin_width() / 2 + 1e-6).all()
    # Outside the quantile bounds: clipped to the extreme bins.
    np.testing.assert_array_equal(tok.encode(np.array([[-9.0, 9.0, -9.0, 9.0]])), [[0, 255, 0, 255]])
    with pytest.raises(ValueError, match="4 dimensions"):
        tok.encode(np.zeros((2, 3)))


def test_action_tokenizer_needs_quantile_stats():
    with pytest.raises(ValueError, match="q01"):
        ActionTokenizer.from_stats({"action": {"mean": [0.0]}})
    tok = ActionTokenizer.from_stats({"action": {"q01": [-2.0], "q99": [2.0]}}, bins=8)
    assert tok.to_dict()["bins"] == 8 and ActionTokenizer.from_dict(tok.to_dict()) == tok


def test_trace_tokens_round_trip_within_one_bin():
    tok = TraceTokenizer(width=128, height=96, points=5)
    pts = np.random.default_rng(1).uniform([0, 0], [128, 96], size=(50, 5, 2))
    ids = tok.encode(pts)
    assert ids.shape == (50, 10) and ids.min() >= 0 and ids.max() < 256
    back = tok.decode(ids)
    assert (np.abs(back - pts) <= np.array([128 / 256, 96 / 256]) / 2 + 1e-6).all()


def test_relative_trace_writes_offsets_from_the_first_point():
    tok = TraceTokenizer(width=64, height=64, points=5, relative=True)
    pts = np.random.default_rng(2).uniform(0, 60, size=(50, 5, 2))
    back = tok.decode(tok.encode(pts))
    np.testing.assert_allclose(back[:, 0], pts[:, 0], atol=64 / 256 / 2 + 1e-6)  # the first point: absolute bins
    assert np.abs(back - pts).max() <= 64 / 256 * 1.5 + 1e-5  # later ones: twice as coarse, plus the first's error
    # The same path moved whole (by a whole number of bins): only the first point's tokens change.
    moved = tok.encode(pts + 2.0)
    np.testing.assert_array_equal(moved[:, 2:], tok.encode(pts)[:, 2:])
    assert (moved[:, :2] != tok.encode(pts)[:, :2]).all()
    # A path heading right and down: the first offset's bins lie above the middle, whatever the start.
    ids = tok.encode(np.array([[[5.0, 5.0], [15.0, 12.0]], [[50.0, 40.0], [60.0, 47.0]]]))
    np.testing.assert_array_equal(ids[0, 2:], ids[1, 2:])
    assert (ids[:, 2:] > 128).all()
    # object points are never relative; the setting survives saving
    np.testing.assert_array_equal(tok.encode_points(pts), TraceTokenizer(64, 64).encode(pts))
    assert TraceTokenizer.from_dict(tok.to_dict()) == tok


def test_a_narrower_offset_range_writes_offsets_in_finer_bins_and_clips_beyond_it():
    coarse = TraceTokenizer(width=64, height=64, points=3, relative=True, depth=(0.5, 1.3))
    fine = TraceTokenizer(width=64, height=64, points=3, relative=True, depth=(0.5, 1.3), offset_range=0.25)
    rng = np.random.default_rng(4)
    start = np.concatenate([rng.uniform(20, 44, (200, 1, 2)), rng.uniform(0.7, 1.1, (200, 1, 1))], -1)
    step = np.concatenate([rng.uniform(-12, 12, (200, 2, 2)), rng.uniform(-0.15, 0.15, (200, 2, 1))], -1)
    pts = np.concatenate([start, start + step], 1)  # offsets within a quarter of each axis
    for tok, scale in ((coarse, 1.0), (fine, 0.25)):
        err = np.abs(tok.decode(tok.encode(pts)) - pts)
        assert (err[:, 0] <= np.array([64, 64, 0.8]) / 256 / 2 + 1e-6).all()  # the first point: absolute bins
        bound = np.array([64 / 256 * (0.5 + scale), 64 / 256 * (0.5 + scale), 0.8 / 256 * (0.5 + scale)]) + 1e-5
        assert (err[:, 1:] <= bound).all()
    # a 1-pixel step moves the offset by 2 bins in the coarse tokenizer and by 8 in the fine one
    one = np.array([[30.0, 30.0, 0.9], [31.0, 30.0, 0.9]])
    assert coarse.encode(one)[3] - coarse.encode(one[:1].repeat(2, 0))[3] == 2
    assert fine.encode(one)[3] - fine.encode(one[:1].repeat(2, 0))[3] == 8
    # an offset beyond the range is clipped to its edge; the setting survives saving, and old tokenizers read as 1
    far = fine.decode(fine.encode(np.array([[30.0, 30.0, 0.9], [60.0, 30.0, 0.9]])))
    assert 45.5 < far[1, 0] < 46.5  # 30 + 16 pixels
    assert TraceTokenizer.from_dict(fine.to_dict()) == fine
    assert TraceTokenizer.from_dict({k: v for k, v in coarse.to_dict().items() if k != "offset_range"}) == coarse
    with pytest.raises(ValueError, match="offset range"):
        TraceTokenizer(width=64, height=64, relative=True, offset_range=0)


def test_a_depth_trace_writes_three_coordinates_per_point_and_leaves_depth_open_when_not_given():
    for relative in (False, True):
        tok = TraceTokenizer(width=64, height=64, points=5, relative=relative, depth=(0.5, 1.3))
        assert tok.dims == 3 and tok.length == 15
        rng = np.random.default_rng(3)
        pts = np.concatenate([rng.uniform(0, 60, (40, 5, 2)), rng.uniform(0.6, 1.2, (40, 5, 1))], -1)
        ids = tok.encode(pts)
        assert ids.shape == (40, 15) and ids.min() >= 0 and ids.max() < 256
        back = tok.decode(ids)
        assert back.shape == (40, 5, 3)
        bin_m, bin_px = 0.8 / 256, 64 / 256
        np.testing.assert_allclose(back[..., 0, 2], pts[..., 0, 2], atol=bin_m / 2 + 1e-6)  # the first: absolute
        assert np.abs(back[..., 2] - pts[..., 2]).max() <= bin_m * (1.5 if relative else 0.5) + 1e-6
        assert np.abs(back[..., :2] - pts[..., :2]).max() <= bin_px * (1.5 if relative else 0.5) + 1e-5
        # the depth tokens are every third; pixels alone give the same x, y tokens and UNKNOWN depth
        flat = tok.encode(pts[..., :2])
        np.testing.assert_array_equal(flat[:, 2::3], UNKNOWN)
        xy = np.ones(15, bool)
        xy[2::3] = False
        np.testing.assert_array_equal(flat[:, xy], ids[:, xy])
        assert TraceTokenizer.from_dict(tok.to_dict()) == tok
    # deeper is a higher bin; the points block stays two coordinates
    near, far = TraceTokenizer(64, 64, points=1, depth=(0.5, 1.3)).encode(np.array([[[9.0, 9.0, 0.7]], [[9.0, 9.0, 1.1]]]))
    assert far[2] > near[2] and (far[:2] == near[:2]).all()
    assert TraceTokenizer(64, 64, depth=(0.5, 1.3)).encode_points(np.zeros((2, 2))).shape == (4,)
    # resampling counts depth in bins: a path straight along a ray (one pixel) is still spread out in depth
    tok = TraceTokenizer(64, 64, points=3, depth=(0.5, 1.3))
    r = tok.resample(np.array([[10.0, 10.0, 0.6], [10.0, 10.0, 1.0]]))
    np.testing.assert_allclose(r[:, 2], [0.6, 0.8, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="near to far"):
        TraceTokenizer(64, 64, depth=(1.0, 0.5))


def test_resample_trace_keeps_ends_and_spacing():
    line = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    r = resample_trace(line, 5)
    np.testing.assert_allclose(r[0], [0, 0])
    np.testing.assert_allclose(r[-1], [10, 10])
    np.testing.assert_allclose(np.linalg.norm(np.diff(r, axis=0), axis=1), 5.0, atol=1e-5)
    assert resample_trace(np.array([[3.0, 4.0]]), 5).shape == (5, 2)


def test_text_bpe_round_trips_and_encodes_new_words():
    tok = TextTokenizer.train(["open the drawer", "close the drawer", "push the puck to the goal"], vocab_size=300)
    for t in ("open the drawer", "push the puck to the goal", "a zebra never seen"):
        assert tok.decode(tok.encode(t)) == t
    assert len(tok.encode("open the drawer")) < len("open the drawer")  # merges were learnt
    b = TextTokenizer.bytes()
    assert b.decode(b.encode("Hi there")) == "hi there" and b.vocab_size == 256


def test_vocab_ranges_are_disjoint_and_cover_the_blocks():
    v = Vocab(text=300)
    ranges = {b: v.block_range(b) for b in ("depth", "trace", "act")}
    spans = sorted(ranges.values())
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert ranges["act"][1] == v.size
    lo, hi = v.block_range("think")
    assert lo <= v.pad < hi and lo <= v.eot < hi and not lo <= v.mask < hi


def test_depth_vae_baseline_is_the_training_mean_not_the_learnt_base():
    from reasonact.tokenizers.depth_vae import DepthVAE, DepthVAEConfig, evaluate_depth_vae

    torch.manual_seed(0)
    vae = DepthVAE(DepthVAEConfig(input_size=8, grid=2, near=0.5, far=1.5))
    depths = torch.rand(10, 8, 8) + 0.5
    mean_image = vae.normalize(depths).mean(0, keepdim=True)
    before = evaluate_depth_vae(vae, depths, mean_image)["mean_image_mae_m"]
    with torch.no_grad():
        vae.base.add_(0.5)  # training moves the base; the baseline must not move with it
    after = evaluate_depth_vae(vae, depths, mean_image)["mean_image_mae_m"]
    expected = (vae.denormalize(mean_image)[0] - depths).abs().mean().item()
    assert before == pytest.approx(expected, rel=1e-5) and after == pytest.approx(expected, rel=1e-5)


@pytest.mark.sim
def test_depth_vae_learns_and_reports_metres(tiny_dataset, tmp_path):
    from reasonact.tokenizers.depth_vae import DepthVAE, train_depth_vae

    m = train_depth_vae(tiny_dataset, tmp_path / "vae", steps=300, batch_size=32, progress=False)
    assert {"mae_m", "mean_image_mae_m", "codes_used", "near_m", "far_m"} <= set(m)
    # On held-out episodes the codes carry more than the scene's average depth image.
    assert m["mae_m"] < m["mean_image_mae_m"], m
    vae = DepthVAE.load(tmp_path / "vae")
    from reasonact.data import load_dataset

    ds = load_dataset(tiny_dataset)
    depth = torch.from_numpy(np.stack([ds.depth(i) for i in range(0, len(ds), 7)]))
    codes = vae.encode(depth)
    assert codes.shape == (len(depth), 16) and codes.min() >= 0 and codes.max() < 128
    recon = vae.decode(codes)
    assert recon.shape == (len(depth), 32, 32)
    assert len({tuple(c) for c in codes.tolist()}) > 1  # different frames, different codes
    # The range is the workspace: where the end effector goes, not the far background.
    assert 0.5 < vae.cfg.near < vae.cfg.far < 3.5
    with pytest.raises(FileNotFoundError, match="train-depth-vae"):
        DepthVAE.load(tmp_path / "missing")


@pytest.mark.sim
def test_a_given_depth_tokenizer_sets_the_vocabularys_depth_codes(tiny_dataset, tmp_path):
    """A policy trained with --depth-vae of 64 codes (not the default 128) has 64 depth codes, and writes them."""
    import reasonact
    from reasonact.data import load_dataset
    from reasonact.tokenizers.depth_vae import train_depth_vae

    train_depth_vae(tiny_dataset, tmp_path / "vae", steps=20, batch_size=16, codebook=64, progress=False)
    run = reasonact.train(tiny_dataset, tmp_path / "run", config="debug", steps=2, batch_size=4,
                          reasoning="depth+trace", depth_vae=str(tmp_path / "vae"), progress=False)
    policy = reasonact.load_policy(run)
    assert policy.tok.vocab.depth == 64
    pred = policy.predict(load_dataset(tiny_dataset)[0])
    assert pred.depth_tokens.shape == (16,) and 0 <= pred.depth_tokens.min() and pred.depth_tokens.max() < 64
    assert policy.depth_image(pred.depth_tokens).shape == (32, 32)
