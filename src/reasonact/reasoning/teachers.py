"""Teachers write a structured rationale for a demonstration step.

``privileged`` reads the simulator's true state: deterministic, offline, the default.
``openai`` asks any OpenAI-compatible chat-completions endpoint (vLLM, Ollama, a hosted API) with the frame
attached, caches every answer that parses on disk, retries with back-off, and re-asks when an answer does not parse.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .rationale import Rationale, RationaleParseError, parse_rationale


@dataclass
class StepContext:
    """What a teacher may know about one step."""

    task: str
    instruction: str
    rgb: np.ndarray  # (H, W, 3) uint8
    privileged: np.ndarray  # Meta-World's 39-d state: hand xyz, gripper, objects, previous frame, goal
    action: np.ndarray  # the expert's action at this step
    frame_index: int
    episode_length: int


class Teacher(Protocol):
    name: str

    def rationale(self, step: StepContext) -> Rationale: ...


# ---------------------------------------------------------------------------------------------
# privileged
# What the "object" and the "goal" are called in each task (Meta-World's state has one main object).
NAMES = {
    "reach-v3": (None, "goal"),
    "push-v3": ("puck", "goal"),
    "pick-place-v3": ("puck", "goal"),
    "door-open-v3": ("door handle", "open position"),
    "drawer-open-v3": ("drawer handle", "open position"),
    "drawer-close-v3": ("drawer handle", "closed position"),
    "button-press-topdown-v3": ("button", "pressed position"),
    "peg-insert-side-v3": ("peg", "hole"),
    "window-open-v3": ("window handle", "open position"),
    "window-close-v3": ("window handle", "closed position"),
}
AXES = (("right", "left"), ("forward", "back"), ("up", "down"))  # +x, +y (away from the robot), +z
NEAR = 0.05  # metres: the gripper is "at" the object
DONE = 0.03  # metres: the object is at the goal
SIGNIFICANT = 0.01  # metres: smaller offsets are not named


def direction_words(delta: np.ndarray, threshold: float = SIGNIFICANT) -> list[tuple[str, float]]:
    """World offset (3,) -> [(word, cm)] for each axis whose offset exceeds the threshold, largest first."""
    out = [(AXES[i][0] if d > 0 else AXES[i][1], abs(float(d)) * 100) for i, d in enumerate(delta) if abs(d) > threshold]
    return sorted(out, key=lambda x: -x[1])


def describe_offset(delta: np.ndarray) -> str:
    words = direction_words(delta)
    return ", ".join(f"{cm:.0f} cm {w}" for w, cm in words) if words else "here"


class PrivilegedTeacher:
    """Facts from the simulator's state: positions, distances, directions, gripper, the plan's phase.

    Directions are the robot's: right/left (+x/-x), forward/back (away from/towards the robot, +y/-y), up/down.
    """

    name = "privileged"

    def rationale(self, step: StepContext) -> Rationale:
        s = np.asarray(step.privileged, np.float64)
        hand, gripper_open, obj, goal = s[0:3], float(s[3]), s[4:7], s[36:39]
        obj_name, goal_name = NAMES.get(step.task, ("object", "goal"))
        grip = "open" if gripper_open > 0.6 else ("closed" if gripper_open < 0.3 else "half open")
        if obj_name is None:  # reaching: only the goal matters
            d = goal - hand
            dist = np.linalg.norm(d) * 100
            return Rationale(f"Gripper {grip}, {goal_name} {dist:.0f} cm away.",
                             "At the goal." if dist < 5 else "Reaching.",
                             f"{goal_name.capitalize()} {describe_offset(d)}.",
                             "Hold still." if dist < 5 else f"Move {_main_words(d)}.")
        to_obj, obj_to_goal = obj - hand, goal - obj
        d_obj, d_goal = np.linalg.norm(to_obj), np.linalg.norm(obj_to_goal)
        obs = f"Gripper {grip}, {obj_name} {d_obj * 100:.0f} cm away, {d_goal * 100:.0f} cm from the {goal_name}."
        if d_goal < DONE:
            return Rationale(obs, "Done.", f"{obj_name.capitalize()} at the {goal_name}.", "Hold still.")
        if d_obj >= NEAR:
            return Rationale(obs, f"Approaching the {obj_name}.", f"{obj_name.capitalize()} {describe_offset(to_obj)}.",
                             f"Move {_main_words(to_obj)}.")
        return Rationale(obs, f"Moving the {obj_name}.", f"{goal_name.capitalize()} {describe_offset(obj_to_goal)}.",
                         f"Move {_main_words(obj_to_goal)}.")


def _main_words(delta: np.ndarray) -> str:
    words = [w for w, _ in direction_words(delta)][:2]
    return " and ".join(words) if words else "slightly"


# ---------------------------------------------------------------------------------------------
# openai-compatible
DEFAULT_PROMPT = Path(__file__).parent / "prompts" / "teacher.md"


class TeacherError(RuntimeError):
    pass


class OpenAITeacher:
    """Any OpenAI-compatible chat-completions endpoint, e.g. ``http://127.0.0.1:8000/v1`` (vLLM)."""

    name = "openai"

    def __init__(self, endpoint: str, model: str, *, prompt: str | Path | None = None, cache_dir: str | Path | None = None,
                 api_key: str | None = None, timeout: float = 60.0, max_retries: int = 4, backoff: float = 1.0,
                 parse_retries: int = 2, temperature: float = 0.0):
        import os

        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model = model
        self.prompt = Path(prompt or DEFAULT_PROMPT).read_text()
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout, self.max_retries, self.backoff = timeout, max_retries, backoff
        self.parse_retries, self.temperature = parse_retries, temperature
        self.stats = {"requests": 0, "cache_hits": 0, "retries": 0, "parse_failures": 0}

    def _messages(self, step: StepContext) -> list[dict]:
        from ..io import encode_png

        image = "data:image/png;base64," + base64.b64encode(encode_png(step.rgb)).decode()
        text = (f"Instruction: {step.instruction}\nStep {step.frame_index} of {step.episode_length}.\n"
                f"The expert's next action (x, y, z displacement and gripper, each in [-1, 1]): "
                f"{', '.join(f'{a:+.2f}' for a in np.asarray(step.action).tolist())}.")
        return [{"role": "system", "content": self.prompt},
                {"role": "user", "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": image}}]}]

    def _key(self, messages: list[dict], attempt: int) -> str:
        blob = json.dumps({"model": self.model, "messages": messages, "t": self.temperature, "attempt": attempt}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _post(self, messages: list[dict], attempt: int) -> str:
        body = json.dumps({"model": self.model, "messages": messages, "temperature": self.temperature,
                           "max_tokens": 200, **({"seed": attempt} if attempt else {})}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last: Exception | None = None
        for k in range(self.max_retries + 1):
            if k:
                self.stats["retries"] += 1
                time.sleep(self.backoff * 2 ** (k - 1) * (0.5 + random.random()))
            try:
                self.stats["requests"] += 1
                req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    data = json.loads(r.read())
                return data["choices"][0]["message"]["content"]
            except urllib.error.HTTPError as e:
                last = e
                if e.code not in (408, 409, 425, 429) and e.code < 500:  # the request itself is wrong: do not retry
                    raise TeacherError(f"{self.url} answered HTTP {e.code}: {e.read()[:200]!r}") from e
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError, KeyError, ValueError) as e:
                last = e
        raise TeacherError(f"{self.url} failed after {self.max_retries + 1} attempts: {last}")

    def rationale(self, step: StepContext) -> Rationale:
        messages = self._messages(step)
        errors = []
        for attempt in range(self.parse_retries + 1):
            key = self._key(messages, attempt)
            cached = self.cache_dir / f"{key}.json" if self.cache_dir else None
            hit = cached is not None and cached.exists()
            if hit:
                self.stats["cache_hits"] += 1
                answer = json.loads(cached.read_text())["answer"]
            else:
                answer = self._post(messages, attempt)
            try:
                rationale = parse_rationale(answer)
            except RationaleParseError as e:  # not cached (an older cache's entry is dropped): a re-run asks again
                self.stats["parse_failures"] += 1
                errors.append(f"{e}: {answer[:120]!r}")
                if hit:
                    cached.unlink(missing_ok=True)
                continue
            if cached is not None and not hit:
                from ..io import write_json_atomic

                write_json_atomic(cached, {"model": self.model, "answer": answer})
            return rationale
        raise RationaleParseError(f"no parseable rationale after {self.parse_retries + 1} answers ({'; '.join(errors)})")


def make_teacher(name: str, **kwargs) -> Teacher:
    if name == "privileged":
        return PrivilegedTeacher()
    if name == "openai":
        if not kwargs.get("endpoint") or not kwargs.get("model"):
            raise ValueError("the openai teacher needs --endpoint URL (e.g. http://127.0.0.1:8000/v1) and --model NAME")
        return OpenAITeacher(**kwargs)
    raise ValueError(f"unknown teacher {name!r}; choose privileged or openai")
