"""Where does the policy look? Attention from the action tokens to the image patches, per layer and fused.

The decoded sequence (prefix, reasoning blocks, action chunk) is run once more with attention weights
captured. For each layer the weights from every action token to the image patches are averaged over heads
and action tokens and renormalised over the patches, so a map sums to one over the image; ``image_share``
keeps the share of the action tokens' attention that went to the image at all. The fused map averages
the top layers (the upper half by default).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass
class AttentionMaps:
    layers: np.ndarray  # (n_layers, g, g), each sums to 1
    fused: np.ndarray  # (g, g), sums to 1
    image_share: np.ndarray  # (n_layers,) share of the action tokens' attention on image patches
    prediction: object  # the Prediction the maps explain


@torch.no_grad()
def action_attention(model, inputs, prediction, *, top_layers: int | None = None) -> AttentionMaps:
    """Attention maps for one observation: ``inputs`` are the model inputs its ``prediction`` was decoded
    from (``Policy.inputs``: the same transform, so a steered policy is explained on the state it saw)."""
    from ..model.layout import CLEAN, MARKER, NOISY, Span, block_positions, prefix_span

    pred, vocab, seq = prediction, model.vocab, model.cfg.sequence
    dev = inputs.images.device
    px, pvalid = model.prefix(inputs.images, inputs.instr, inputs.state)
    Lp = px.shape[1]
    role, block, pos, ids = [], [], [], []
    for b, ((mpos, tpos), name) in enumerate(zip(block_positions(Lp, model.block_lengths()), seq.blocks)):
        toks = np.asarray(pred.tokens[name])
        last = name == "act"
        role += [MARKER] + [NOISY if (last and not model.causal) else CLEAN] * len(toks)
        block += [b] * (len(toks) + 1)
        pos += [mpos] + list(range(tpos, tpos + len(toks)))
        ids += [vocab.marker(name)] + toks.tolist()
    ids_t = torch.tensor(ids, device=dev)[None]
    span = prefix_span(Lp, dev).cat(Span.make(role, block, pos, dev))
    x = torch.cat([px, model.embed(ids_t)], 1)
    valid = torch.cat([pvalid, torch.ones_like(ids_t, dtype=torch.bool)], 1)
    with model.capture_attention() as maps:
        model.run(x, span, valid)
    P = model.cfg.model.n_patches
    g = int(round(P ** 0.5))
    n_act = seq.block_length("act")
    act_q = slice(x.shape[1] - n_act, x.shape[1])
    per_layer, share = [], []
    for m in maps:
        w = m[0][0, :, act_q, :].float()  # (heads, n_act, L)
        on_image = w[..., :P].mean((0, 1))  # (P,)
        share.append(float(on_image.sum()))
        per_layer.append((on_image / on_image.sum().clamp_min(1e-12)).reshape(g, g).cpu().numpy())
    layers = np.stack(per_layer)
    k = top_layers or max(1, len(layers) // 2)
    fused = layers[-k:].mean(0)
    return AttentionMaps(layers, fused / fused.sum(), np.array(share), pred)


def share_at(attn: np.ndarray, points: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The attention mass on the patch under each point: ``attn`` (g, g) sums to one over the first view's
    patches, ``points`` (K, 2) are that view's pixels (x, y) in an image of ``size`` (width, height). A point
    off the image gets NaN. Uniform attention puts 1/g^2 on every patch."""
    g = attn.shape[0]
    xy = np.asarray(points, np.float64).reshape(-1, 2) / np.asarray(size, np.float64)  # shares of the image
    inside = ((xy >= 0) & (xy < 1)).all(1)
    col, row = (np.clip(xy, 0, 1 - 1e-9) * g).astype(int).T
    return np.where(inside, attn[row, col], np.nan)


def heatmap(img: np.ndarray, attn: np.ndarray, scale: int = 4, alpha: float = 0.55) -> np.ndarray:
    """Blend an attention grid (g, g) over an image (H, W, 3), upscaled by ``scale``."""
    import torch.nn.functional as F

    from .draw import upscale

    H, W = img.shape[:2]
    a = torch.from_numpy(np.asarray(attn, np.float32))[None, None]
    a = F.interpolate(a, size=(H * scale, W * scale), mode="bilinear", align_corners=False)[0, 0].numpy()
    a = (a - a.min()) / max(float(a.max() - a.min()), 1e-12)
    r = np.clip(1.5 - np.abs(4 * a - 3), 0, 1)
    gch = np.clip(1.5 - np.abs(4 * a - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * a - 1), 0, 1)
    color = np.stack([r, gch, b], -1) * 255
    base = upscale(np.asarray(img), scale).astype(np.float32)
    return (base * (1 - alpha * a[..., None]) + color * alpha * a[..., None]).clip(0, 255).astype(np.uint8)


def attention_report(policy, data, episode: int, out, *, frames: int = 6) -> Path:
    """PNG overlays of the action tokens' attention for frames of a dataset episode, per layer and fused
    (``policy``: a loaded :class:`reasonact.policy.Policy`)."""
    from PIL import Image

    from ..data import load_dataset
    from .draw import contact_sheet, label, upscale

    ds = load_dataset(data)
    if ds.resolution != policy.resolution:
        raise ValueError(f"the dataset's images are {ds.resolution} px; the policy takes {policy.resolution} px")
    idx = list(ds.episode_frames(episode))
    pick = [idx[k] for k in np.unique(np.linspace(0, len(idx) - 1, min(frames, len(idx))).round().astype(int))]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    scale = max(1, 256 // policy.resolution)
    tiles = []
    for i in pick:
        item = ds[i]
        maps = policy.attention(item)
        t = item["frame_index"]
        row = [label(upscale(item["rgb"], scale), f"t={t}")]
        for layer, m in enumerate(maps.layers):
            img = heatmap(item["rgb"], m, scale)
            Image.fromarray(img).save(out / f"frame{t:04d}_layer{layer}.png")
            row.append(label(img, f"layer {layer} ({maps.image_share[layer]:.0%} on image)"))
        fused = heatmap(item["rgb"], maps.fused, scale)
        Image.fromarray(fused).save(out / f"frame{t:04d}_fused.png")
        row.append(label(fused, "fused"))
        tiles += row
    sheet = out / "attention.png"
    Image.fromarray(contact_sheet(tiles, cols=len(tiles) // len(pick))).save(sheet)
    return sheet
