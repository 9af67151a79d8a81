"""``reasonact serve``: a policy behind a websocket (msgpack + numpy arrays; see docs/serving.md).

The wire protocol is openpi's, so its ``WebsocketClientPolicy`` and ``ActionChunkBroker`` work unchanged:
right after the handshake the server sends one binary frame of metadata (the policy's facts), every reply
is one binary msgpack map, and an error comes back as a text frame naming the problem (openpi's client
raises it); the connection then stays open. One asyncio loop serves many clients; predictions run one at
a time on a worker thread, so health checks stay answered while the model works. ``GET /healthz`` (and
``/health``) answers plain HTTP on the same port.

Bounds: every request is checked against the limits in ``protocol`` (rounds, instruction length, image
size, finite numbers); a prediction that outlasts ``request_timeout`` seconds is answered with an error and
``/healthz`` reports the worker as stuck (HTTP 503); a request whose client has gone is dropped before it
runs; a websocket opened by a web page is refused unless the page comes from this machine (loopback) or
from an origin given with ``allow_origins``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .codec import CodecError, packb, unpackb
from .protocol import Frame, RequestError, parse_request, prediction_reply
from .runner import Background, forbidden_origin, run_until_interrupted

DEFAULT_PORT = 8765
MAX_PAYLOAD = 8 * 2**20  # bytes; a 1024x1024 RGB image with depth fits
REQUEST_TIMEOUT = 30.0  # seconds a prediction may take before its client gets an error
CONTROL = "__ctrl__"  # openpi's client marks its episode_start / episode_end messages with this key


class ClientGone(Exception):
    """The client closed its connection before its request ran."""


def policy_info(policy) -> dict:
    return policy.info.to_dict()


class PolicyServer:
    def __init__(self, policy, *, max_payload: int = MAX_PAYLOAD, request_timeout: float = REQUEST_TIMEOUT,
                 allow_origins: tuple[str, ...] = ()):
        self.policy = policy
        self.max_payload = max_payload
        self.request_timeout = request_timeout
        self.allow_origins = tuple(allow_origins)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="policy")
        self.served = 0
        self.dropped = 0
        self.started = time.time()
        self._busy_since: float | None = None  # when the prediction now running began

    def health(self) -> dict:
        busy = None if self._busy_since is None else time.time() - self._busy_since
        stuck = busy is not None and busy > self.request_timeout
        return {"type": "health", "status": "stuck" if stuck else "ok", "busy_s": busy, "served": self.served,
                "dropped": self.dropped, "uptime_s": time.time() - self.started, "policy": policy_info(self.policy)}

    def _predict(self, ws, kwargs: dict):
        """On the worker thread: the prediction, unless the client left while the request waited its turn."""
        from websockets.protocol import State

        if ws.state is not State.OPEN:
            self.dropped += 1
            raise ClientGone
        self._busy_since = time.time()
        try:
            return self.policy.predict(**kwargs)
        finally:
            self._busy_since = None

    def metadata(self) -> dict:
        """Sent once to every client right after the handshake (openpi's clients wait for it)."""
        return {"server": "reasonact", "policy": policy_info(self.policy)}

    def handle_bytes(self, message) -> tuple[dict, dict, Frame]:
        """Decode and check one message: (request, predict kwargs or {} for health, the image frame)."""
        if isinstance(message, str):
            raise RequestError("send binary msgpack frames, not text")
        if len(message) > self.max_payload:
            raise RequestError(f"payload of {len(message)} bytes exceeds the server's limit of {self.max_payload} bytes")
        req = unpackb(message)
        if not isinstance(req, dict):
            raise RequestError(f"a request must be a map, got {type(req).__name__}")
        kind = req.get("type", "predict")
        if kind == "health" or CONTROL in req:
            return req, {}, Frame()
        if kind != "predict":
            raise RequestError(f"unknown request type {kind!r}; use 'predict' or 'health'")
        return req, *parse_request(req, self.policy.info)

    async def connection(self, ws) -> None:
        loop = asyncio.get_running_loop()
        await ws.send(packb(self.metadata()))
        async for message in ws:
            t0 = time.perf_counter()
            try:
                req, kwargs, frame = self.handle_bytes(message)
                if CONTROL in req:  # openpi's episode_start / episode_end: acknowledged as openpi's server does
                    reply = {"__ack__": req[CONTROL] if req[CONTROL] in ("episode_start", "episode_end") else "ignored"}
                elif not kwargs:
                    reply = self.health()
                else:
                    t1 = time.perf_counter()
                    work = loop.run_in_executor(self._executor, self._predict, ws, kwargs)
                    try:
                        pred = await asyncio.wait_for(asyncio.shield(work), self.request_timeout)
                    except TimeoutError:  # the worker finishes it; its result (or error) is dropped then
                        work.add_done_callback(lambda f: f.cancelled() or f.exception())
                        raise RequestError(f"the prediction did not finish within {self.request_timeout:g} s; "
                                           "the server is overloaded or stuck (see /healthz)") from None
                    t2 = time.perf_counter()
                    reply = prediction_reply(pred, req.get("id"), frame)
                    reply["server_timing"] = {"decode_ms": (t1 - t0) * 1000, "predict_ms": (t2 - t1) * 1000}
                    self.served += 1
            except ClientGone:
                return
            except (RequestError, CodecError, ValueError) as e:
                await ws.send(f"error: {e}")  # a text frame: openpi's client raises it
                continue
            except Exception as e:  # a bug, not the client's fault: report it and keep serving
                await ws.send(f"internal error: {type(e).__name__}: {e}")
                continue
            reply.setdefault("server_timing", {})["total_ms"] = (time.perf_counter() - t0) * 1000
            await ws.send(packb(reply))

    def process_request(self, connection, request):
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        if request.path.split("?")[0] in ("/healthz", "/health"):
            health = self.health()
            body = json.dumps(health).encode()
            code, reason = (200, "OK") if health["status"] == "ok" else (503, "Service Unavailable")
            return Response(code, reason, Headers({"Content-Type": "application/json", "Content-Length": str(len(body))}),
                            body)
        return forbidden_origin(request, self.allow_origins)

    async def run(self, host: str, port: int, ready: threading.Event | None = None, stop: asyncio.Event | None = None):
        from websockets.asyncio.server import serve as ws_serve

        async with ws_serve(self.connection, host, port, max_size=2 * self.max_payload,
                            process_request=self.process_request) as server:
            self.port = server.sockets[0].getsockname()[1]
            if ready is not None:
                ready.set()
            await (stop.wait() if stop is not None else asyncio.Future())


def serve(checkpoint, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT, device: str | None = None,
          max_payload: int = MAX_PAYLOAD, request_timeout: float = REQUEST_TIMEOUT,
          allow_origins: tuple[str, ...] = ()) -> None:
    from ..policy import load_policy

    server = PolicyServer(load_policy(checkpoint, device), max_payload=max_payload, request_timeout=request_timeout,
                          allow_origins=allow_origins)
    run_until_interrupted(server, host, port, f"serving {checkpoint} on ws://{host}:{{port}} (health: "
                          f"http://{host}:{{port}}/healthz); Ctrl-C stops")


class BackgroundServer(Background):
    """A PolicyServer on a thread (tests, notebooks): ``with BackgroundServer(policy) as url: ...``."""

    def __init__(self, policy, host: str = "127.0.0.1", port: int = 0, **kwargs):
        super().__init__(PolicyServer(policy, **kwargs), host, port, "ws")
