"""Depth tokenizer: a small VQ-VAE that turns a depth map into ``grid x grid`` codes (MolmoAct's depth
perception tokens) and decodes codes back to a depth image.

Depth (metres) is clipped to the dataset's [near, far] range and scaled to [-1, 1]; the codebook is
learnt with exponential moving averages and dead codes are restarted from the batch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class DepthVAEConfig:
    input_size: int = 32  # depth maps are resized to input_size x input_size
    grid: int = 4  # tokens per image: grid * grid
    codebook: int = 128
    code_dim: int = 32
    channels: int = 32
    near: float = 0.5  # metres; set from the data
    far: float = 3.0

    def __post_init__(self):
        k = math.log2(self.input_size / self.grid)
        if k < 1 or k != int(k):
            raise ValueError(f"input_size / grid must be a power of two >= 2, got {self.input_size}/{self.grid}")

    @property
    def tokens(self) -> int:
        return self.grid * self.grid


class _Quantizer(nn.Module):
    def __init__(self, n: int, dim: int, decay: float = 0.95):
        super().__init__()
        self.decay = decay
        self.register_buffer("embed", torch.randn(n, dim) * 0.1)
        self.register_buffer("cluster_size", torch.ones(n))
        self.register_buffer("embed_sum", self.embed.clone())

    def codes(self, z: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N,)
        d = z.pow(2).sum(1, keepdim=True) - 2 * z @ self.embed.T + self.embed.pow(2).sum(1)[None]
        return d.argmin(1)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = self.codes(z)
        q = self.embed[idx]
        if self.training:
            with torch.no_grad():
                onehot = F.one_hot(idx, self.embed.shape[0]).type_as(z)
                self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
                self.embed_sum.mul_(self.decay).add_(onehot.T @ z, alpha=1 - self.decay)
                n = self.cluster_size.sum()
                size = (self.cluster_size + 1e-5) / (n + self.embed.shape[0] * 1e-5) * n
                self.embed.copy_(self.embed_sum / size[:, None])
                dead = self.cluster_size < 1e-2
                if dead.any():  # restart unused codes at random encodings from this batch
                    pick = torch.randint(0, z.shape[0], (int(dead.sum()),), device=z.device)
                    self.embed[dead] = z[pick]
                    self.embed_sum[dead] = z[pick]
                    self.cluster_size[dead] = 1.0
        commit = F.mse_loss(z, q.detach())
        return z + (q - z).detach(), idx, commit


class DepthVAE(nn.Module):
    def __init__(self, cfg: DepthVAEConfig):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        n_down = int(math.log2(cfg.input_size / cfg.grid))
        # Strided convolutions straight from the input: no full-resolution layers (cheap on a CPU).
        enc: list[nn.Module] = []
        for k in range(n_down):
            enc += [nn.Conv2d(1 if k == 0 else c, c, 4, stride=2, padding=1), nn.GELU(),
                    nn.Conv2d(c, c, 3, padding=1), nn.GELU()]
        enc += [nn.Conv2d(c, cfg.code_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.quantizer = _Quantizer(cfg.codebook, cfg.code_dim)
        dec: list[nn.Module] = [nn.Conv2d(cfg.code_dim, c, 3, padding=1), nn.GELU()]
        for k in range(n_down):
            last = k == n_down - 1
            dec += [nn.ConvTranspose2d(c, 1 if last else c, 4, stride=2, padding=1)]
            if not last:
                dec += [nn.GELU(), nn.Conv2d(c, c, 3, padding=1), nn.GELU()]
        self.decoder = nn.Sequential(*dec)
        # The scene's static depth (set to the training mean): the codes only encode what differs from it.
        self.base = nn.Parameter(torch.zeros(1, 1, cfg.input_size, cfg.input_size))

    # -- metres <-> network range ------------------------------------------------------------------
    def normalize(self, depth_m: torch.Tensor) -> torch.Tensor:
        """(B, H, W) metres -> (B, 1, S, S) in [-1, 1]."""
        x = depth_m.float().clamp(self.cfg.near, self.cfg.far)
        x = (x - self.cfg.near) / (self.cfg.far - self.cfg.near) * 2 - 1
        x = x[:, None]
        if x.shape[-1] != self.cfg.input_size or x.shape[-2] != self.cfg.input_size:
            x = F.interpolate(x, size=(self.cfg.input_size,) * 2, mode="area")
        return x

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return ((x[:, 0].clamp(-1, 1) + 1) / 2) * (self.cfg.far - self.cfg.near) + self.cfg.near

    def forward(self, depth_m: torch.Tensor):
        x = self.normalize(depth_m)
        z = self.encoder(x - self.base)  # (B, D, g, g)
        B, D, g, _ = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, D)
        q, idx, commit = self.quantizer(flat)
        q = q.reshape(B, g, g, D).permute(0, 3, 1, 2)
        recon = self.decoder(q) + self.base
        return recon, x, idx.reshape(B, g * g), commit

    @torch.no_grad()
    def encode(self, depth_m: torch.Tensor) -> torch.Tensor:
        """(B, H, W) metres -> (B, grid*grid) codes in [0, codebook)."""
        z = self.encoder(self.normalize(depth_m) - self.base)
        B, D, g, _ = z.shape
        return self.quantizer.codes(z.permute(0, 2, 3, 1).reshape(-1, D)).reshape(B, g * g)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, grid*grid) codes -> (B, input_size, input_size) metres."""
        codes = torch.as_tensor(codes, dtype=torch.long, device=self.quantizer.embed.device)
        g = self.cfg.grid
        q = self.quantizer.embed[codes.reshape(-1)].reshape(codes.shape[0], g, g, -1).permute(0, 3, 1, 2)
        return self.denormalize(self.decoder(q) + self.base)

    # -- persistence --------------------------------------------------------------------------------
    def save(self, directory: str | Path, metrics: dict | None = None) -> None:
        from safetensors.torch import save_file

        from ..io import atomic_path, write_json_atomic

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / "depth_vae.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(tmp))
        write_json_atomic(directory / "depth_vae.json", {"config": asdict(self.cfg), "metrics": metrics or {}})

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> "DepthVAE":
        from safetensors.torch import load_file

        directory = Path(directory)
        meta_path = directory / "depth_vae.json"
        if not meta_path.exists():
            raise FileNotFoundError(
                f"no depth tokenizer at {directory} (depth_vae.json missing); train one with "
                "`reasonact train-depth-vae --data DIR --out VAE`"
            )
        meta = json.loads(meta_path.read_text())
        vae = cls(DepthVAEConfig(**meta["config"]))
        vae.load_state_dict(load_file(str(directory / "depth_vae.safetensors")))
        return vae.to(device).eval()


def load_depth_frames(ds, size: int, max_frames: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Decode (a sample of) a dataset's depth maps, resized to ``size``: (N, size, size) float32, frame ids."""
    n = len(ds)
    idx = np.arange(n)
    if max_frames and n > max_frames:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_frames, replace=False))
    out = np.empty((len(idx), size, size), np.float32)
    for k in range(0, len(idx), 512):
        chunk = idx[k: k + 512]
        d = torch.from_numpy(np.stack([ds.depth(int(i)) for i in chunk]))[:, None]
        if d.shape[-1] != size:
            d = F.interpolate(d, size=(size, size), mode="area")
        out[k: k + len(chunk)] = d[:, 0].numpy()
    return out, idx


def train_depth_vae(
    data,
    out: str | Path,
    *,
    steps: int = 1500,
    batch_size: int = 64,
    lr: float = 2e-3,
    input_size: int = 32,
    grid: int = 4,
    codebook: int = 128,
    max_frames: int = 20000,
    seed: int = 0,
    device: str | None = None,
    progress: bool = True,
) -> dict:
    """Train a depth VQ-VAE on a dataset's depth maps (``data``: a dataset directory or a loaded dataset);
    report reconstruction error in metres."""
    from ..data import ReasonactDataset, load_dataset
    from ..progress import progress_bar

    ds = data if isinstance(data, ReasonactDataset) else load_dataset(data)
    from ..machine import resolve_device

    device = resolve_device(device)
    torch.manual_seed(seed)
    depths, frame_ids = load_depth_frames(ds, input_size, max_frames, seed)
    # Hold out every fifth episode to measure reconstruction on unseen frames.
    held = (ds.episode_row[frame_ids] % 5) == 4
    if held.all() or not held.any():
        held = np.arange(len(frame_ids)) % 5 == 4
    # The range that matters is the workspace: the depths the end effector visits, with a margin. The far
    # background (walls, floor) is clipped to its far end, so an arm in front of it is a step of a metre or
    # so, not of five.
    from ..envs.camera import depth_of

    ee_depth = np.array([depth_of(ds.ee_pos[i], ds.extrinsics[i]) for i in frame_ids])
    near = max(float(np.quantile(depths, 0.002)), float(ee_depth.min()) - 0.4)
    far = float(ee_depth.max()) + 0.4
    cfg = DepthVAEConfig(input_size=input_size, grid=grid, codebook=codebook, near=max(0.05, near), far=far)
    vae = DepthVAE(cfg).to(device)
    train_x = torch.from_numpy(depths[~held]).to(device)
    with torch.no_grad():
        mean_image = vae.normalize(train_x).mean(0, keepdim=True)  # the baseline the codes must beat
        vae.base.copy_(mean_image)
    test_x = torch.from_numpy(depths[held]).to(device)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warm) * (
        0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, k / max(1, steps))))))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    t0 = time.time()
    bar = progress_bar(range(steps), desc="depth-vae", disable=not progress)
    for step in bar:
        vae.train()
        pick = torch.randint(0, len(train_x), (batch_size,), generator=gen).to(device)
        recon, target, _, commit = vae(train_x[pick])
        loss = F.l1_loss(recon, target) + 0.25 * commit
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    metrics = evaluate_depth_vae(vae, test_x, mean_image)
    metrics.update(steps=steps, train_frames=int(len(train_x)), test_frames=int(len(test_x)), seconds=time.time() - t0)
    vae.save(out, metrics)
    return metrics


@torch.no_grad()
def evaluate_depth_vae(vae: DepthVAE, depths: torch.Tensor, mean_image: torch.Tensor) -> dict:
    """Mean absolute error in metres of ``depths`` (N, H, W) through the codes, and of ``mean_image`` (the
    training frames' average, (1, 1, S, S) in the network's range) as the baseline. ``vae.base`` starts as that
    average but is trained with the rest, so it is not the baseline."""
    vae.eval()
    errs, base_errs, used = [], [], set()
    base = vae.denormalize(mean_image.to(vae.base.device))[0]
    for k in range(0, len(depths), 512):
        d = depths[k: k + 512]
        codes = vae.encode(d)
        used.update(codes.unique().tolist())
        target = d.clamp(vae.cfg.near, vae.cfg.far)
        if target.shape[-1] != vae.cfg.input_size:
            target = vae.denormalize(vae.normalize(d))
        errs.append((vae.decode(codes) - target).abs().mean((1, 2)))
        base_errs.append((base[None] - target).abs().mean((1, 2)))
    return {"mae_m": float(torch.cat(errs).mean()), "mean_image_mae_m": float(torch.cat(base_errs).mean()),
            "codes_used": len(used), "codebook": vae.cfg.codebook, "near_m": vae.cfg.near, "far_m": vae.cfg.far}
