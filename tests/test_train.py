import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import reasonact
from reasonact.data import DatasetError, load_dataset
from reasonact.data.pipeline import BatchSource, Tokenizers
from reasonact.decoding import generate
from reasonact.model.arm import ActionReasoningModel
from reasonact.model.config import Config, SequenceConfig, model_config
from reasonact.tokenizers import ActionTokenizer, TextTokenizer, TraceTokenizer, Vocab

pytestmark = pytest.mark.sim


def _source(ds, mode, **kw):
    text = TextTokenizer.train([t["instruction"] for t in ds.tasks], 300)
    tok = Tokenizers(ActionTokenizer.from_stats(ds.stats), TraceTokenizer(ds.resolution, ds.resolution), text,
                     Vocab(text=text.vocab_size))
    seq = SequenceConfig(mode=mode, **kw)
    src = BatchSource(ds, np.arange(len(ds)), tok, image_size=32, horizon=seq.horizon, blocks=seq.blocks,
                      instruction_tokens=seq.instruction_tokens, state_mean=np.zeros(7, np.float32),
                      state_std=np.ones(7, np.float32), augment=False, paraphrase_prob=0.0, progress=False)
    return src, tok, seq


@pytest.mark.parametrize("decoder", ["ar", "diffusion"])
def test_overfitting_a_tiny_batch_reproduces_its_chunks(tiny_dataset, decoder):
    ds = load_dataset(tiny_dataset)
    src, tok, seq = _source(ds, "trace", decoder=decoder)
    torch.manual_seed(0)
    model = ActionReasoningModel(Config(model_config("debug"), seq), tok.vocab)
    rows = torch.tensor([0, 40, 70, 150])
    batch = src.batch(rows)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(250):
        loss, m = model(batch["images"], batch["instr"], batch["state"], batch["targets"], None,
                        torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(m["loss_act"])
    assert np.mean(losses[-10:]) < 0.1 * np.mean(losses[:5]), f"loss fell only from {losses[0]:.2f} to {losses[-1]:.2f}"
    model.eval()
    res = generate(model, batch["images"], batch["instr"], batch["state"], steps=8,
                   generator=torch.Generator().manual_seed(0))
    assert torch.equal(res.tokens["act"], batch["targets"]["act"])
    assert torch.equal(res.tokens["trace"], batch["targets"]["trace"])
    chunk = tok.action.decode((res.tokens["act"][0] - tok.vocab.offset("action")).reshape(8, 4).numpy())
    np.testing.assert_allclose(chunk, ds.action_chunks(np.array([0]), 8)[0], atol=float(tok.action.bin_width().max()))


def _train(data, out, steps, **kw):
    return reasonact.train(data, out, config="debug", steps=steps, batch_size=8, log_every=1, save_every=3,
                           progress=False, **kw)


def test_checkpoint_reloads_to_identical_predictions(tiny_dataset, tmp_path):
    run = _train(tiny_dataset, tmp_path / "run", 4, reasoning="trace")
    for name in ("config.json", "model.safetensors", "stats.json", "metrics.jsonl", "checkpoint.pt",
                 "tokenizers/action.json", "tokenizers/trace.json", "tokenizers/text.json"):
        assert (run / name).exists(), name
    ds = load_dataset(tiny_dataset)
    a = reasonact.load_policy(run).predict(ds[10])
    b = reasonact.load_policy(run).predict(ds[10])
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.trace, b.trace)
    assert a.actions.shape == (8, 4) and a.actions.dtype == np.float32
    assert a.trace.shape == (5, 2) and a.depth_tokens is None and a.nfe == 2 * 12
    assert a.latency_ms > 0


def test_resume_reproduces_the_uninterrupted_run(tiny_dataset, tmp_path):
    whole = _train(tiny_dataset, tmp_path / "whole", 6)
    part = _train(tiny_dataset, tmp_path / "part", 3)
    reasonact.train(None, part, resume=True, steps=6, progress=False)
    read = lambda r: [json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    a, b = read(whole), read(part)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([r["loss"] for r in b[3:]], [r["loss"] for r in a[3:]], rtol=1e-5)
    with pytest.raises(FileExistsError, match="--resume"):
        _train(tiny_dataset, tmp_path / "whole", 6)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        reasonact.train(tiny_dataset, tmp_path / "nothing", resume=True)


def test_bad_input_fails_clearly(tiny_dataset, tmp_path):
    broken = tmp_path / "nostats"
    shutil.copytree(tiny_dataset, broken)
    (broken / "meta" / "stats.json").unlink()
    with pytest.raises(DatasetError, match="stats"):
        _train(broken, tmp_path / "r1", 2)
    with pytest.raises(ValueError, match="debug, tiny, small, base"):
        reasonact.train(tiny_dataset, tmp_path / "r2", config="huge", progress=False)
    with pytest.raises(ValueError, match="reasoning mode"):
        reasonact.train(tiny_dataset, tmp_path / "r3", reasoning="dream", progress=False)
    with pytest.raises(ValueError, match="no trace block"):
        reasonact.train(tiny_dataset, tmp_path / "r3", reasoning="act", steer_prob=0.5, progress=False)
    with pytest.raises(ValueError, match="from 0 to 1"):
        reasonact.train(tiny_dataset, tmp_path / "r3", reasoning="trace", steer_prob=1.5, progress=False)
    run = _train(tiny_dataset, tmp_path / "r4", 1)
    policy = reasonact.load_policy(run)
    obs = load_dataset(tiny_dataset)[0]
    with pytest.raises(ValueError, match=r"\(48, 48, 3\)"):
        policy.predict({**obs, "rgb": np.zeros((64, 64, 3), np.uint8)})
    with pytest.raises(ValueError, match="7 numbers"):
        policy.predict({**obs, "state": np.zeros(3)})
    with pytest.raises(ValueError, match="diffusion"):
        policy.predict(obs, decoder="ar")
    with pytest.raises(ValueError, match="trace"):
        policy.predict(obs, trace=np.zeros((5, 2)))
    with pytest.raises(FileNotFoundError, match="reasonact train"):
        reasonact.load_policy(tmp_path / "nope")
    r = subprocess.run([sys.executable, "-m", "reasonact", "train", "--data", str(tiny_dataset), "--out",
                        str(tmp_path / "r5"), "--config", "huge"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown model config 'huge'" in r.stderr


@pytest.mark.slow
def test_torchrun_ddp_trains_on_two_cpu_processes(tiny_dataset, tmp_path):
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                        "reasonact", "train", "--data", str(tiny_dataset), "--out", str(out), "--config", "debug",
                        "--steps", "4", "--batch-size", "8", "--log-every", "2", "--device", "cpu"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4]  # written once, by rank 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
    assert reasonact.load_policy(out).predict(load_dataset(tiny_dataset)[0]).actions.shape == (8, 4)
