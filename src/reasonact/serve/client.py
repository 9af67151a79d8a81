"""``PolicyClient(url).predict(obs, instruction)``: the policy server, called like a local policy."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..interface import PolicyInfo, Prediction
from .codec import packb, unpackb


class PolicyServerError(RuntimeError):
    """The server answered with an error (the message says what was wrong with the request)."""


def _array(value, dtype) -> np.ndarray | None:
    """The reply's lists (kept whole for openpi's ActionChunkBroker) back as arrays."""
    return None if value is None else np.asarray(value, dtype=dtype)


class PolicyClient:
    def __init__(self, url: str = "ws://127.0.0.1:8765", *, timeout: float = 60.0):
        from websockets.sync.client import connect

        self.url = url
        self._ws = connect(url, max_size=None, open_timeout=timeout, close_timeout=5)
        self.timeout = timeout
        self.last_reply: dict | None = None
        self._next_id = 0
        self.metadata: dict = self._receive()  # the server sends its metadata right after the handshake
        self._info = PolicyInfo.from_dict(self.metadata["policy"])

    @property
    def info(self) -> PolicyInfo:
        """The served policy's facts (sent by the server on connect)."""
        return self._info

    def _receive(self) -> dict:
        reply = self._ws.recv(timeout=self.timeout)
        if isinstance(reply, str):  # errors come back as text frames
            raise PolicyServerError(reply.removeprefix("error: "))
        return unpackb(reply)

    def request(self, message: dict) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, **message}
        self._ws.send(packb(message))
        self.last_reply = self._receive()
        return self.last_reply

    def send_raw(self, data: bytes) -> dict:
        """Send bytes as they are (for testing servers); returns the decoded reply or raises its error."""
        self._ws.send(data)
        return self._receive()

    def health(self) -> dict:
        return self.request({"type": "health"})

    def predict(self, obs: dict, instruction: str | None = None, *, trace: np.ndarray | None = None,
                decoder: str | None = None, diffusion_steps: int | None = None, seed: int = 0) -> Prediction:
        """Mirror of :meth:`reasonact.policy.Policy.predict`, answered by the server."""
        instruction = instruction if instruction is not None else obs.get("instruction")
        msg: dict[str, Any] = {"type": "predict", "rgb": np.asarray(obs["rgb"]), "state": np.asarray(obs["state"], np.float32),
                               "instruction": instruction, "seed": seed}
        others = [v for v in self.info.views[1:] if v in obs.get("images", {})]  # rgb is the first view
        if others:
            msg["images"] = {v: np.asarray(obs["images"][v]) for v in others}
        if obs.get("depth") is not None:
            msg["depth"] = np.asarray(obs["depth"], np.float32)
        if trace is not None:
            msg["trace"] = np.asarray(trace, np.float32)
        if decoder is not None:
            msg["decoder"] = decoder
        if diffusion_steps is not None:
            msg["diffusion_steps"] = int(diffusion_steps)
        r = self.request(msg)
        return Prediction(actions=r["actions"], trace=_array(r.get("trace"), np.float32),
                          depth_tokens=_array(r.get("depth_tokens"), np.int64), rationale=r.get("rationale"),
                          nfe=r["nfe"], latency_ms=r["latency_ms"], trace_given=trace is not None,
                          points=_array(r.get("points"), np.float32), trace_depth=_array(r.get("trace_depth"), np.float32))

    def predict_batch(self, observations: Sequence[dict], instructions: Sequence[str] | None = None, *,
                      traces: Sequence[np.ndarray] | None = None, diffusion_steps: int | None = None,
                      seed: int = 0) -> list[Prediction]:
        """One request per observation (the server answers them in turn)."""
        return [self.predict(o, None if instructions is None else instructions[i],
                             trace=None if traces is None else traces[i], diffusion_steps=diffusion_steps, seed=seed)
                for i, o in enumerate(observations)]

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> "PolicyClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
