"""``reasonact console``: a browser steering console for a policy in a live simulated episode.

One HTTP + websocket server on localhost serves the page (every asset comes from the package: no CDN)
and a JSON websocket at ``/ws``. The page shows the camera, the predicted trace, the depth image decoded
from the predicted depth tokens and the rationale; a person draws a trace to steer, and steps, runs,
pauses or resets the episode. The simulator and the policy live on one worker thread.
"""

from __future__ import annotations

import asyncio
import base64
import json
import mimetypes
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..evaluation.rollout import EVAL_SEED_BASE, held_out_seeds
from ..io import encode_png
from ..steering import Correction, PathTracker, at_height
from .runner import Background, forbidden_origin, run_until_interrupted

STATIC = Path(__file__).parent / "static"
CONSOLE_SEED_BASE = EVAL_SEED_BASE + 500_000


def png_data_url(img: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(encode_png(img)).decode()


def colorize_depth(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """Metres -> RGB (near: warm, far: cool)."""
    x = np.clip((depth - near) / max(far - near, 1e-6), 0, 1)
    r = np.clip(1.5 - np.abs(4 * x - 1), 0, 1)
    g = np.clip(1.5 - np.abs(4 * x - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * x - 3), 0, 1)
    return (np.stack([r, g, b], -1) * 255).astype(np.uint8)


class ConsoleSession:
    """One simulated episode driven by the policy, steered by an optional drawn path (pixels)."""

    def __init__(self, policy, task: str, *, seed: int | None = None, execute: int | None = None,
                 diffusion_steps: int | None = None, correct: float = 0.0):
        from ..envs import make_env, simulator

        info = policy.info
        if correct and not info.trace_depth:
            raise ValueError("a correction (--correct) shifts the drawn path in the world: it needs a policy whose "
                             "trace carries each point's depth (trained with --trace-depth)")
        self.correction = Correction(correct)  # gain 0: the drawing as it is
        state_mode = simulator(task).check_policy(info)
        self.policy = policy
        self.task = task
        self.execute = execute or info.execute
        self.diffusion_steps = diffusion_steps
        self.env = make_env(task, resolution=info.resolution, camera=info.camera, state_mode=state_mode,
                            render_depth=False, **({"fast_render": True} if info.fast_render else {}))
        used = set(info.training_seeds.get(task, []))
        self._seeds = iter(held_out_seeds(10_000, used, CONSOLE_SEED_BASE))
        self.drawn: np.ndarray | None = None
        self.tracker: PathTracker | None = None
        self.given: np.ndarray | None = None  # the part of the drawn path the prediction followed
        self.running = False
        self.reset(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**31):
            raise ValueError(f"'seed' must be an integer from 0 to 2**31 - 1, got {seed!r}")
        self.seed = seed if seed is not None else next(self._seeds)
        self.obs = self.env.reset(self.seed)
        self.t, self.success, self.done = 0, False, False
        self.path = [self.obs["ee_pos"]]
        if self.drawn is not None:
            self.tracker.restart()
        self.correction.reset()
        self.predict()

    def given_trace(self) -> np.ndarray | None:
        if self.drawn is None:
            return None
        from ..envs import depth_of, project, unproject

        K, E, hand = self.obs["camera_intrinsics"], self.obs["camera_extrinsics"], self.obs["ee_pos"]
        here = project(hand, K, E)
        # from the gripper, as every training trace starts (a relative trace is read from its first point)
        trace = np.concatenate([here.reshape(1, 2), self.tracker.ahead(here)]).astype(np.float32)
        if self.policy.info.trace_depth:  # a policy that reads each point's depth: the drawing at the hand's height
            trace = at_height(trace, K, E, float(hand[2]), float(depth_of(hand, E)))
            if self.correction.gain:  # shifted in the world by the hand's summed residual from it
                ahead = self.correction(unproject(trace[1:, :2], trace[1:, 2], K, E), hand)
                pts = np.vstack([hand, ahead])
                trace = np.concatenate([project(pts, K, E), depth_of(pts, E)[:, None]], 1).astype(np.float32)
        return trace

    def predict(self) -> None:
        self.given = self.given_trace()
        self.pred = self.policy.predict(self.obs, trace=self.given, diffusion_steps=self.diffusion_steps)

    def step(self) -> None:
        if self.done:
            return
        for a in self.pred.actions[: self.execute]:
            self.obs, success, done = self.env.step(a)
            self.t += 1
            self.path.append(self.obs["ee_pos"])
            self.success = self.success or success
            if success or done:
                self.done = True
                break
        self.predict()

    def set_trace(self, points) -> None:
        try:
            pts = np.asarray(points, np.float32)
        except (TypeError, ValueError):
            raise ValueError("'points' must be a list of [x, y] pixel pairs") from None
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"'points' must be a list of [x, y] pixel pairs, got shape {pts.shape}")
        if not np.isfinite(pts).all():
            raise ValueError("'points' holds NaN or infinity; send finite pixel coordinates")
        if len(pts) < 2 or len(pts) > 1000:
            raise ValueError(f"draw from 2 to 1000 points, got {len(pts)}")
        r = self.policy.info.resolution
        self.drawn = np.clip(pts, 0, r)
        self.tracker = PathTracker.in_image(self.drawn, r)  # the gripper's progress along it
        self.correction.reset()
        self.predict()

    def clear_trace(self) -> None:
        self.drawn = None
        self.correction.reset()
        self.predict()

    def message(self) -> dict:
        from ..envs import project

        K, E = self.obs["camera_intrinsics"], self.obs["camera_extrinsics"]
        p = self.pred
        depth = None
        if p.depth_tokens is not None and hasattr(self.policy, "depth_image"):
            d = self.policy.depth_image(p.depth_tokens)
            depth = png_data_url(colorize_depth(d, float(d.min()), float(d.max())))
        given = self.given
        attention = None
        try:
            from ..viz.attention import heatmap

            maps = self.policy.attention(self.obs, prediction=p, trace=given)
            attention = png_data_url(heatmap(self.obs["rgb"], maps.fused, scale=1))
        except Exception:  # attention is an extra; never let it break the console
            attention = None
        return {
            "type": "state",
            "task": self.task,
            "instruction": self.obs["instruction"],
            "seed": self.seed,
            "step": self.t,
            "success": self.success,
            "done": self.done,
            "running": self.running,
            "resolution": self.policy.info.resolution,
            "frame": png_data_url(self.obs["rgb"]),
            "views": {v: png_data_url(img) for v, img in list(self.obs["images"].items())[1:]},
            "trace": None if p.trace is None else p.trace.tolist(),
            "points": None if p.points is None else p.points.tolist(),
            "given_trace": None if given is None else given[:, :2].tolist(),
            "drawn": None if self.drawn is None else self.drawn.tolist(),
            "path": project(np.asarray(self.path), K, E).tolist(),
            "depth": depth,
            "attention": attention,
            "rationale": p.rationale,
            "nfe": p.nfe,
            "latency_ms": p.latency_ms,
            "actions": p.actions[: self.execute].tolist(),
            "decoder": self.policy.info.decoder,
            "reasoning": self.policy.info.reasoning,
        }

    def close(self) -> None:
        self.env.close()


class ConsoleServer:
    def __init__(self, policy, task: str, *, allow_origins: tuple[str, ...] = (), **session_kwargs):
        self.policy, self.task, self.session_kwargs = policy, task, session_kwargs
        self.allow_origins = tuple(allow_origins)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="console-sim")
        self.session: ConsoleSession | None = None
        self.clients: set = set()
        self._runner: asyncio.Task | None = None

    async def _call(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _broadcast(self, msg: dict) -> None:
        data = json.dumps(msg)
        for ws in list(self.clients):
            try:
                await ws.send(data)
            except Exception:
                self.clients.discard(ws)

    async def _state(self) -> dict:
        return await self._call(self.session.message)

    async def _run_loop(self) -> None:
        try:
            while self.session.running and not self.session.done:
                await self._call(self.session.step)
                await self._broadcast(await self._state())
                await asyncio.sleep(0.01)
        except Exception as e:  # stop the run and say why; the session stays usable
            await self._broadcast({"type": "error", "error": f"the run stopped: {type(e).__name__}: {e}"})
        self.session.running = False
        await self._broadcast(await self._state())

    async def connection(self, ws) -> None:
        if ws.request.path.split("?")[0] != "/ws":
            await ws.close(1008, "connect to /ws")
            return
        self.clients.add(ws)
        try:
            await ws.send(json.dumps(await self._state()))
            async for raw in ws:
                try:
                    msg = json.loads(raw)
                    if not isinstance(msg, dict):
                        raise ValueError('a message is a JSON object such as {"cmd": "step"}')
                    cmd = msg.get("cmd")
                    s = self.session
                    if cmd == "step":
                        s.running = False
                        await self._call(s.step)
                    elif cmd == "run":
                        if not s.running:
                            s.running = True
                            self._runner = asyncio.create_task(self._run_loop())
                        continue
                    elif cmd == "pause":
                        s.running = False
                    elif cmd == "reset":
                        s.running = False
                        await self._call(s.reset, msg.get("seed"))
                    elif cmd == "trace":
                        await self._call(s.set_trace, msg.get("points"))
                    elif cmd == "clear_trace":
                        await self._call(s.clear_trace)
                    else:
                        raise ValueError(f"unknown command {cmd!r}")
                    await self._broadcast(await self._state())
                except (ValueError, TypeError) as e:  # the message's fault (JSONDecodeError is a ValueError)
                    await ws.send(json.dumps({"type": "error", "error": str(e)}))
                except Exception as e:  # ours: report it; the session and the connection carry on
                    await ws.send(json.dumps({"type": "error", "error": f"internal error: {type(e).__name__}: {e}"}))
        finally:
            self.clients.discard(ws)

    def process_request(self, connection, request):
        from websockets.datastructures import Headers
        from websockets.http11 import Response

        path = request.path.split("?")[0]
        if path == "/ws":
            return forbidden_origin(request, self.allow_origins)
        if path == "/health":
            body = json.dumps({"status": "ok", "task": self.task, "checkpoint": self.policy.info.checkpoint}).encode()
            ctype = "application/json"
        else:
            name = "index.html" if path in ("/", "") else path.lstrip("/")
            file = (STATIC / name).resolve()
            if STATIC.resolve() not in file.parents or not file.is_file():
                body = b"not found"
                return Response(404, "Not Found", Headers({"Content-Type": "text/plain", "Content-Length": str(len(body))}), body)
            body = file.read_bytes()
            ctype = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        return Response(200, "OK", Headers({"Content-Type": ctype, "Content-Length": str(len(body)),
                                             "Cache-Control": "no-store"}), body)

    async def run(self, host: str, port: int, ready: threading.Event | None = None, stop: asyncio.Event | None = None):
        from websockets.asyncio.server import serve as ws_serve

        self.session = await self._call(lambda: ConsoleSession(self.policy, self.task, **self.session_kwargs))
        async with ws_serve(self.connection, host, port, process_request=self.process_request, max_size=2**20) as server:
            self.port = server.sockets[0].getsockname()[1]
            if ready is not None:
                ready.set()
            try:
                await (stop.wait() if stop is not None else asyncio.Future())
            finally:
                self.session.running = False
                await self._call(self.session.close)


def console(checkpoint, task: str, *, host: str = "127.0.0.1", port: int = 8000, device: str | None = None,
            seed: int | None = None, execute: int | None = None, diffusion_steps: int | None = None,
            action_values: str = "mode", correct: float = 0.0, allow_origins: tuple[str, ...] = ()) -> None:
    from ..envs import resolve_tasks
    from ..policy import load_policy

    resolve_tasks(task)
    policy = load_policy(checkpoint, device)
    policy.decode_options = replace(policy.decode_options, values=action_values)
    server = ConsoleServer(policy, task, seed=seed, execute=execute, diffusion_steps=diffusion_steps,
                           correct=correct, allow_origins=allow_origins)
    run_until_interrupted(server, host, port, f"steering console for {task}: open http://{host}:{{port}}/ (Ctrl-C stops)")


class BackgroundConsole(Background):
    """A console on a thread: ``with BackgroundConsole(policy, task) as url: ...`` (tests, notebooks)."""

    def __init__(self, policy, task: str, host: str = "127.0.0.1", port: int = 0, **kwargs):
        super().__init__(ConsoleServer(policy, task, **kwargs), host, port, "http")
