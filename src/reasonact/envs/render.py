"""Offscreen rendering of named MuJoCo cameras, shared by the simulator adapters.

Shadows and reflections are off (about 3x faster on a CPU renderer). Cameras whose up vector points down in
the world render upside down; their images are turned the right way up here, and the matrices returned
describe the image as returned (OpenCV convention, see :mod:`reasonact.envs.camera`).
"""

from __future__ import annotations

import os

import numpy as np

from .camera import intrinsics_from_fovy

# Model fields a frame depends on that a simulator may change after the model is built (colours, lights, cameras).
SYNCED = ("geom_rgba", "site_rgba", "mat_rgba", "light_active", "light_pos", "light_dir", "light_ambient",
          "light_diffuse", "light_specular", "cam_pos", "cam_quat", "cam_fovy")


def simplify_meshes(model, cell: float) -> tuple[int, int]:
    """Coarsen ``model``'s visual-only meshes (no collisions) in place for rendering: vertices within the same
    ``cell``-metre grid cell and facing the same octant merge into the first of them, and triangles left without
    area are dropped; each corner keeps its own normal and texture coordinate. Physics is untouched. Returns the
    triangle counts (before, after). Call before a renderer is made from the model (meshes upload then)."""
    import mujoco

    meshes = {int(model.geom_dataid[g]) for g in range(model.ngeom)
              if model.geom_type[g] == mujoco.mjtGeom.mjGEOM_MESH and model.geom_group[g] != 0
              and model.geom_contype[g] == 0 and model.geom_conaffinity[g] == 0}
    before = after = 0
    for i in sorted(meshes):
        fa, fn, va, vn = model.mesh_faceadr[i], model.mesh_facenum[i], model.mesh_vertadr[i], model.mesh_vertnum[i]
        faces, normals = model.mesh_face[fa:fa + fn].copy(), model.mesh_facenormal[fa:fa + fn].copy()
        facing = np.zeros((vn, 3))
        np.add.at(facing, faces.reshape(-1), model.mesh_normal[model.mesh_normaladr[i] + normals.reshape(-1)])
        keys = np.concatenate([np.floor(model.mesh_vert[va:va + vn] / cell), (facing > 0)], axis=1)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        merged = first[inverse.reshape(-1)][faces]
        keep = (merged[:, 0] != merged[:, 1]) & (merged[:, 1] != merged[:, 2]) & (merged[:, 0] != merged[:, 2])
        k = int(keep.sum())
        model.mesh_face[fa:fa + k] = merged[keep]
        model.mesh_facenormal[fa:fa + k] = normals[keep]
        if model.mesh_texcoordnum[i] > 0:
            model.mesh_facetexcoord[fa:fa + k] = model.mesh_facetexcoord[fa:fa + fn][keep].copy()
        model.mesh_facenum[i] = k
        before, after = before + fn, after + k
    return before, after


class ViewRenderer:
    """Renders ``views`` (name -> camera id) of one MuJoCo model at ``resolution`` px square.
    ``hidden_groups``: geom groups left out of the picture (e.g. collision meshes). ``antialias=False`` turns
    off multisampling; ``coarse_views`` are drawn from a copy of the model whose visual meshes are simplified at
    ``coarse_cell`` metres (:func:`simplify_meshes`): both cheaper on a CPU renderer, whose cost is the meshes'
    triangles. Before each of its frames the copy takes the model's colours, lights and cameras (``SYNCED``), which
    simulators change as they run (robosuite hides its sites at reset, perturbations recolour)."""

    def __init__(self, model, views: dict[str, int], resolution: int, hidden_groups: tuple[int, ...] = (),
                 antialias: bool = True, coarse_views: tuple[str, ...] = (), coarse_cell: float = 0.005):
        import copy

        import mujoco

        self.model = model
        self.views = dict(views)
        self.resolution = resolution
        model.vis.global_.offwidth = max(model.vis.global_.offwidth, resolution)
        model.vis.global_.offheight = max(model.vis.global_.offheight, resolution)
        if not antialias:
            model.vis.quality.offsamples = 0
        self._renderer = self._make(model, resolution)
        self._coarse = self._coarse_model = None
        if set(coarse_views) & set(views):
            self._coarse_model = copy.deepcopy(model)
            simplify_meshes(self._coarse_model, coarse_cell)
            self._coarse = self._make(self._coarse_model, resolution)
        self._by_view = {v: self._coarse if v in coarse_views else self._renderer for v in self.views}
        self._option = mujoco.MjvOption()
        for g in hidden_groups:
            self._option.geomgroup[g] = 0

    @staticmethod
    def _make(model, resolution: int):
        import mujoco

        try:
            renderer = mujoco.Renderer(model, resolution, resolution)
        except Exception as e:  # pragma: no cover - depends on the machine's GL stack
            raise RuntimeError(
                f"offscreen rendering failed with MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: {e}. "
                "Install the EGL libraries (Debian: libegl1 libegl-mesa0 libgl1-mesa-dri) or set "
                "MUJOCO_GL=osmesa (Debian: libosmesa6)."
            ) from e
        flags = renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        return renderer

    def flipped(self, data, view: str) -> bool:
        """Whether the camera's image up points down in the world (the image is then turned 180 degrees)."""
        return bool(data.cam_xmat[self.views[view]].reshape(3, 3)[2, 1] < 0)

    def _orient(self, img: np.ndarray, data, view: str) -> np.ndarray:
        return np.ascontiguousarray(img[::-1, ::-1]) if self.flipped(data, view) else img

    def _render(self, data, view: str) -> np.ndarray:
        renderer = self._by_view[view]
        if renderer is self._coarse:
            for name in SYNCED:
                getattr(self._coarse_model, name)[:] = getattr(self.model, name)
        renderer.update_scene(data, camera=self.views[view], scene_option=self._option)
        return self._orient(renderer.render(), data, view)

    def image(self, data, view: str) -> np.ndarray:
        """(H, W, 3) uint8, upright."""
        return self._render(data, view)

    def depth(self, data, view: str) -> np.ndarray:
        """(H, W) float32 metres along the optical axis, upright."""
        self._by_view[view].enable_depth_rendering()
        try:
            return self._render(data, view).astype(np.float32)
        finally:
            self._by_view[view].disable_depth_rendering()

    def segmentation(self, data, view: str) -> np.ndarray:
        """(H, W) int32 geom ids (-1 for background), upright."""
        self._by_view[view].enable_segmentation_rendering()
        try:
            return self._render(data, view)[..., 0].copy()
        finally:
            self._by_view[view].disable_segmentation_rendering()

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
        for renderer in (self._renderer, self._coarse):
            if renderer is not None:
                renderer.close()
        self._renderer = self._coarse = None
