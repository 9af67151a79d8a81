"""Offscreen rendering of named MuJoCo cameras, shared by the simulator adapters.

Shadows and reflections are off (about 3x faster on a CPU renderer). Cameras whose up vector points down in
the world render upside down; their images are turned the right way up here, and the matrices returned
describe the image as returned (OpenCV convention, see :mod:`reasonact.envs.camera`).
"""

from __future__ import annotations

import os

import numpy as np

from .camera import intrinsics_from_fovy


class ViewRenderer:
    """Renders ``views`` (name -> camera id) of one MuJoCo model at ``resolution`` px square.
    ``hidden_groups``: geom groups left out of the picture (e.g. collision meshes)."""

    def __init__(self, model, views: dict[str, int], resolution: int, hidden_groups: tuple[int, ...] = ()):
        import mujoco

        self.model = model
        self.views = dict(views)
        self.resolution = resolution
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, resolution)
        model.vis.global_.offheight = max(model.vis.global_.offheight, resolution)
        try:
            self._renderer = mujoco.Renderer(model, resolution, resolution)
        except Exception as e:  # pragma: no cover - depends on the machine's GL stack
            raise RuntimeError(
                f"offscreen rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: {e}. "
                "Install the EGL libraries (Debian: libegl1 libegl-mesa0 libgl1-mesa-dri) or set "
                "MUJOCO_GL=osmesa (Debian: libosmesa6)."
            ) from e
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        self._option = mujoco.MjvOption()
        for g in hidden_groups:
            self._option.geomgroup[g] = 0

    def flipped(self, data, view: str) -> bool:
        """Whether the camera's image up points down in the world (the image is then turned 180 degrees)."""
        return bool(data.cam_xmat[self.views[view]].reshape(3, 3)[2, 1] < 0)

    def _orient(self, img: np.ndarray, data, view: str) -> np.ndarray:
        return np.ascontiguousarray(img[::-1, ::-1]) if self.flipped(data, view) else img

    def _render(self, data, view: str) -> np.ndarray:
        self._renderer.update_scene(data, camera=self.views[view], scene_option=self._option)
        return self._orient(self._renderer.render(), data, view)

    def image(self, data, view: str) -> np.ndarray:
        """(H, W, 3) uint8, upright."""
        return self._render(data, view)

    def depth(self, data, view: str) -> np.ndarray:
        """(H, W) float32 metres along the optical axis, upright."""
        self._renderer.enable_depth_rendering()
        try:
            return self._render(data, view).astype(np.float32)
        finally:
            self._renderer.disable_depth_rendering()

    def segmentation(self, data, view: str) -> np.ndarray:
        """(H, W) int32 geom ids (-1 for background), upright."""
        self._renderer.enable_segmentation_rendering()
        try:
            return self._render(data, view)[..., 0].copy()
        finally:
            self._renderer.disable_segmentation_rendering()

    def matrices(self, data, view: str) -> tuple[np.ndarray, np.ndarray]:
        """(intrinsics (3, 3), extrinsics (4, 4) world -> camera) of a view, now, for the image as returned."""
        cid, res = self.views[view], self.resolution
        K = intrinsics_from_fovy(float(self.model.cam_fovy[cid]), res, res)
        R_world_from_mj = data.cam_xmat[cid].reshape(3, 3)  # columns: camera x, y, z (looks along -z)
        # MuJoCo camera frame -> OpenCV frame of the image as returned (turned 180 degrees if flipped).
        C = np.diag([-1.0, 1.0, -1.0]) if self.flipped(data, view) else np.diag([1.0, -1.0, -1.0])
        R = C @ R_world_from_mj.T
        E = np.eye(4)
        E[:3, :3] = R
        E[:3, 3] = -R @ data.cam_xpos[cid]
        return K.astype(np.float32), E.astype(np.float32)

    def observe(self, data, depth_view: str | None = None) -> dict:
        """``images``/``cameras`` of every view, and ``depth`` of ``depth_view`` when given."""
        out = {"images": {v: self.image(data, v) for v in self.views},
               "cameras": {v: self.matrices(data, v) for v in self.views}}
        if depth_view is not None:
            out["depth"] = self.depth(data, depth_view)
        return out

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
