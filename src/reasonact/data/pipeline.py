"""Training batches: every frame decoded once into memory at the model's resolution, then batches are
drawn by index with augmentation (random shift that moves the trace with the image, brightness and
contrast), instruction paraphrases, and all target blocks tokenized.

Everything is a tensor on the training device, so a batch costs a few indexing operations.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..checkpoint import StateNorm, Tokenizers
from ..progress import progress_bar
from ..tokenizers.trace import coordinate_bins
from ..transforms import encode_instructions, hide_task_state, resize_images
from .dataset import ReasonactDataset
from .format import DatasetError


def frames_tensor(ds: ReasonactDataset, size: int, indices: np.ndarray | None = None, progress: bool = True) -> torch.Tensor:
    """(N, V, 3, size, size) uint8 frames of every view, resized with area averaging when size differs."""
    idx = np.arange(len(ds)) if indices is None else np.asarray(indices)
    out = torch.empty((len(idx), len(ds.views), 3, size, size), dtype=torch.uint8)
    step = 1024
    for k in progress_bar(range(0, len(idx), step), desc="decode frames", disable=not progress or len(idx) < 4 * step,
                       unit="chunk"):
        chunk = idx[k: k + step]
        for v, view in enumerate(ds.views):
            imgs = torch.from_numpy(np.stack([ds.image(int(i), view) for i in chunk])).permute(0, 3, 1, 2)
            out[k: k + len(chunk), v] = resize_images(imgs, size)
    return out


def _known_tasks(ds: ReasonactDataset, named: dict, option: str) -> None:
    unknown = sorted(set(named) - set(ds.task_names))
    if unknown:
        raise DatasetError(f"{option} names {', '.join(unknown)}, which {ds.root} does not hold; its tasks: "
                           f"{', '.join(ds.task_names)}")


def episodes_kept(ds: ReasonactDataset, episode_limit: dict[str, int]) -> np.ndarray:
    """Per-frame mask: the first N episodes (in the dataset's order) of each task named, every episode of the others.

    Trains on part of a dataset without writing a second one, e.g. a task's 50 demonstrations against its 200.
    """
    _known_tasks(ds, episode_limit, "--episode-limit")
    task_of = np.zeros(len(ds.episodes), np.int64)
    task_of[ds.episode_row] = ds.task_index
    keep = np.ones(len(ds.episodes), bool)
    for name, n in episode_limit.items():
        rows = np.nonzero(task_of == ds.task_names.index(name))[0]
        if not 1 <= int(n) <= len(rows):
            raise DatasetError(f"--episode-limit asks for {n} episodes of {name}; {ds.root} holds {len(rows)} of that task: "
                               f"give a number from 1 to {len(rows)}")
        keep[rows[int(n):]] = False
    return keep[ds.episode_row]


def row_weights(ds: ReasonactDataset, indices: np.ndarray, task_weights: dict[str, float]) -> torch.Tensor:
    """Per-frame sampling weights from per-task ones (tasks not named weigh 1)."""
    _known_tasks(ds, task_weights, "--task-weights")
    per_task = np.array([float(task_weights.get(t, 1.0)) for t in ds.task_names])
    w = torch.from_numpy(per_task[ds.task_index[indices]])
    if not w.sum() > 0:
        raise DatasetError("--task-weights gives every training frame weight 0; give some task a positive weight")
    return w


class BatchSource:
    """Draws training batches for a set of frame indices of a dataset."""

    def __init__(
        self,
        ds: ReasonactDataset,
        indices: np.ndarray,
        tok: Tokenizers,
        *,
        image_size: int,
        horizon: int,
        blocks: tuple[str, ...],
        instruction_tokens: int,
        state_norm: StateNorm,
        depth_codes: np.ndarray | None = None,  # (N_dataset, K) codebook indices
        rationales: torch.Tensor | None = None,  # (N_dataset, think_tokens) ids
        device: torch.device | str = "cpu",
        augment: bool = True,
        shift: int = 4,
        jitter: float = 0.1,
        tint: float = 0.0,
        paraphrase_prob: float = 0.5,
        steer_prob: float = 0.0,
        depth_dropout: float = 0.0,
        rationale_dropout: float = 0.0,
        points: bool = False,
        task_weights: dict[str, float] | None = None,
        progress: bool = True,
    ):
        self.device = torch.device(device)
        self.indices = np.asarray(indices)
        self.blocks = blocks
        self.tok = tok
        self.image_size = image_size
        self.augment, self.shift = augment, shift
        self.jitter, self.tint = jitter, tint
        self.paraphrase_prob, self.steer_prob = paraphrase_prob, steer_prob
        self.depth_dropout = depth_dropout if tok.trace.dims == 3 else 0.0
        self.depth_tokens = (torch.arange(tok.trace.length) % tok.trace.dims == 2).to(device)  # (x, y, d) per point
        self.rationale_dropout = rationale_dropout
        self.scale = ds.resolution / image_size  # dataset pixels per model pixel
        dev = self.device
        self.frames = frames_tensor(ds, image_size, self.indices, progress).to(dev)
        self.states = torch.from_numpy(state_norm(ds.states[self.indices])).to(dev)
        chunks = ds.action_chunks(self.indices, horizon)  # (n, H, D)
        act = tok.action.encode(chunks).reshape(len(self.indices), -1) + tok.vocab.offset("action")
        self.actions = torch.from_numpy(act).to(dev)
        if ds.traces is None and any(b in blocks for b in ("trace", "points")):
            raise DatasetError(f"{ds.root} records no end-effector position and camera matrices "
                               "(observation.ee_pos, observation.camera_intrinsics/extrinsics.<view>), which the "
                               "trace is drawn from; train it with --reasoning act")
        dims = tok.trace.dims
        if ds.traces is None:
            traces = np.zeros((len(self.indices), ds.trace_points, dims), np.float32)
        else:
            traces = ds.traces[self.indices]
            if dims == 3:
                traces = np.concatenate([traces, ds.trace_depths[self.indices][..., None]], -1)
        self.traces = torch.from_numpy(traces).float().to(dev)  # (n, P, 2) dataset pixels (then depth in metres)
        self.points = None
        if points or "points" in blocks:
            if ds.points is None:
                raise DatasetError(f"{ds.root} records no object points (observation.points); collect it again with "
                                   "this version of `reasonact collect`, or train with --points-weight 0 and "
                                   "without a points block")
            self.points = torch.from_numpy(ds.points[self.indices]).float().to(dev)  # (n, K, 2) dataset pixels
        self.path = torch.from_numpy(ds.path_frames[self.indices]).to(dev)  # always steered
        if self.path.any() and steer_prob <= 0:
            raise ValueError("random-path frames are trained only with the trace given; pass steer_prob > 0 "
                             "or leave them out of the indices")
        self.task = torch.from_numpy(ds.task_index[self.indices]).long().to(dev)
        self.weights = row_weights(ds, self.indices, task_weights) if task_weights else None
        # Instruction phrasings per task: the canonical one first, then the seen paraphrases.
        phrasings = [[t["instruction"], *t["paraphrases"]] for t in ds.tasks]
        width = max(len(p) for p in phrasings)
        self.n_phrasings = torch.tensor([len(p) for p in phrasings], device=dev)
        table = torch.full((len(phrasings), width, instruction_tokens), tok.vocab.pad, dtype=torch.long)
        for i, p in enumerate(phrasings):
            table[i, : len(p)] = encode_instructions(p, tok.text, tok.vocab, instruction_tokens)
        self.instructions = table.to(dev)
        self.depth = None
        if "depth" in blocks:
            if depth_codes is None:
                raise ValueError("the depth block needs depth codes (a depth tokenizer)")
            self.depth = (torch.from_numpy(np.asarray(depth_codes)[self.indices]).long() + tok.vocab.offset("depth")).to(dev)
        self.think = None
        if "think" in blocks:
            if rationales is None:
                raise ValueError("the think block needs rationales; run `reasonact annotate` on the dataset")
            self.think = rationales[torch.from_numpy(self.indices)].to(dev)

    def __len__(self) -> int:
        return len(self.indices)

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        if self.weights is None:
            pick = torch.randint(0, len(self), (batch_size,), generator=generator)
        else:
            pick = torch.multinomial(self.weights, batch_size, replacement=True, generator=generator)
        return self.batch(pick.to(self.device), generator)

    def batch(self, rows: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        B = len(rows)
        dev = self.device
        rnd = lambda *shape: torch.rand(*shape, generator=generator).to(dev)  # noqa: E731
        images = self.frames[rows].float() / 255.0  # (B, V, 3, S, S)
        trace = self.traces[rows].clone()
        points = None if self.points is None else self.points[rows].clone()
        if self.augment:  # every view shifted by the sample's offset; the trace and points move with the first
            s, V = self.shift, images.shape[1]
            off = torch.randint(0, 2 * s + 1, (B, 2), generator=generator).to(dev)  # crop offsets (x, y)
            images = _crop(F.pad(images.flatten(1, 2), (s, s, s, s), mode="replicate"), off, self.image_size)
            images = images.unflatten(1, (V, 3))
            moved = ((s - off).float() * self.scale)[:, None, :]
            trace[..., :2] += moved
            points = None if points is None else points + moved
            # Brightness and contrast each scaled by a factor from [1-jitter, 1+jitter], every colour channel by
            # one from [1-tint, 1+tint]: one draw per sample, shared by its views (as a change of lighting is).
            bright = 1 + (rnd(B, 1, 1, 1, 1) - 0.5) * (2 * self.jitter)
            contrast = 1 + (rnd(B, 1, 1, 1, 1) - 0.5) * (2 * self.jitter)
            mean = images.mean((2, 3, 4), keepdim=True)
            images = (images - mean) * contrast + mean * bright
            if self.tint > 0:
                images = images * (1 + (rnd(B, 1, 3, 1, 1) - 0.5) * (2 * self.tint))
            images = images.clamp(0, 1)
        task = self.task[rows]
        phr = torch.zeros(B, dtype=torch.long, device=dev)
        if self.paraphrase_prob > 0:
            use = rnd(B) < self.paraphrase_prob
            choice = (rnd(B) * self.n_phrasings[task]).long().clamp(max=self.n_phrasings[task] - 1)
            phr = torch.where(use, choice, phr)
        targets = {"act": self.actions[rows]}
        if "trace" in self.blocks:
            tr = self.tok.trace
            targets["trace"] = self._coord_tokens(coordinate_bins(trace, tr.sizes, tr.bins, tr.origin, tr.relative,
                                                                         tr.offset_range))
        if "points" in self.blocks:
            targets["points"] = self._coord_tokens(coordinate_bins(points, self.tok.trace.sizes[:2], self.tok.trace.bins))
        if self.depth is not None:
            targets["depth"] = self.depth[rows]
        if self.think is not None:
            targets["think"] = self.think[rows]
        state = self.states[rows]
        steered = None
        if self.steer_prob > 0:
            steered = (rnd(B) < self.steer_prob) | self.path[rows]
            state = hide_task_state(state, steered)
            if self.depth_dropout > 0 and "trace" in self.blocks:  # per token: given the pixels, left to write the depth
                open_ = steered & (rnd(B) < self.depth_dropout)
                steered = steered[:, None] & ~(open_[:, None] & self.depth_tokens[None])
        unreasoned = None
        if self.think is not None and self.rationale_dropout > 0:
            unreasoned = rnd(B) < self.rationale_dropout
        return {
            "images": images,
            "instr": self.instructions[task, phr],
            "state": state,
            "targets": targets,
            "steered": steered,  # (B,) samples given their trace, or (B, L) which of its tokens were given
            "unreasoned": unreasoned,  # samples whose later blocks see an empty rationale
            # Where the task's objects are, as a share of the image's width and height (first view).
            "points": None if points is None else points / (self.image_size * self.scale),
        }


    def _coord_tokens(self, bins: torch.Tensor) -> torch.Tensor:
        """(B, L) coordinate bins (:func:`coordinate_bins`, as the trace tokenizer writes them) -> token ids."""
        return bins.long() + self.tok.vocab.offset("coord")


def _crop(padded: torch.Tensor, off: torch.Tensor, S: int) -> torch.Tensor:
    """Per-sample crop: (B, C, S+2s, S+2s) at offsets off (B, 2) as (x, y) -> (B, C, S, S)."""
    B, C, _, W = padded.shape
    ar = torch.arange(S, device=padded.device)
    rows = (off[:, 1:2] + ar[None])[:, None, :, None].expand(B, C, S, W)
    out = padded.gather(2, rows)  # (B, C, S, W)
    cols = (off[:, 0:1] + ar[None])[:, None, None, :].expand(B, C, S, S)
    return out.gather(3, cols)
