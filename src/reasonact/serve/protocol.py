"""What a predict request may hold and what its reply holds (docs/serving.md).

Two dialects of the same request are accepted: reasonact's own keys (``rgb``, ``images``, ``state``,
``instruction``) and openpi's (``observation/image``, ``observation/wrist_image``, ``observation/state``,
``prompt``), so that openpi's ``WebsocketClientPolicy`` works unchanged. Images of any size are resized on
the server to the policy's resolution, keeping their aspect ratio and padding with black as openpi does (by
area averaging, where openpi resizes bilinearly); a
given trace and the trace and points in the reply are in pixels of the image the client sent (a trace's
depth, given or replied, in metres). An openpi-style request to a LIBERO policy with openpi's 8-number LIBERO
state is read as openpi's LIBERO example sends it: the state converted to the policy's, each image mirrored
back to the policy's orientation (:func:`reasonact.envs.libero.openpi_mirror`), traces mirrored with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

# openpi's observation keys -> ours (LIBERO's layout in openpi's examples)
OPENPI_KEYS = {"observation/image": "rgb", "observation/state": "state", "prompt": "instruction"}
OPENPI_WRIST = "observation/wrist_image"

# Bounds on what one request may ask for, so that no request can hold the server for long (docs/serving.md).
MAX_DIFFUSION_STEPS = 64  # refinement rounds; a block commits at least one token a round, and 64 covers any block
MAX_INSTRUCTION_CHARS = 1000
MAX_IMAGE_SIDE = 2048  # pixels, each side of each image
MAX_TRACE_POINTS = 1000
MAX_SEED = 2**63 - 1


class RequestError(ValueError):
    pass


@dataclass(frozen=True)
class Frame:
    """How the client's first image maps onto the policy's: policy pixel = client pixel * scale + offset, the
    client's pixel first mirrored across its image (``mirror`` "x" or "y", the image ``extent`` (W, H) wide)
    where the client's images are mirrored from the policy's (openpi's LIBERO convention)."""

    scale: float = 1.0
    offset: tuple[float, float] = (0.0, 0.0)
    mirror: str | None = None
    extent: tuple[float, float] = (0.0, 0.0)

    def _mirrored(self, px: np.ndarray) -> np.ndarray:
        if self.mirror is not None:
            k = "xy".index(self.mirror)
            px[..., k] = self.extent[k] - px[..., k]
        return px

    def to_policy(self, px: np.ndarray) -> np.ndarray:
        px = self._mirrored(np.array(px, np.float32))
        return (px * self.scale + np.asarray(self.offset, np.float32)).astype(np.float32)

    def to_client(self, px: np.ndarray | None) -> np.ndarray | None:
        if px is None:
            return None
        px = (np.asarray(px, np.float32) - np.asarray(self.offset, np.float32)) / self.scale
        return self._mirrored(px.astype(np.float32))


def resize_with_pad(image: np.ndarray, size: int) -> tuple[np.ndarray, Frame]:
    """(H, W, 3) uint8 -> (size, size, 3): scaled to fit, centred, padded with black (openpi's convention)."""
    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image, Frame()
    from PIL import Image

    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    # Area averaging: what rendering at the lower resolution with supersampling would give (exact for
    # integer factors), so a downscaled frame looks like the frames the policy was trained on.
    resized = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((nw, nh), Image.BOX))
    out = np.zeros((size, size, 3), np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[top:top + nh, left:left + nw] = resized
    return out, Frame(scale=nw / w, offset=(float(left), float(top)))


def _image(value: Any, name: str, size: int, mirror: str | None = None) -> tuple[np.ndarray, Frame]:
    if not isinstance(value, np.ndarray):
        raise RequestError(f"field {name!r} must be a numpy array (H, W, 3) uint8")
    if value.dtype != np.uint8:
        raise RequestError(f"field {name!r} must be uint8, got {value.dtype}")
    if value.ndim != 3 or value.shape[2] != 3 or min(value.shape[:2]) < 1:
        raise RequestError(f"field {name!r} must be an (H, W, 3) RGB image, got shape {value.shape}")
    if max(value.shape[:2]) > MAX_IMAGE_SIDE:
        raise RequestError(f"field {name!r} is {value.shape[1]}x{value.shape[0]} pixels; the server takes images "
                           f"of at most {MAX_IMAGE_SIDE} pixels a side (the policy reads {size}x{size})")
    if mirror is None:
        return resize_with_pad(value, size)
    image, frame = resize_with_pad(np.ascontiguousarray(value[:, ::-1] if mirror == "x" else value[::-1]), size)
    return image, dataclasses.replace(frame, mirror=mirror, extent=(float(value.shape[1]), float(value.shape[0])))


def _openpi_to_ours(req: dict, views: tuple[str, ...]) -> dict:
    """Rename openpi's observation keys; a wrist image goes to the policy's second view (ignored if it has one)."""
    out = {k: v for k, v in req.items() if k not in OPENPI_KEYS and k != OPENPI_WRIST}
    for theirs, ours in OPENPI_KEYS.items():
        if theirs in req:
            if ours in req:
                raise RequestError(f"give either {theirs!r} or {ours!r}, not both")
            out[ours] = req[theirs]
    if OPENPI_WRIST in req and len(views) > 1:
        out["images"] = {**(req.get("images") or {}), views[1]: req[OPENPI_WRIST]}
    return out


def parse_request(req: Any, info) -> tuple[dict, Frame]:
    """Check a predict request against the policy's ``info``; return ``policy.predict``'s keyword arguments
    and the frame that maps pixels of the client's first image onto the policy's."""
    if not isinstance(req, dict):
        raise RequestError(f"a request must be a map, got {type(req).__name__}")
    openpi = any(k in req for k in (*OPENPI_KEYS, OPENPI_WRIST))
    if openpi:
        req = _openpi_to_ours(req, info.views)
    for key in ("rgb", "state", "instruction"):
        if key not in req:
            if openpi:
                theirs = next(k for k, v in OPENPI_KEYS.items() if v == key)
                raise RequestError(f"missing field {theirs!r} (an openpi-style request needs observation/image, "
                                   "observation/state and prompt)")
            raise RequestError(f"missing field {key!r} (a predict request needs rgb, state and instruction)")
    state = req["state"]
    if not isinstance(state, (np.ndarray, list)):
        raise RequestError("field 'state' must be an array of numbers")
    state = np.asarray(state)
    if state.dtype.kind not in "fiu":
        raise RequestError(f"field 'state' must hold numbers, got dtype {state.dtype}")
    if not np.isfinite(state).all():
        raise RequestError("field 'state' holds NaN or infinity; send finite numbers")
    openpi_libero = False
    if openpi and info.env == "libero":
        from ..envs import libero  # (only here: importing the adapter sets MUJOCO_GL for the process)

        openpi_libero = state.size == libero.OPENPI_STATE_DIM
        if openpi_libero:  # as openpi's LIBERO example sends it
            state = libero.state_from_openpi(state)

    def mirror(view: str) -> str | None:
        return libero.openpi_mirror(view) if openpi_libero else None

    rgb, frame = _image(req["rgb"], "rgb", info.resolution, mirror(info.views[0]))
    if not isinstance(req["instruction"], str) or not req["instruction"].strip():
        raise RequestError("field 'instruction' must be a non-empty string")
    if len(req["instruction"]) > MAX_INSTRUCTION_CHARS:
        raise RequestError(f"field 'instruction' has {len(req['instruction'])} characters; at most "
                           f"{MAX_INSTRUCTION_CHARS} are accepted")
    out: dict = {"obs": {"rgb": rgb, "state": state.astype(np.float32)}, "instruction": req["instruction"]}
    if req.get("images") is not None:  # the other camera views, by name
        images = req["images"]
        if not isinstance(images, dict) or not all(isinstance(k, str) for k in images):
            raise RequestError("field 'images' must map view names to (H, W, 3) uint8 arrays")
        unknown = sorted(set(images) - set(info.views[1:]))
        if unknown:
            raise RequestError(f"field 'images' names view(s) {unknown} that the policy does not read; its other "
                               f"views are {list(info.views[1:]) or 'none'}")
        out["obs"]["images"] = {k: _image(v, f"images/{k}", info.resolution, mirror(k))[0] for k, v in images.items()}
    if "depth" in req and req["depth"] is not None:
        depth = req["depth"]
        if not isinstance(depth, np.ndarray) or depth.shape != req["rgb"].shape[:2]:
            raise RequestError(f"field 'depth' must be an array of shape {req['rgb'].shape[:2]}")
    if req.get("trace") is not None:
        trace = np.asarray(req["trace"])
        if trace.ndim != 2 or trace.shape[1] not in (2, 3) or trace.shape[0] < 1 or trace.dtype.kind not in "fiu":
            raise RequestError(f"field 'trace' must be (N, 2) pixel coordinates, or (N, 3) with each point's depth in "
                               f"metres, got shape {trace.shape}")
        if not np.isfinite(trace).all():
            raise RequestError("field 'trace' holds non-finite values")
        if len(trace) > MAX_TRACE_POINTS:
            raise RequestError(f"field 'trace' has {len(trace)} points; at most {MAX_TRACE_POINTS} are accepted")
        out["trace"] = np.concatenate([frame.to_policy(trace[:, :2]), trace[:, 2:].astype(np.float32)], 1)
    for key, kinds, what in (("decoder", (str,), "a string"), ("diffusion_steps", (int, np.integer), "an integer"),
                             ("seed", (int, np.integer), "an integer")):
        value = req.get(key)
        if value is not None:
            if not isinstance(value, kinds) or isinstance(value, bool):
                raise RequestError(f"field {key!r} must be {what}")
            out[key] = value if isinstance(value, str) else int(value)
    if not 1 <= out.get("diffusion_steps", 1) <= MAX_DIFFUSION_STEPS:
        raise RequestError(f"field 'diffusion_steps' must be from 1 to {MAX_DIFFUSION_STEPS}, got "
                           f"{out['diffusion_steps']} (the policy's default is {info.default_diffusion_steps})")
    if not 0 <= out.get("seed", 0) <= MAX_SEED:
        raise RequestError(f"field 'seed' must be from 0 to 2**63 - 1, got {out['seed']}")
    return out, frame


def _whole(a: np.ndarray | None) -> list | None:
    """An array as nested lists: openpi's ActionChunkBroker slices every array in a reply by step, and passes
    lists through whole."""
    return None if a is None else np.asarray(a).tolist()


def prediction_reply(pred, request_id, frame: Frame = Frame()) -> dict:
    """The reply to a predict request. ``actions`` is the only array (one row per step); the trace, points and
    depth codes are lists, so that openpi's ActionChunkBroker hands them on whole with every step."""
    return {
        "type": "prediction",
        "id": request_id,
        "actions": np.asarray(pred.actions, np.float32),
        "trace": _whole(frame.to_client(pred.trace)),
        "points": _whole(frame.to_client(pred.points)),
        "trace_depth": _whole(pred.trace_depth),
        "depth_tokens": _whole(pred.depth_tokens),
        "rationale": pred.rationale,
        "nfe": int(pred.nfe),
        "latency_ms": float(pred.latency_ms),
    }
