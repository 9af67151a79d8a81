"""``reasonact serve``: a policy behind a websocket (msgpack + numpy arrays; see docs/serving.md).

One asyncio loop serves many clients; predictions run one at a time on a worker thread, so health
checks stay answered while the model works. A malformed request gets an error reply naming the
problem and the connection stays open. ``GET /health`` answers plain HTTP on the same port.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .codec import CodecError, packb, unpackb
from .runner import Background, run_until_interrupted

DEFAULT_PORT = 8765
MAX_PAYLOAD = 8 * 2**20  # bytes; a 1024x1024 RGB image with depth fits


class RequestError(ValueError):
    pass


def policy_info(policy) -> dict:
    return policy.info.to_dict()


def parse_request(req: Any, policy) -> dict:
    """Check a predict request; return the keyword arguments for ``policy.predict``."""
    if not isinstance(req, dict):
        raise RequestError(f"a request must be a map, got {type(req).__name__}")
    for key in ("rgb", "state", "instruction"):
        if key not in req:
            raise RequestError(f"missing field {key!r} (a predict request needs rgb, state and instruction)")
    rgb = req["rgb"]
    if not isinstance(rgb, np.ndarray):
        raise RequestError("field 'rgb' must be a numpy array (H, W, 3) uint8")
    if rgb.dtype != np.uint8:
        raise RequestError(f"field 'rgb' must be uint8, got {rgb.dtype}")
    state = req["state"]
    if not isinstance(state, (np.ndarray, list)):
        raise RequestError("field 'state' must be an array of numbers")
    state = np.asarray(state)
    if state.dtype.kind not in "fiu":
        raise RequestError(f"field 'state' must hold numbers, got dtype {state.dtype}")
    if not isinstance(req["instruction"], str) or not req["instruction"].strip():
        raise RequestError("field 'instruction' must be a non-empty string")
    out = {"obs": {"rgb": rgb, "state": state.astype(np.float32)}, "instruction": req["instruction"]}
    if req.get("images") is not None:  # the other camera views, by name
        images = req["images"]
        if not isinstance(images, dict) or not all(isinstance(k, str) and isinstance(v, np.ndarray) and v.dtype == np.uint8
                                                   for k, v in images.items()):
            raise RequestError("field 'images' must map view names to (H, W, 3) uint8 arrays")
        out["obs"]["images"] = images
    if "depth" in req and req["depth"] is not None:
        depth = req["depth"]
        if not isinstance(depth, np.ndarray) or depth.shape != rgb.shape[:2]:
            raise RequestError(f"field 'depth' must be an array of shape {rgb.shape[:2]}")
    if req.get("trace") is not None:
        trace = np.asarray(req["trace"])
        if trace.ndim != 2 or trace.shape[1] != 2 or trace.shape[0] < 1 or trace.dtype.kind not in "fiu":
            raise RequestError(f"field 'trace' must be (N, 2) pixel coordinates, got shape {trace.shape}")
        if not np.isfinite(trace).all():
            raise RequestError("field 'trace' holds non-finite values")
        out["trace"] = trace.astype(np.float32)
    for key, kind in (("decoder", str), ("diffusion_steps", int), ("seed", int)):
        if req.get(key) is not None:
            if not isinstance(req[key], kind) or isinstance(req[key], bool):
                raise RequestError(f"field {key!r} must be {'a string' if kind is str else 'an integer'}")
            out[key] = req[key]
    return out


def prediction_reply(pred, request_id) -> dict:
    return {
        "type": "prediction",
        "id": request_id,
        "actions": pred.actions,
        "trace": pred.trace,
        "points": pred.points,
        "depth_tokens": pred.depth_tokens,
        "rationale": pred.rationale,
        "nfe": pred.nfe,
        "latency_ms": pred.latency_ms,
    }


class PolicyServer:
    def __init__(self, policy, *, max_payload: int = MAX_PAYLOAD):
        self.policy = policy
        self.max_payload = max_payload
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")
        self.served = 0
        self.started = time.time()

    def health(self) -> dict:
        return {"type": "health", "status": "ok", "served": self.served, "uptime_s": time.time() - self.started,
                "policy": policy_info(self.policy)}

    def handle_bytes(self, message) -> tuple[dict, dict]:
        """Decode and check one message: (request, predict kwargs or {})."""
        if isinstance(message, str):
            raise RequestError("send binary msgpack frames, not text")
        if len(message) > self.max_payload:
            raise RequestError(f"payload of {len(message)} bytes exceeds the server's limit of {self.max_payload} bytes")
        req = unpackb(message)
        if not isinstance(req, dict):
            raise RequestError(f"a request must be a map, got {type(req).__name__}")
        kind = req.get("type", "predict")
        if kind == "health":
            return req, {}
        if kind != "predict":
            raise RequestError(f"unknown request type {kind!r}; use 'predict' or 'health'")
        return req, parse_request(req, self.policy)

    async def connection(self, ws) -> None:
        loop = asyncio.get_running_loop()
        async for message in ws:
            t0 = time.perf_counter()
            req: dict = {}
            try:
                req, kwargs = self.handle_bytes(message)
                if not kwargs:
                    reply = self.health()
                else:
                    t1 = time.perf_counter()
                    pred = await loop.run_in_executor(self._executor, lambda: self.policy.predict(**kwargs))
                    t2 = time.perf_counter()
                    reply = prediction_reply(pred, req.get("id"))
                    reply["server_timing"] = {"decode_ms": (t1 - t0) * 1000, "predict_ms": (t2 - t1) * 1000}
                    self.served += 1
            except (RequestError, CodecError, ValueError) as e:
                reply = {"type": "error", "id": req.get("id") if isinstance(req, dict) else None, "error": str(e)}
            except Exception as e:  # a bug, not the client's fault: report it and keep serving
                reply = {"type": "error", "id": req.get("id") if isinstance(req, dict) else None,
                         "error": f"internal error: {type(e).__name__}: {e}"}
            reply.setdefault("server_timing", {})["total_ms"] = (time.perf_counter() - t0) * 1000
            await ws.send(packb(reply))

    def process_request(self, connection, request):
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        if request.path.split("?")[0] == "/health":
            body = json.dumps(self.health()).encode()
            return Response(200, "OK", Headers({"Content-Type": "application/json", "Content-Length": str(len(body))}), body)
        return None

    async def run(self, host: str, port: int, ready: threading.Event | None = None, stop: asyncio.Event | None = None):
        from websockets.asyncio.server import serve as ws_serve

        async with ws_serve(self.connection, host, port, max_size=2 * self.max_payload,
                            process_request=self.process_request) as server:
            self.port = server.sockets[0].getsockname()[1]
            if ready is not None:
                ready.set()
            await (stop.wait() if stop is not None else asyncio.Future())


def serve(checkpoint, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, device: str | None = None,
          max_payload: int = MAX_PAYLOAD) -> None:
    from ..policy import load_policy

    server = PolicyServer(load_policy(checkpoint, device), max_payload=max_payload)
    print(f"serving {checkpoint} on ws://{host}:{port} (health: http://{host}:{port}/health); Ctrl-C stops")
    run_until_interrupted(server, host, port)


class BackgroundServer(Background):
    """A PolicyServer on a thread (tests, notebooks): ``with BackgroundServer(policy) as url: ...``."""

    def __init__(self, policy, host: str = "127.0.0.1", port: int = 0, **kwargs):
        super().__init__(PolicyServer(policy, **kwargs), host, port, "ws")
