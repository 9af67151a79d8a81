"""Conditions a policy never saw in training, for out-of-distribution evaluation: the scene's lighting, its
colours, and where the third-person cameras stand.

``reasonact eval --perturb lighting,camera=0.05`` names each perturbation with an optional strength. Every
episode draws its own perturbation from its layout seed, so an evaluation repeats exactly; the layout itself
(objects, goal, hand) is the same as without the perturbation.
"""

from __future__ import annotations

import numpy as np

# name -> (default strength, what the strength means)
PERTURBATIONS = {
    "lighting": (0.5, "the lights dimmed or brightened by a factor of 1+s (either way, drawn per episode), each "
                      "colour channel tinted by up to s/2, the lights' direction tilted at random"),
    "colors": (0.3, "every geom's and material's colour channels scaled by factors drawn from [1-s, 1+s]"),
    "camera": (0.03, "every fixed camera moved s metres in a direction drawn per episode (its orientation kept; "
                     "the camera matrices in the observation follow it)"),
}


def parse_perturb(spec: str | dict | None) -> dict[str, float]:
    """``"lighting,camera=0.05"`` (or a dict) -> ``{"lighting": 0.5, "camera": 0.05}``; ``""`` -> ``{}``."""
    if not spec:
        return {}
    if isinstance(spec, dict):
        items = list(spec.items())
    else:
        items = []
        for part in str(spec).split(","):
            name, _, value = part.strip().partition("=")
            items.append((name.strip(), value.strip() or None))
    out = {}
    for name, value in items:
        if name not in PERTURBATIONS:
            raise ValueError(f"unknown perturbation {name!r}; choose from {', '.join(PERTURBATIONS)}, each with an "
                             "optional strength, e.g. --perturb lighting,camera=0.05")
        try:
            strength = PERTURBATIONS[name][0] if value is None else float(value)
        except ValueError:
            raise ValueError(f"the strength of perturbation {name!r} must be a number, got {value!r}") from None
        if not 0 <= strength <= (1.0 if name != "camera" else 0.5):
            raise ValueError(f"the strength of perturbation {name!r} must be from 0 to "
                             f"{1.0 if name != 'camera' else 0.5}, got {strength}")
        out[name] = strength
    return out


class ScenePerturber:
    """Keeps a MuJoCo model's original lights, colours and camera positions, and sets a perturbed version of
    them for each episode (``apply(seed)``; with no perturbation the originals are left in place)."""

    FIELDS = ("light_diffuse", "light_ambient", "light_specular", "light_dir", "geom_rgba", "mat_rgba", "cam_pos")

    def __init__(self, model, perturb: dict[str, float]):
        self.model = model
        self.perturb = dict(perturb)
        self.original = {f: getattr(model, f).copy() for f in self.FIELDS}
        head = model.vis.headlight
        self.headlight = (np.array(head.ambient), np.array(head.diffuse), np.array(head.specular))
        self.fixed_cameras = [i for i in range(model.ncam) if int(model.cam_bodyid[i]) == 0]

    def apply(self, seed: int) -> None:
        if not self.perturb:
            return
        m = self.model
        for f, v in self.original.items():
            getattr(m, f)[:] = v
        head = m.vis.headlight
        head.ambient, head.diffuse, head.specular = (v.copy() for v in self.headlight)
        rng = np.random.default_rng([int(seed), 2])
        if "lighting" in self.perturb:
            self._lighting(rng, self.perturb["lighting"])
        if "colors" in self.perturb:
            s = self.perturb["colors"]
            for table in (m.geom_rgba, m.mat_rgba):
                table[:, :3] = np.clip(table[:, :3] * rng.uniform(1 - s, 1 + s, (len(table), 3)), 0, 1)
        if "camera" in self.perturb:
            for cid in self.fixed_cameras:
                step = rng.normal(size=3)
                m.cam_pos[cid] = self.original["cam_pos"][cid] + self.perturb["camera"] * step / np.linalg.norm(step)

    def _lighting(self, rng: np.random.Generator, s: float) -> None:
        m, head = self.model, self.model.vis.headlight
        factor = (1 + s) ** rng.choice([-1.0, 1.0])
        tint = rng.uniform(1 - s / 2, 1 + s / 2, 3)
        for name in ("light_diffuse", "light_ambient", "light_specular"):
            getattr(m, name)[:] = np.clip(self.original[name] * factor * tint, 0, 1)
        head.ambient, head.diffuse, head.specular = (np.clip(v * factor * tint, 0, 1) for v in self.headlight)
        d = self.original["light_dir"] + np.tan(s) * rng.uniform(-1, 1, self.original["light_dir"].shape)
        m.light_dir[:] = d / np.linalg.norm(d, axis=1, keepdims=True)
