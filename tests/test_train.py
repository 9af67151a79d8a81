import dataclasses
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import reasonact
from reasonact.checkpoint import StateNorm, Tokenizers
from reasonact.data import DatasetError, load_dataset
from reasonact.data.pipeline import BatchSource
from reasonact.decoding import generate
from reasonact.model.arm import ActionReasoningModel
from reasonact.model.config import Config, SequenceConfig, model_config
from reasonact.tokenizers import ActionTokenizer, TextTokenizer, TraceTokenizer, Vocab
from reasonact.tokenizers.trace import UNKNOWN
from reasonact.training.config import train_config
from reasonact.training.setup import can_compile

NO_NORM = StateNorm(np.zeros(7, np.float32), np.ones(7, np.float32))


def _source(ds, mode, **kw):
    text = TextTokenizer.train([t["instruction"] for t in ds.tasks], 300)
    seq = SequenceConfig(reasoning=mode, **kw)
    tok = Tokenizers(ActionTokenizer.from_stats(ds.stats), TraceTokenizer(ds.resolution, ds.resolution), text,
                     Vocab.for_blocks(seq.blocks, text=text.vocab_size))
    src = BatchSource(ds, np.arange(len(ds)), tok, image_size=32, horizon=seq.horizon, blocks=seq.blocks,
                      instruction_tokens=seq.instruction_tokens, state_norm=NO_NORM, augment=False,
                      paraphrase_prob=0.0, progress=False)
    return src, tok, seq


def _overfit(model, batch, steps: int) -> list[dict]:
    """AdamW on one batch for ``steps`` steps; each step's metrics."""
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    out = []
    for step in range(steps):
        loss, m = model(batch["images"], batch["instr"], batch["state"], batch["targets"], None,
                        torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(m)
    return out


@pytest.mark.sim
@pytest.mark.parametrize("decoder", ["ar", "diffusion"])
def test_overfitting_a_tiny_batch_reproduces_its_chunks(tiny_dataset, decoder):
    ds = load_dataset(tiny_dataset)
    src, tok, seq = _source(ds, "trace", decoder=decoder)
    torch.manual_seed(0)
    model = ActionReasoningModel(Config(model_config("debug", views=len(ds.views)), seq), tok.vocab)
    rows = torch.tensor([0, 40, 70, 150])
    batch = src.batch(rows)
    losses = [m["loss_act"] for m in _overfit(model, batch, 250)]
    assert np.mean(losses[-10:]) < 0.1 * np.mean(losses[:5]), f"loss fell only from {losses[0]:.2f} to {losses[-1]:.2f}"
    model.eval()
    res = generate(model, batch["images"], batch["instr"], batch["state"], diffusion_steps=8,
                   generator=torch.Generator().manual_seed(0))
    assert torch.equal(res.tokens["act"], batch["targets"]["act"])
    assert torch.equal(res.tokens["trace"], batch["targets"]["trace"])
    chunk = tok.action.decode((res.tokens["act"][0] - tok.vocab.offset("action")).reshape(8, 4).numpy())
    np.testing.assert_allclose(chunk, ds.action_chunks(np.array([0]), 8)[0], atol=float(tok.action.bin_width().max()))


def test_a_points_block_is_learnt_and_decoded_onto_the_object(fake_data):
    """The points block (where the goal disc is, written before the trace and the actions) overfits like
    the other blocks, and its tokens decode to the recorded point to within one coordinate bin."""
    ds = load_dataset(fake_data)
    src, tok, seq = _source(ds, "points+trace", object_points=1)
    assert tok.vocab.marker("points") == tok.vocab.size - 1  # after the action range: older ids unchanged
    assert Vocab.for_blocks(("trace", "act"), text=tok.vocab.text).size == tok.vocab.size - 1
    torch.manual_seed(0)
    model = ActionReasoningModel(Config(model_config("debug"), seq), tok.vocab)
    rows = torch.tensor([0, 35, 70, 100])
    batch = src.batch(rows)
    assert batch["targets"]["points"].shape == (4, 2)
    assert _overfit(model, batch, 200)[-1]["acc_points"] == 1.0
    model.eval()
    res = generate(model, batch["images"], batch["instr"], batch["state"], diffusion_steps=4,
                   generator=torch.Generator().manual_seed(0))
    assert torch.equal(res.tokens["points"], batch["targets"]["points"])
    px = tok.trace.decode_points((res.tokens["points"] - tok.vocab.offset("coord")).numpy())  # (4, 1, 2) pixels
    np.testing.assert_allclose(px, ds.points[rows.numpy()], atol=tok.trace.width / tok.trace.bins)


def _train(data, out, steps, **kw):
    return reasonact.train(data, out, config="debug", steps=steps, batch_size=8, log_every=1, progress=False,
                           **{"precision": "fp32", "save_every": 3, **kw})


def test_checkpoint_reloads_to_identical_predictions(fake_data, tmp_path):
    run = _train(fake_data, tmp_path / "run", 4, reasoning="trace")
    for name in ("config.json", "model.safetensors", "stats.json", "metrics.jsonl", "checkpoint.pt",
                 "tokenizers/action.json", "tokenizers/trace.json", "tokenizers/text.json"):
        assert (run / name).exists(), name
    ds = load_dataset(fake_data)
    a = reasonact.load_policy(run).predict(ds[10])
    b = reasonact.load_policy(run).predict(ds[10])
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.trace, b.trace)
    assert a.actions.shape == (8, 4) and a.actions.dtype == np.float32
    assert a.trace.shape == (5, 2) and a.depth_tokens is None and a.nfe == 2 * 12
    assert a.latency_ms > 0


@pytest.mark.parametrize("extra", [{}, {"ema": 0.9, "points_weight": 1.0}], ids=["plain", "ema+points"])
def test_resume_reproduces_the_uninterrupted_run(fake_data, tmp_path, monkeypatch, extra):
    from safetensors.torch import load_file

    from reasonact import checkpoint

    whole = _train(fake_data, tmp_path / "whole", 6, **extra)
    real_save = checkpoint.save_training_state

    def save_then_die(run, model, opt, step, seconds, ema=None):  # killed right after the step-3 checkpoint
        real_save(run, model, opt, step, seconds, ema)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_training_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        _train(fake_data, tmp_path / "part", 6, **extra)
    monkeypatch.setattr(checkpoint, "save_training_state", real_save)
    part = tmp_path / "part"
    reasonact.train(None, part, resume=True, progress=False)
    read = lambda r: [json.loads(line) for line in (r / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    a, b = read(whole), read(part)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose([r["loss"] for r in b[3:]], [r["loss"] for r in a[3:]], rtol=1e-5)
    assert ("loss_points" in a[-1]) == bool(extra)
    wa, wb = load_file(whole / "model.safetensors"), load_file(part / "model.safetensors")
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(FileExistsError, match="--resume"):
        _train(fake_data, tmp_path / "whole", 6)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        reasonact.train(fake_data, tmp_path / "nothing", resume=True)


def test_bad_input_fails_clearly(fake_data, tmp_path):
    nostats = tmp_path / "nostats"  # statistics are computed where a dataset lacks them (LeRobot's may)
    shutil.copytree(fake_data, nostats)
    (nostats / "meta" / "stats.json").unlink()
    for key in ("action", "state"):
        np.testing.assert_allclose(load_dataset(nostats).stats[key]["q99"], load_dataset(fake_data).stats[key]["q99"])
    broken = tmp_path / "noaction"
    shutil.copytree(fake_data, broken)
    for f in (broken / "data").rglob("*.parquet"):
        pq.write_table(pq.read_table(f).drop_columns(["action"]), f)
    with pytest.raises(DatasetError, match="no action column"):
        _train(broken, tmp_path / "r1", 2)
    with pytest.raises(ValueError, match="debug, nano, tiny, small, base"):
        reasonact.train(fake_data, tmp_path / "r2", config="huge", progress=False)
    with pytest.raises(ValueError, match="reasoning mode"):
        reasonact.train(fake_data, tmp_path / "r3", reasoning="dream", progress=False)
    with pytest.raises(ValueError, match="no trace block"):
        reasonact.train(fake_data, tmp_path / "r3", reasoning="act", steer_prob=0.5, progress=False)
    with pytest.raises(ValueError, match="from 0 to 1"):
        reasonact.train(fake_data, tmp_path / "r3", reasoning="trace", steer_prob=1.5, progress=False)
    run = _train(fake_data, tmp_path / "r4", 1)
    policy = reasonact.load_policy(run)
    obs = load_dataset(fake_data)[0]
    with pytest.raises(ValueError, match=r"\(32, 32, 3\)"):
        policy.predict({**obs, "rgb": np.zeros((64, 64, 3), np.uint8)})
    with pytest.raises(ValueError, match="7 numbers"):
        policy.predict({**obs, "state": np.zeros(3)})
    with pytest.raises(ValueError, match="diffusion"):
        policy.predict(obs, decoder="ar")
    with pytest.raises(ValueError, match="trace"):
        policy.predict(obs, trace=np.zeros((5, 2)))
    with pytest.raises(FileNotFoundError, match="reasonact train"):
        reasonact.load_policy(tmp_path / "nope")
    r = subprocess.run([sys.executable, "-m", "reasonact", "train", "--data", str(fake_data), "--out",
                        str(tmp_path / "r5"), "--config", "huge"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown model config 'huge'" in r.stderr


@pytest.mark.slow
def test_torchrun_ddp_trains_on_two_cpu_processes(fake_data, tmp_path):
    out = tmp_path / "ddp"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                        "reasonact", "train", "--data", str(fake_data), "--out", str(out), "--config", "debug",
                        "--steps", "4", "--batch-size", "8", "--log-every", "2", "--device", "cpu"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [2, 4]  # written once, by rank 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
    assert reasonact.load_policy(out).predict(load_dataset(fake_data)[0]).actions.shape == (8, 4)


def test_train_load_predict_and_serve_without_the_simulator(fake_data, tmp_path):
    from reasonact.client import PolicyClient
    from reasonact.interface import PolicyLike
    from reasonact.serve.server import BackgroundServer

    run = reasonact.train(fake_data, tmp_path / "run", config="debug", steps=3, reasoning="depth+trace", progress=False)
    policy = reasonact.load_policy(run)
    assert isinstance(policy, PolicyLike)
    obs = load_dataset(fake_data)[40]
    local = policy.predict(obs)
    assert local.actions.shape == (8, 4) and local.trace.shape == (5, 2) and local.depth_tokens.shape == (16,)
    with BackgroundServer(policy) as url, PolicyClient(url) as client:
        assert isinstance(client, PolicyLike) and client.info == policy.info
        remote = client.predict({k: obs[k] for k in ("rgb", "state", "instruction")})
        np.testing.assert_array_equal(remote.actions, local.actions)
        np.testing.assert_array_equal(remote.depth_tokens, local.depth_tokens)


def test_lerobot_style_face_select_action_reset_and_save_pretrained(fake_data, tmp_path):
    from reasonact.policy import Policy

    run = reasonact.train(fake_data, tmp_path / "run", config="debug", steps=3, reasoning="depth+trace", progress=False)
    policy = Policy.from_pretrained(run)
    obs = load_dataset(fake_data)[40]
    chunk = policy.predict(obs).actions
    policy.n_action_steps = 3  # three actions of each chunk, then a new chunk
    served = [policy.select_action(obs) for _ in range(5)]
    np.testing.assert_array_equal(np.stack(served), chunk[[0, 1, 2, 0, 1]])
    policy.reset()
    np.testing.assert_array_equal(policy.select_action(obs), chunk[0])  # a fresh chunk after reset

    saved = policy.save_pretrained(tmp_path / "exported")
    assert not (saved / "checkpoint.pt").exists() and not list(saved.rglob("codes-*.npy"))
    again = Policy.from_pretrained(saved)
    assert again.info.blocks == policy.info.blocks
    pred = again.predict(obs)
    np.testing.assert_array_equal(pred.actions, chunk)
    np.testing.assert_array_equal(pred.depth_tokens, policy.predict(obs).depth_tokens)
    with pytest.raises(ValueError, match="onto itself"):
        policy.save_pretrained(run)


def test_a_points_run_writes_its_points_through_policy_and_server(fake_data, tmp_path):
    from reasonact.client import PolicyClient
    from reasonact.serve.server import BackgroundServer

    run = reasonact.train(fake_data, tmp_path / "run", config="debug", steps=3, reasoning="points+trace", progress=False)
    assert json.loads((run / "tokenizers" / "vocab.json").read_text())["late"] == ["<points>"]
    policy = reasonact.load_policy(run)
    obs = load_dataset(fake_data)[40]
    local = policy.predict(obs)
    assert local.points.shape == (1, 2) and local.trace.shape == (5, 2) and local.nfe == 3 * 12
    with BackgroundServer(policy) as url, PolicyClient(url) as client:
        remote = client.predict({k: obs[k] for k in ("rgb", "state", "instruction")})
        np.testing.assert_array_equal(remote.points, local.points)
    with pytest.raises(ValueError, match="without the points block's marker"):
        reasonact.train(fake_data, tmp_path / "again", config="debug", steps=1, reasoning="points",
                        init=str(_train(fake_data, tmp_path / "plain", 1)), progress=False)


def test_attention_of_a_steered_policy_sees_the_inputs_its_prediction_saw(fake_data, tmp_path):
    run = reasonact.train(fake_data, tmp_path / "run", config="debug", steps=2, reasoning="trace", steer_prob=0.5,
                          progress=False)
    policy = reasonact.load_policy(run)
    seen = []
    real = policy.model.prefix

    def prefix(images, instr, state):
        seen.append((images.clone(), instr.clone(), state.clone()))
        return real(images, instr, state)

    policy.model.prefix = prefix
    obs, trace = load_dataset(fake_data)[5], np.array([[4.0, 4.0], [16.0, 20.0], [28.0, 28.0]])
    pred = policy.predict(obs, trace=trace)
    policy.attention(obs, prediction=pred, trace=trace)
    (img_p, ins_p, st_p), (img_a, ins_a, st_a) = seen
    assert torch.equal(img_p, img_a) and torch.equal(ins_p, ins_a) and torch.equal(st_p, st_a)
    assert (st_p[0, 4:] == 0).all()  # steered: only proprioception is left in the state
    unsteered = policy.inputs([obs]).state
    assert not torch.equal(unsteered, st_p)


def test_presets_scale_the_depth_tokenizer_and_warmup_is_checked(fake_data, tmp_path, capsys):
    run = reasonact.train(fake_data, tmp_path / "run", config="debug", steps=2, reasoning="depth+trace", progress=False)
    assert "VQ-VAE, 100 steps" in capsys.readouterr().out
    saved = json.loads((run / "config.json").read_text())["train"]
    assert saved["depth_vae_steps"] == 100 and saved["warmup"] == 0 and saved["config"] == "debug"
    with pytest.raises(ValueError, match="--warmup 10 does not fit a run of 5 steps"):
        reasonact.train(fake_data, tmp_path / "r2", config="debug", steps=5, warmup=10, progress=False)
    with pytest.raises(ValueError, match="--steps must be at least 1"):
        reasonact.train(fake_data, tmp_path / "r3", config="debug", steps=0, progress=False)
    with pytest.raises(ValueError, match="--lr must be positive"):
        reasonact.train(fake_data, tmp_path / "r4", config="debug", lr=-1.0, progress=False)


def test_every_cli_option_has_help_and_train_flags_cover_every_config_field():
    import argparse
    from dataclasses import fields

    from reasonact.cli import build_parser
    from reasonact.training import TrainConfig

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.option_strings and action.dest != "help":
                assert action.help and action.help.strip(), f"{name} {action.option_strings} has no help"
                shown = p._get_formatter()._get_help_string(action)
                if action.default not in (None, False):
                    assert "default" in shown, f"{name} {action.option_strings} does not show its default"
    train = {a.dest for a in sub.choices["train"]._actions}
    assert {f.name for f in fields(TrainConfig)} <= train
    a = parser.parse_args(["train", "--data", "d", "--out", "o", "--trace-points", "7", "--no-augment",
                           "--model-overrides", '{"d_model": 96}'])
    assert a.trace_points == 7 and a.augment is False and a.model_overrides == {"d_model": 96} and a.lr is None
    q = parser.parse_args(["quickstart", "--steps", "10", "--reasoning", "act", "--task-episodes", '{"push-v3": 200}',
                           "--cameras", "zoom,gripperPOV", "--start-jitter", "0.1", "--task-weights", '{"push-v3": 2}'])
    assert q.steps == 10 and q.reasoning == "act" and q.task_episodes == {"push-v3": 200}
    assert q.cameras == "zoom,gripperPOV" and q.start_jitter == 0.1 and q.task_weights == {"push-v3": 2}
    e = parser.parse_args(["eval", "--checkpoint", "c", "--out", "o", "--diffusion-steps", "4"])
    assert e.diffusion_steps == 4


def test_progress_written_to_a_file_is_a_few_plain_lines(tmp_path):
    code = ("from reasonact.progress import progress_bar\n"
            "bar = progress_bar(range(2000), desc='work')\n"
            "for i in bar:\n    bar.set_postfix(loss=i)\n")
    log = tmp_path / "log"
    with open(log, "w") as f:
        subprocess.run([sys.executable, "-c", code], stderr=f, check=True)
    text = log.read_text()
    assert "\r" not in text and 1 <= len(text.splitlines()) <= 3 and "2000/2000" in text


def test_auto_precision_is_measured_on_native_bf16_cpus_and_saved(fake_data, tmp_path, monkeypatch, capsys):
    from reasonact import machine

    monkeypatch.setattr(machine, "native_bf16", lambda: False)
    run = reasonact.train(fake_data, tmp_path / "plain", config="debug", steps=2, progress=False)
    assert json.loads((run / "config.json").read_text())["train"]["precision"] == "fp32"
    assert "precision" not in capsys.readouterr().out  # nothing to measure: fp32
    monkeypatch.setattr(machine, "native_bf16", lambda: True)
    run = reasonact.train(fake_data, tmp_path / "native", config="debug", steps=2, log_every=1, progress=False)
    chosen = json.loads((run / "config.json").read_text())["train"]["precision"]
    out = capsys.readouterr().out
    assert chosen in ("fp32", "bf16") and f"precision {chosen}: a training step takes" in out
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < m["mfu"] < 1.5 for m in metrics)  # a share of the CPU's own measured matmul rate


def test_the_mfu_bar_is_measured_again_at_each_checkpoint(fake_data, tmp_path, monkeypatch):
    from reasonact.training import loop

    bars = iter([1e12, 4e12])
    monkeypatch.setattr(loop, "peak_flops", lambda *a, **k: next(bars))
    run = reasonact.train(fake_data, tmp_path / "r", config="debug", steps=4, log_every=1, save_every=2,
                          precision="fp32", progress=False)
    m = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    flops = [r["mfu"] * bar / r["samples_per_s"] for r, bar in zip(m, [1e12, 1e12, 4e12, 4e12])]
    assert flops == pytest.approx([flops[0]] * 4)  # the same FLOPs per sample over the bar in force


def test_model_flops_count_convolutions_matmuls_and_the_cpus_fused_attention():
    from reasonact.training.setup import flops_per_sample

    class Net(torch.nn.Module):  # an 8x8 image -> 4 patch tokens of width 8 -> one attention over them
        def __init__(self):
            super().__init__()
            self.conv, self.lin = torch.nn.Conv2d(3, 8, 4, stride=4), torch.nn.Linear(8, 8, bias=False)

        def forward(self, img):
            x = self.conv(img).flatten(2).transpose(1, 2)  # (B, 4, 8)
            q = self.lin(x).unflatten(2, (2, 4)).transpose(1, 2)  # (B, 2 heads, 4, 4)
            mask = torch.ones(4, 4, dtype=torch.bool)
            return torch.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=mask).square().mean()

    net = Net()
    conv = 2 * 4 * 8 * 48  # per sample: forward, and again for the weight's gradient (the image needs none)
    linear = 6 * 64 * 4  # forward, input and weight gradients
    attention = 2 * 2 * 4 * 4 * 4  # one (heads x 4 x 4) @ (4 x 4) product; 2 forward, 5 backward
    assert flops_per_sample(net, lambda: net(torch.rand(3, 3, 8, 8)), 3) == 2 * conv + linear + 7 * attention
    assert all(p.grad is None for p in net.parameters())


def test_training_takes_only_the_idle_cores(fake_data, tmp_path, monkeypatch, capsys):
    from reasonact import machine

    before = torch.get_num_threads()
    monkeypatch.delenv("REASONACT_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(machine, "idle_cores", lambda seconds=0.25: 0.8)  # another process holds the rest
    try:
        torch.set_num_threads(2)
        run = reasonact.train(fake_data, tmp_path / "run", config="debug", steps=2, log_every=1, progress=False)
        assert torch.get_num_threads() == 1 and "1 of 2 cores are busy" in capsys.readouterr().out
        assert all(json.loads(x)["threads"] == 1 for x in (run / "metrics.jsonl").read_text().splitlines())
        monkeypatch.setenv("REASONACT_THREADS", "two")
        with pytest.raises(ValueError, match="REASONACT_THREADS"):
            reasonact.train(fake_data, tmp_path / "r2", config="debug", steps=2, progress=False)
    finally:
        torch.set_num_threads(before)
    assert 0 <= machine.idle_cores(0.05) <= (os.cpu_count() or 1) + 1e-6


def test_random_shift_moves_the_trace_and_the_points_with_the_image(fake_data):
    """In the fake data the goal is a red disc (the recorded point) and the gripper a blue one (the trace's
    first point): after augmentation they must still sit on their discs."""
    ds = load_dataset(fake_data)
    src, tok, _ = _source(ds, "trace")
    aug = BatchSource(ds, np.arange(len(ds)), tok, image_size=32, horizon=8, blocks=("trace", "act"),
                      instruction_tokens=16, state_norm=NO_NORM, augment=True, shift=4, points=True,
                      paraphrase_prob=0.0, progress=False)
    rows = torch.arange(0, len(ds), 7)
    b = aug.batch(rows, torch.Generator().manual_seed(0))
    plain = src.batch(rows)
    assert not torch.equal(b["images"], plain["images"])  # shifted
    img = b["images"][:, 0]  # (B, 3, S, S), the only view
    goal = (b["points"][:, 0] * 32).long().clamp(0, 31)  # (B, 2) pixels (x, y)
    tr = tok.trace
    ee = ((b["targets"]["trace"][:, :2] - tok.vocab.offset("coord")).float() + 0.5)
    ee = (ee * torch.tensor([tr.width / tr.bins, tr.height / tr.bins])).long().clamp(0, 31)
    k = torch.arange(len(rows))
    # Where the discs overlap the gripper is drawn over the goal: compare with the unshifted image instead.
    still = plain["images"][:, 0]
    at = lambda im, xy: im[k, :, xy[:, 1], xy[:, 0]]  # noqa: E731
    goal0 = torch.from_numpy(ds.points[rows.numpy(), 0]).long()
    ee0 = torch.from_numpy(ds.traces[rows.numpy(), 0]).long()
    for moved, unmoved in ((at(img, goal), at(still, goal0)), (at(img, ee), at(still, ee0))):
        assert (unmoved.max(1).values - unmoved.min(1).values > 0.3).all()  # on a disc, not the grey table
        # Brightness and contrast move colours a little; which channel leads does not change.
        assert (moved.argmax(1) == unmoved.argmax(1)).float().mean() > 0.9


def test_colour_jitter_and_tint_scale_the_pixels_within_their_bounds(fake_data):
    """--jitter scales each sample's brightness (its mean) by a factor from [1-s, 1+s]; --tint scales each colour
    channel by its own factor from [1-s, 1+s], the same over the whole image and all its views."""
    ds = load_dataset(fake_data)
    plain, tok, seq = _source(ds, "act")
    rows = torch.arange(0, len(ds), 3)
    x = plain.batch(rows)["images"]

    def augmented(jitter, tint):
        src = BatchSource(ds, np.arange(len(ds)), tok, image_size=32, horizon=seq.horizon, blocks=seq.blocks,
                          instruction_tokens=seq.instruction_tokens, state_norm=NO_NORM, augment=True, shift=0,
                          jitter=jitter, tint=tint, paraphrase_prob=0.0, progress=False)
        return src.batch(rows, torch.Generator().manual_seed(0))["images"]

    assert torch.allclose(augmented(0.0, 0.0), x, atol=1e-6)  # no shift, no jitter, no tint: the frames as stored
    inside = (x > 0.02) & (x < 0.6)  # pixels the factors cannot push past 0 or 1
    gain = torch.where(inside, augmented(0.0, 0.3) / x.clamp(min=1e-3), torch.nan)  # (B, V, 3, S, S)
    per_channel = gain.flatten(3).nanmedian(-1).values  # (B, V, 3)
    assert (gain - per_channel[..., None, None])[inside].abs().max() < 1e-4  # one factor per channel
    assert (per_channel >= 0.7 - 1e-4).all() and (per_channel <= 1.3 + 1e-4).all()
    assert per_channel.std(-1).mean() > 0.05  # the channels move apart: a tint, not a brightness change
    bright = augmented(0.5, 0.0).mean((1, 2, 3, 4)) / x.mean((1, 2, 3, 4))
    assert (bright > 0.5 - 0.05).all() and (bright < 1.5 + 0.05).all() and bright.max() - bright.min() > 0.5
    with pytest.raises(ValueError, match="--tint is the largest change of a factor"):
        train_config(tint=1.5)
    with pytest.raises(ValueError, match="--rationale-dropout hides the rationale, but reasoning 'act'"):
        train_config(reasoning="act", rationale_dropout=0.2)


def test_task_weights_set_how_often_each_task_is_drawn(fake_data):
    ds = load_dataset(fake_data)
    _, tok, seq = _source(ds, "act")
    a, b = ds.task_names

    def share_of_b(weights):
        src = BatchSource(ds, np.arange(len(ds)), tok, image_size=32, horizon=seq.horizon, blocks=seq.blocks,
                          instruction_tokens=seq.instruction_tokens, state_norm=NO_NORM, task_weights=weights,
                          paraphrase_prob=0.0, progress=False)
        instr = src.sample(4000, torch.Generator().manual_seed(0))["instr"]  # the task's own instruction
        return (instr == src.instructions[ds.task_names.index(b), 0]).all(1).float().mean().item()

    assert abs(share_of_b({}) - 0.5) < 0.05  # the fake tasks have equal frame counts
    assert abs(share_of_b({b: 3}) - 0.75) < 0.05
    assert share_of_b({a: 0}) == 1.0
    with pytest.raises(DatasetError, match="does not hold"):
        share_of_b({"push-v9": 2})
    with pytest.raises(ValueError, match="task-weights"):
        train_config("debug", task_weights={a: -1})


def test_episode_limit_keeps_the_first_episodes_of_a_named_task(fake_data):
    from reasonact.data.pipeline import episodes_kept

    ds = load_dataset(fake_data)
    a, b = ds.task_names
    kept = episodes_kept(ds, {b: 1})
    task_of_frame = np.array(ds.task_names)[ds.task_index]
    assert kept[task_of_frame == a].all()  # a task not named keeps every episode
    b_rows = np.unique(ds.episode_row[task_of_frame == b])
    assert np.unique(ds.episode_row[kept & (task_of_frame == b)]).tolist() == [b_rows.min()]  # the first of three
    assert kept.sum() == (task_of_frame == a).sum() + (ds.episode_row == b_rows.min()).sum()
    with pytest.raises(DatasetError, match="holds 3"):
        episodes_kept(ds, {b: 4})
    with pytest.raises(DatasetError, match="does not hold"):
        episodes_kept(ds, {"push-v9": 1})
    with pytest.raises(ValueError, match="episode-limit"):
        train_config("debug", episode_limit={a: 0})


@pytest.mark.sim
def test_a_run_trains_on_the_views_named_and_its_policy_reads_only_those(tiny_dataset, tmp_path):
    full = load_dataset(tiny_dataset)
    wrist = load_dataset(tiny_dataset, views="gripperPOV")
    assert full.views == ["zoom", "gripperPOV"] and wrist.views == ["gripperPOV"]
    assert wrist.info["camera"] == "gripperPOV" and list(wrist[5]["images"]) == ["gripperPOV"]
    np.testing.assert_array_equal(wrist[5]["rgb"], full.image(5, "gripperPOV"))
    for bad, match in (("corner2", "holds the views zoom, gripperPOV"), ("zoom,zoom", "each once"),
                       ("zoom,", "each once")):
        with pytest.raises(DatasetError, match=match):
            load_dataset(tiny_dataset, views=bad)
    with pytest.raises(ValueError, match="--views 'gripperPOV,zoom': the first view holds the trace"):
        _train(tiny_dataset, tmp_path / "wrist-first", 2, views="gripperPOV,zoom")
    run = _train(tiny_dataset, tmp_path / "run", 2, views="zoom")
    policy = reasonact.load_policy(run)
    assert policy.spec.data.views == ("zoom",) and policy.spec.model.views == 1
    item = full[5]
    blind = {**item, "images": {**item["images"], "gripperPOV": np.zeros_like(item["images"]["gripperPOV"])}}
    np.testing.assert_array_equal(policy.predict(item).actions, policy.predict(blind).actions)


def test_own_weights_of_an_ema_run_export_as_a_policy(fake_data, tmp_path):
    from safetensors.torch import load_file

    from reasonact.checkpoint import export_own_weights

    run = _train(fake_data, tmp_path / "run", 4, ema=0.9)
    own = export_own_weights(run, tmp_path / "own")
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)
    published, exported = load_file(run / "model.safetensors"), load_file(own / "model.safetensors")
    assert exported.keys() == published.keys()
    for k in exported:
        torch.testing.assert_close(exported[k], state["model"][k])
    assert any(not torch.equal(exported[k], published[k]) for k in exported)  # not the average
    ds = load_dataset(fake_data)
    assert reasonact.load_policy(own).predict(ds[10]).actions.shape == (8, 4)
    plain = _train(fake_data, tmp_path / "plain", 3)
    with pytest.raises(ValueError, match="without --ema"):
        export_own_weights(plain, tmp_path / "plain-own")
    with pytest.raises(FileNotFoundError, match="checkpoint.pt"):
        export_own_weights(own, tmp_path / "again")


def test_weight_average_follows_the_weights_and_swaps_in_for_saving():
    from reasonact.training.ema import WeightAverage

    model = torch.nn.Linear(3, 2)
    ema = WeightAverage(model, decay=0.5)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    for _ in range(50):
        ema.update()
    with ema.applied():
        torch.testing.assert_close(model.weight, start + 1.0)  # converged on the constant weights
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update()  # one step of decay 0.5: half-way
    with ema.applied():
        torch.testing.assert_close(model.weight, start + 1.5)
    torch.testing.assert_close(model.weight, start + 2.0)  # its own weights are back


def test_a_dataset_of_the_earlier_layout_loads_as_the_same_data(tmp_path):
    """tests/artifacts/dataset-reasonact-v1 is fake_dataset(episodes_per_task=2, length=12, resolution=32) as
    reasonact wrote it before datasets were LeRobot v3.0 (PNG depth, one episode_*.parquet per episode)."""
    from pathlib import Path

    old = load_dataset(Path(__file__).parent / "artifacts" / "dataset-reasonact-v1")
    new = load_dataset(reasonact.fake_dataset(tmp_path / "v3", episodes_per_task=2, length=12, resolution=32))
    assert old.info["codebase_version"] == "reasonact/v1" and new.info["codebase_version"] == "v3.0"
    assert len(old) == len(new) == 48 and old.views == new.views and old.tasks == new.tasks
    for name in ("actions", "states", "ee_pos", "traces", "points", "episode_index", "frame_index", "task_index"):
        np.testing.assert_array_equal(getattr(old, name), getattr(new, name), err_msg=name)
    assert [(e["task"], e["seed"], e["length"], e["first_index"]) for e in old.episodes] == \
        [(e["task"], e["seed"], e["length"], e["first_index"]) for e in new.episodes]
    for i in (0, 17, 47):
        a, b = old[i], new[i]
        np.testing.assert_array_equal(a["rgb"], b["rgb"])
        np.testing.assert_array_equal(a["depth"], b["depth"])
        assert a["instruction"] == b["instruction"] and a["task"] == b["task"]
    for key in ("action", "state"):
        np.testing.assert_allclose(old.stats[key]["q99"], new.stats[key]["q99"])


def test_compile_is_skipped_with_a_message_where_no_cpp_compiler_is_found(monkeypatch, capsys):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert not can_compile(torch.device("cpu"))
    assert "no C++ compiler" in capsys.readouterr().out
    assert can_compile(torch.device("cuda"))  # GPU kernels are generated without a host C++ compiler
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}" if name == "g++" else None)
    assert can_compile(torch.device("cpu"))


@pytest.mark.skipif(not can_compile(torch.device("cpu"), say=False),
                    reason="torch.compile needs a C++ compiler on a CPU (g++, c++, clang++ or $CXX); CI has g++")
def test_a_compiled_steering_run_trains_its_trace_and_action_blocks(fake_data, tmp_path):
    # The output head is sliced once per block (trace, then actions): the compiled step must take both slices.
    run = reasonact.train(fake_data, tmp_path / "run", config="debug", steps=3, reasoning="trace", steer_prob=0.3,
                          compile=True, progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 3
    assert all(np.isfinite(r["loss_trace"]) and np.isfinite(r["loss_act"]) for r in rows)


def test_a_relative_trace_run_trains_on_offsets_and_its_policy_writes_pixels(fake_data, tmp_path):
    ds = load_dataset(fake_data)
    src, tok, _ = _source(ds, "trace")
    tok = dataclasses.replace(tok, trace=dataclasses.replace(tok.trace, relative=True, offset_range=0.5))
    src.tok = tok
    rows = torch.arange(0, len(ds), 5)
    want = tok.trace.encode(ds.traces[rows.numpy()]) + tok.vocab.offset("coord")
    np.testing.assert_array_equal(src.batch(rows)["targets"]["trace"].numpy(), want)  # the pipeline writes as the tokenizer
    absolute = reasonact.train(fake_data, tmp_path / "abs", config="debug", steps=2, reasoning="trace", progress=False)
    run = reasonact.train(fake_data, tmp_path / "rel", config="debug", steps=2, reasoning="trace", trace_relative=True,
                          trace_offset_range=0.5, init=str(absolute), progress=False)  # its trace rewritten
    policy = reasonact.load_policy(run)
    assert policy.tok.trace.relative and not reasonact.load_policy(absolute).tok.trace.relative
    assert policy.tok.trace.offset_range == 0.5
    with pytest.raises(ValueError, match="needs --trace-relative"):
        train_config(reasoning="trace", trace_offset_range=0.5)
    with pytest.raises(ValueError, match="--trace-offset-range is a fraction"):
        train_config(reasoning="trace", trace_relative=True, trace_offset_range=0)
    pred = policy.predict(ds[0])
    assert pred.trace.shape == (5, 2) and np.isfinite(pred.trace).all()


def test_a_depth_trace_run_trains_on_depth_and_its_policy_follows_or_fills_in_the_depth(fake_data, tmp_path):
    from reasonact.data.dataset import trace_frame_indices
    from reasonact.envs import depth_of

    ds = load_dataset(fake_data)
    for i in (0, 7, len(ds) - 1):  # each trace point's depth: the future end-effector position's, in this frame's camera
        future = trace_frame_indices(np.array([i]), ds.episode_end[[i]] - 1, ds.trace_points)[0]
        np.testing.assert_allclose(ds[i]["trace_depth"], depth_of(ds.ee_pos[future], ds.extrinsics[i]), rtol=1e-5)
    lo, hi = ds.trace_depth_range()
    assert lo <= ds.trace_depths.min() - 0.04 and hi >= ds.trace_depths.max() + 0.04
    text = TextTokenizer.train([t["instruction"] for t in ds.tasks], 300)
    seq = SequenceConfig(reasoning="trace", trace_depth=True)
    assert seq.block_length("trace") == 15
    tok = Tokenizers(ActionTokenizer.from_stats(ds.stats), TraceTokenizer(ds.resolution, ds.resolution, relative=True,
                                                                         depth=(lo, hi)),
                     text, Vocab.for_blocks(seq.blocks, text=text.vocab_size))
    src = BatchSource(ds, np.arange(len(ds)), tok, image_size=32, horizon=seq.horizon, blocks=seq.blocks,
                      instruction_tokens=seq.instruction_tokens, state_norm=NO_NORM, augment=False,
                      paraphrase_prob=0.0, progress=False)
    rows = torch.arange(0, len(ds), 5)
    traces3 = np.concatenate([ds.traces, ds.trace_depths[..., None]], -1)
    want = tok.trace.encode(traces3[rows.numpy()]) + tok.vocab.offset("coord")
    np.testing.assert_array_equal(src.batch(rows)["targets"]["trace"].numpy(), want)  # the pipeline writes as the tokenizer
    # --depth-dropout: steered samples given the pixels only learn to write the depth, and only the depth
    dropped = BatchSource(ds, np.arange(len(ds)), tok, image_size=32, horizon=seq.horizon, blocks=seq.blocks,
                          instruction_tokens=seq.instruction_tokens, state_norm=NO_NORM, augment=False,
                          paraphrase_prob=0.0, steer_prob=1.0, depth_dropout=1.0, progress=False)
    batch = dropped.batch(rows)
    given = batch["steered"]
    assert given.shape == (len(rows), 15) and given[:, 0::3].all() and given[:, 1::3].all() and not given[:, 2::3].any()
    model = ActionReasoningModel(Config(model_config("debug"), seq), tok.vocab)
    _, _, plan = model.training_inputs(batch["targets"], given)
    trace_loss = dict((b, m) for b, _, _, m in plan)["trace"]
    assert not trace_loss[:, 0::3].any() and not trace_loss[:, 1::3].any() and trace_loss[:, 2::3].any()
    with pytest.raises(ValueError, match="--depth-dropout"):
        train_config(reasoning="trace", steer_prob=0.3, depth_dropout=0.5)  # without --trace-depth
    flat = reasonact.train(fake_data, tmp_path / "flat", config="debug", steps=2, reasoning="trace", progress=False)
    for decoder in ("diffusion", "ar"):
        run = reasonact.train(fake_data, tmp_path / decoder, config="debug", steps=2, reasoning="trace", trace_depth=True,
                              decoder=decoder, steer_prob=0.3, progress=False,
                              **({"init": str(flat)} if decoder == "diffusion" else {}))  # a 2D run's weights
        policy = reasonact.load_policy(run)
        assert policy.info.trace_depth and policy.tok.trace.depth == (lo, hi)
        pred = policy.predict(ds[0])
        assert pred.trace.shape == (5, 2) and pred.trace_depth.shape == (5,)
        assert lo <= pred.trace_depth[0] <= hi and np.isfinite(pred.trace_depth).all()
        # a trace given with depth is used as given; given in pixels only, the policy writes the depth
        given, off = policy.tok.trace.resample(traces3[0]), policy.tok.vocab.offset("coord")
        tokens = policy.transform.trace_tokens(given)
        assert (tokens >= 0).all() and np.abs(tokens - policy.tok.trace.encode(given)).max() <= 1
        pred = policy.predict(ds[0], trace=given)
        np.testing.assert_array_equal(pred.tokens["trace"], tokens + off)
        np.testing.assert_allclose(pred.trace_depth, given[:, 2], atol=(hi - lo) / 256)
        pred = policy.predict(ds[0], trace=given[:, :2])
        xy = np.ones(15, bool)
        xy[2::3] = False
        flat_tokens = policy.transform.trace_tokens(given[:, :2])
        assert (flat_tokens[~xy] == UNKNOWN).all() and (flat_tokens[xy] >= 0).all()
        np.testing.assert_array_equal(pred.tokens["trace"][xy], flat_tokens[xy] + off)
        lo_id, hi_id = policy.tok.vocab.block_range("trace")
        assert ((pred.tokens["trace"] >= lo_id) & (pred.tokens["trace"] < hi_id)).all()
    # a policy whose trace has no depth ignores a depth column
    plain = reasonact.load_policy(flat)
    np.testing.assert_array_equal(plain.predict(ds[0], trace=traces3[0]).tokens["trace"],
                                  plain.predict(ds[0], trace=traces3[0][:, :2]).tokens["trace"])


def test_an_unfinished_run_is_continued_only_from_the_same_data_and_settings(fake_data, tmp_path, monkeypatch):
    from reasonact import checkpoint

    other = reasonact.fake_dataset(tmp_path / "other", episodes_per_task=2, seed=1)
    run = tmp_path / "run"

    def killed(*args, **kwargs):  # killed before its first checkpoint
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save_training_state", killed)
    with pytest.raises(KeyboardInterrupt):
        _train(fake_data, run, 6)
    monkeypatch.undo()
    assert (run / "tokenizers").is_dir() and not checkpoint.has_training_state(run)
    with pytest.raises(FileExistsError, match="other data or settings"):
        _train(other, run, 6)
    with pytest.raises(FileExistsError, match="other data or settings"):
        _train(fake_data, run, 6, lr=2e-3)
    _train(fake_data, run, 6)  # the same command again: it continues, and its log is written once
    assert [r["step"] for r in checkpoint.read_metrics(run)] == [1, 2, 3, 4, 5, 6]
    with open(run / "metrics.jsonl", "a") as f:  # a kill in the middle of writing a line
        f.write('{"step": 7, "lo')
    reasonact.train(None, run, resume=True, steps=8, progress=False)
    assert [r["step"] for r in checkpoint.read_metrics(run)] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert all(json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines())
    with pytest.raises(FileExistsError, match="unknown build"):  # a directory of something else
        (tmp_path / "foreign").mkdir()
        (tmp_path / "foreign" / "config.json").write_text("{}")
        _train(fake_data, tmp_path / "foreign", 2)


def test_a_checkpoint_is_written_every_save_minutes_whatever_the_step(fake_data, tmp_path, monkeypatch):
    from reasonact import checkpoint

    saved, real = [], checkpoint.save_training_state

    def spy(run, model, opt, step, *args, **kwargs):
        saved.append(step)
        real(run, model, opt, step, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "save_training_state", spy)
    _train(fake_data, tmp_path / "timed", 4, save_every=1000, save_minutes=1e-6)
    assert saved == [1, 2, 3, 4]
    saved.clear()
    _train(fake_data, tmp_path / "stepped", 4, save_every=1000, save_minutes=0)
    assert saved == [4]
