"""Golden tensors: the model's forward pass (loss and logits) on fixed inputs, stored in
tests/artifacts/golden_forward.safetensors. A change that alters the model's numbers fails here; if the
change is meant, regenerate with ``REASONACT_REGENERATE_GOLDEN=1 pytest tests/test_golden.py``."""

import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from reasonact.model.arm import ActionReasoningModel
from reasonact.model.config import Config, SequenceConfig, model_config
from reasonact.tokenizers import Vocab

GOLDEN = Path(__file__).parent / "artifacts" / "golden_forward.safetensors"


def _forward(decoder: str) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    vocab = Vocab(text=64)
    seq = SequenceConfig(reasoning="depth+trace", decoder=decoder, horizon=4, trace_points=3, depth_tokens=4)
    model = ActionReasoningModel(Config(model_config("debug"), seq), vocab).eval()
    g = torch.Generator().manual_seed(1)
    B = 2
    images = torch.rand(B, 3, 32, 32, generator=g)
    instr = vocab.offset("text") + torch.randint(0, 64, (B, seq.instruction_tokens), generator=g)
    instr[:, 10:] = vocab.pad
    state = torch.randn(B, seq.state_dim, generator=g)
    targets = {b: lo + torch.randint(0, hi - lo, (B, seq.block_length(b)), generator=g)
               for b in seq.blocks for lo, hi in [vocab.block_range(b)]}
    with torch.no_grad():
        loss, _ = model(images, instr, state, targets, None, torch.Generator().manual_seed(2))
        px, pvalid = model.prefix(images, instr, state)
        from reasonact.model.layout import prefix_span

        h = model.run(px, prefix_span(px.shape[1]), pvalid)
    return {f"{decoder}_loss": loss.reshape(1), f"{decoder}_prefix_hidden": h[:, ::7].contiguous()}


def test_forward_pass_matches_the_golden_tensors():
    got = {**_forward("diffusion"), **_forward("ar")}
    if os.environ.get("REASONACT_REGENERATE_GOLDEN") or not GOLDEN.exists():
        assert os.environ.get("REASONACT_REGENERATE_GOLDEN"), f"{GOLDEN} is missing; regenerate it (see the docstring)"
        save_file(got, str(GOLDEN))
    want = load_file(str(GOLDEN))
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k].numpy(), want[k].numpy(), rtol=1e-4, atol=1e-5, err_msg=k)
