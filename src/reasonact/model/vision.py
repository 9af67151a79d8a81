"""Vision encoders: images (B, V, 3, S, S) float in [0, 1] -> patch tokens (B, V * P, d), the views in order.

One encoder serves every view; a learnt per-view embedding (when there are several) tells them apart."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .config import ModelConfig

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class VisionEncoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, p = cfg.d_model, cfg.patch_size
        if cfg.vision == "patch":  # ViT patch embedding
            self.stem = nn.Conv2d(3, d, p, stride=p)
        else:  # strided 3x3 convolutions, one per halving, widening towards d
            n = int(math.log2(p))
            if 2 ** n != p:
                raise ValueError(f"the conv stem needs a power-of-two patch size, got {p}")
            widths = [max(16, d // 2 ** (n - 1 - i)) for i in range(n)]
            widths[-1] = d
            layers: list[nn.Module] = []
            c_in = 3
            for i, c in enumerate(widths):
                layers.append(nn.Conv2d(c_in, c, 3, stride=2, padding=1))
                if i < n - 1:
                    layers.append(nn.GELU())
                c_in = c
            self.stem = nn.Sequential(*layers)
        g = cfg.image_size // p
        self.pos = nn.Parameter(torch.zeros(1, g * g, d))
        nn.init.normal_(self.pos, std=0.02)
        self.views = cfg.views
        if cfg.views > 1:
            self.view_emb = nn.Parameter(torch.zeros(cfg.views, 1, d))
            nn.init.normal_(self.view_emb, std=0.02)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() == 4:
            images = images[:, None]
        B, V = images.shape[:2]
        if V != self.views:
            raise ValueError(f"the model reads {self.views} view(s) per observation, got {V}")
        x = self.stem((images.flatten(0, 1) - self.mean) / self.std)  # (B * V, d, g, g)
        x = x.flatten(2).transpose(1, 2) + self.pos  # (B * V, g*g, d)
        if V > 1:
            x = x.unflatten(0, (B, V)) + self.view_emb
        return x.reshape(B, -1, x.shape[-1])
