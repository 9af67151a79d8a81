"""Vision encoders: image (B, 3, S, S) float in [0, 1] -> patch tokens (B, P, d)."""

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
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem((images - self.mean) / self.std)  # (B, d, g, g)
        return x.flatten(2).transpose(1, 2) + self.pos  # (B, g*g, d)
