"""Transformer building blocks: RMSNorm, rotary positions, attention with a KV cache, SwiGLU."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x * self.weight.float()).to(dtype)


def rope_cos_sin(pos: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """pos (L,) -> cos, sin (L, head_dim/2)."""
    inv = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=pos.device, dtype=torch.float32) / head_dim))
    ang = pos.float()[:, None] * inv[None]
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, h, L, hd); rotate pairs (x[..., :hd/2], x[..., hd/2:])."""
    x1, x2 = x.float().chunk(2, dim=-1)
    cos, sin = cos[None, None], sin[None, None]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


class KVCache:
    """Keys and values of tokens already encoded (the prefix, committed blocks), per layer."""

    def __init__(self, n_layers: int):
        self.k: list[torch.Tensor | None] = [None] * n_layers
        self.v: list[torch.Tensor | None] = [None] * n_layers
        self.span = None  # layout.Span of the cached tokens
        self.key_valid: torch.Tensor | None = None  # (B, Lc) bool

    def __len__(self) -> int:
        return 0 if self.span is None else len(self.span)


class Attention(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.proj = nn.Linear(d, d, bias=False)
        self.dropout = dropout
        self.capture: list | None = None  # when a list, attention weights (B, h, Lq, Lk) are appended to it

    def forward(self, x, cos, sin, mask, cache: KVCache | None = None, layer: int = 0, append: int = 0):
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.n_heads, D // self.n_heads).permute(2, 0, 3, 1, 4)  # (B, h, L, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            if cache.k[layer] is not None:
                k_all = torch.cat([cache.k[layer], k], dim=2)
                v_all = torch.cat([cache.v[layer], v], dim=2)
            else:
                k_all, v_all = k, v
            if append:
                keep = k_all.shape[2] - L + append  # the cache so far plus the first `append` new tokens
                cache.k[layer], cache.v[layer] = k_all[:, :, :keep], v_all[:, :, :keep]
            k, v = k_all, v_all
        if self.capture is not None:  # explicit softmax, so that the weights can be read
            scores = (q.float() @ k.float().transpose(-2, -1)) / math.sqrt(q.shape[-1])
            weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
            self.capture.append(weights.detach())
            y = (weights @ v.float()).to(v.dtype)
        elif q.device.type == "cpu" and q.dtype == torch.bfloat16 and not (self.training and self.dropout):
            # bf16 on CPU: explicit matmuls ran forward + backward ~2.5x faster than the fused kernel
            # (benchmarks/attention_cpu.py); the softmax itself is computed in fp32
            scores = (q @ k.transpose(-2, -1)).mul_(1.0 / math.sqrt(q.shape[-1]))
            y = scores.masked_fill(~mask, float("-inf")).softmax(-1, dtype=torch.float32).to(v.dtype) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))


class SwiGLU(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.gate_up = nn.Linear(d, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, d: int, n_heads: int, hidden: int, dropout: float):
        super().__init__()
        self.norm1 = RMSNorm(d)
        self.attn = Attention(d, n_heads, dropout)
        self.norm2 = RMSNorm(d)
        self.mlp = SwiGLU(d, hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, cos, sin, mask, cache=None, layer=0, append=0):
        x = x + self.drop(self.attn(self.norm1(x), cos, sin, mask, cache, layer, append))
        return x + self.drop(self.mlp(self.norm2(x)))
