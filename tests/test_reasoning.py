import http.server
import json
import re
import shutil
import threading
import time

import numpy as np
import pytest
import torch

import reasonact
from reasonact.data import load_dataset
from reasonact.reasoning import RationaleParseError, parse_rationale
from reasonact.reasoning.annotate import annotate, read_keyframes
from reasonact.reasoning.teachers import AXES, OpenAITeacher, PrivilegedTeacher, StepContext

GOOD = ("Observation: the gripper is open above the table.\nSituation: approaching.\n"
        "Spatial reasoning: the target is ahead and below.\nPlan: move forward and down.")


def test_parse_rationale_accepts_both_layouts_and_rejects_missing_sections():
    r = parse_rationale(GOOD)
    assert r.situation == "approaching." and r.plan == "move forward and down."
    assert parse_rationale(r.text()) == r
    assert parse_rationale("**Observation:** a. **Situation:** b. **Spatial reasoning:** c. **Plan:** d.").plan == "d."
    with pytest.raises(RationaleParseError, match="Plan"):
        parse_rationale("Observation: a. Situation: b. Spatial reasoning: c.")
    with pytest.raises(RationaleParseError):
        parse_rationale("I cannot help with that.")


@pytest.mark.sim
def test_privileged_teacher_states_true_facts(tiny_dataset):
    ds = load_dataset(tiny_dataset)
    teacher = PrivilegedTeacher()
    checked = 0
    for i in range(0, len(ds), 3):
        task = ds.tasks[int(ds.task_index[i])]["task"]
        s = ds.privileged[i]
        r = teacher.rationale(StepContext(task, "", None, s, ds.actions[i], int(ds.frame_index[i]), 0))
        hand, obj, goal = s[0:3], s[4:7], s[36:39]
        if task == "reach-v3":
            target, origin = goal, hand
        elif r.situation.startswith("Approaching"):
            target, origin = obj, hand
        elif r.situation.startswith("Moving"):
            target, origin = goal, obj
        else:
            continue
        delta = target - origin
        # Every direction named matches the sign of the true offset, and its size to the centimetre.
        named = re.findall(r"(\d+) cm (right|left|forward|back|up|down)", r.spatial)
        assert named or np.abs(delta).max() <= 0.01, r.spatial
        for cm, word in named:
            axis = next(k for k, pair in enumerate(AXES) if word in pair)
            sign = 1 if AXES[axis][0] == word else -1
            assert sign * delta[axis] > 0, (word, delta, r.spatial)
            assert abs(abs(delta[axis]) * 100 - int(cm)) <= 0.5 + 1e-6
        # Axes with an offset over 1 cm are all named.
        assert len(named) == int((np.abs(delta) > 0.01).sum())
        # The distance in the observation is the true one.
        dist = int(re.search(r"(\d+) cm away", r.observation).group(1))
        true = np.linalg.norm((goal if task == "reach-v3" else obj) - hand) * 100
        assert abs(dist - true) <= 0.5 + 1e-6
        checked += 1
    assert checked > 20


class FakeOpenAI:
    """An OpenAI-compatible chat-completions server on 127.0.0.1 answering from a script of behaviours."""

    def __init__(self, script):
        self.script = list(script)  # "ok" | "500" | "timeout" | "garbage"; the last one repeats
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                kind = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                if kind == "500":
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b"overloaded")
                    return
                if kind == "timeout":
                    time.sleep(1.5)
                text = GOOD if kind in ("ok", "timeout") else "Sure! The robot is doing great."
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def _step():
    return StepContext("reach-v3", "reach the goal", np.zeros((16, 16, 3), np.uint8), np.zeros(39), np.zeros(4), 0, 10)


def test_openai_teacher_retries_errors_timeouts_and_unparseable_answers(tmp_path):
    server = FakeOpenAI(["500", "timeout", "garbage", "ok"])
    try:
        t = OpenAITeacher(server.url, "fake-vlm", cache_dir=tmp_path / "cache", timeout=0.5, backoff=0.01)
        r = t.rationale(_step())
        assert r.plan == "move forward and down."
        assert t.stats["retries"] >= 2 and t.stats["parse_failures"] == 1
        req = server.requests[-1]
        assert req["model"] == "fake-vlm" and req["messages"][0]["role"] == "system"
        assert req["messages"][1]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
        n = len(server.requests)
        # The unparseable answer was not cached: the next run asks that question again (now answered well) ...
        t2 = OpenAITeacher(server.url, "fake-vlm", cache_dir=tmp_path / "cache", timeout=0.5, backoff=0.01)
        assert t2.rationale(_step()) == r and len(server.requests) == n + 1
        # ... and the one after is answered from the cache alone
        t3 = OpenAITeacher(server.url, "fake-vlm", cache_dir=tmp_path / "cache", timeout=0.5, backoff=0.01)
        assert t3.rationale(_step()) == r and len(server.requests) == n + 1
        assert t3.stats["cache_hits"] == 1
    finally:
        server.close()
    always_bad = FakeOpenAI(["garbage"])
    try:
        t = OpenAITeacher(always_bad.url, "fake-vlm", backoff=0.01, parse_retries=2)
        with pytest.raises(RationaleParseError, match="no parseable rationale after 3"):
            t.rationale(_step())
    finally:
        always_bad.close()


def test_a_bad_teacher_setting_writes_nothing_and_the_corrected_command_runs(fake_data, tmp_path):
    import shutil

    from reasonact.reasoning.annotate import annotate

    data = tmp_path / "data"
    shutil.copytree(fake_data, data)
    server = FakeOpenAI(["ok"])
    try:
        with pytest.raises(ValueError, match="--model"):
            annotate(data, teacher="openai", endpoint=server.url, every=30, progress=False)
        assert not (data / "meta" / "rationales.json").exists()
        summary = annotate(data, teacher="openai", endpoint=server.url, model="fake-vlm", every=30, progress=False)
    finally:
        server.close()
    assert summary.keyframes == 6 and not summary.failures


@pytest.mark.sim
def test_annotation_resumes_and_never_rewrites(tiny_dataset, tmp_path):
    data = tmp_path / "ds"
    shutil.copytree(tiny_dataset, data)
    ds = load_dataset(data)
    n_key = int((ds.frame_index % 10 == 0).sum())
    # First run: the server fails for good after a few answers; those keyframes are reported, not lost.
    server = FakeOpenAI(["ok"] * 5 + ["500"])
    try:
        s1 = annotate(data, teacher="openai", endpoint=server.url, model="fake", every=10, concurrency=2, progress=False,
                      teacher_obj=OpenAITeacher(server.url, "fake", cache_dir=data / "meta" / "rationales" / "cache",
                                                backoff=0.01, max_retries=1))
    finally:
        server.close()
    assert s1.keyframes == 5 and len(s1.failures) == n_key - 5
    first = (data / "meta" / "rationales" / "keyframes.jsonl").read_bytes()
    server = FakeOpenAI(["ok"])
    try:
        s2 = annotate(data, teacher="openai", endpoint=server.url, model="fake", every=10, progress=False,
                      teacher_obj=OpenAITeacher(server.url, "fake", cache_dir=data / "meta" / "rationales" / "cache"))
        assert len(server.requests) == n_key - 5  # only what was missing
    finally:
        server.close()
    assert s2.keyframes == n_key and not s2.failures and s2.frames == len(ds)
    assert (data / "meta" / "rationales" / "keyframes.jsonl").read_bytes().startswith(first)
    ds = load_dataset(data)
    assert ds[3]["rationale"] == read_keyframes(data)[int(ds.episode_start[3])]["rationale"]
    with pytest.raises(ValueError, match="never rewritten"):
        annotate(data, teacher="privileged", every=10, progress=False)


@pytest.fixture(scope="module")
def annotated(tiny_dataset, tmp_path_factory):
    data = tmp_path_factory.mktemp("annotated") / "ds"
    shutil.copytree(tiny_dataset, data)
    s = annotate(data, teacher="privileged", every=4, progress=False)
    assert s.frames == len(load_dataset(data))
    return data


@pytest.mark.sim
def test_fine_tuning_leaves_frozen_layers_bit_identical_and_writes_rationales(annotated, tmp_path):
    from safetensors.torch import load_file

    base = reasonact.train(annotated, tmp_path / "base", config="debug", steps=3, batch_size=4, progress=False)
    tuned = reasonact.train(annotated, tmp_path / "tuned", config="debug", steps=3, batch_size=4, init=str(base),
                            reasoning="full", lambda_reason=0.3, freeze_layers=1, depth_vae_steps=20,
                            rationale_dropout=0.5, progress=False)
    a, b = load_file(str(base / "model.safetensors")), load_file(str(tuned / "model.safetensors"))
    frozen = [k for k in a if k.startswith(("vision.", "layers.0."))]
    trained = [k for k in a if k.startswith("layers.1.")]
    assert frozen and trained
    for k in frozen:
        assert torch.equal(a[k], b[k]), k
    assert any(not torch.equal(a[k], b[k]) for k in trained)
    cfg = json.loads((tuned / "config.json").read_text())
    assert cfg["train"]["lambda_reason"] == 0.3 and cfg["sequence"]["reasoning"] == "full"
    assert cfg["train"]["rationale_dropout"] == 0.5
    p = reasonact.load_policy(tuned).predict(load_dataset(annotated)[0])
    assert isinstance(p.rationale, str) and p.depth_tokens.shape == (16,) and p.trace.shape == (5, 2)


@pytest.mark.sim
def test_overfit_rationale_block_writes_the_teachers_text(annotated):
    from reasonact.checkpoint import StateNorm, Tokenizers
    from reasonact.data.pipeline import BatchSource
    from reasonact.decoding import generate
    from reasonact.model.arm import ActionReasoningModel
    from reasonact.model.config import Config, SequenceConfig, model_config
    from reasonact.tokenizers import ActionTokenizer, TextTokenizer, TraceTokenizer, Vocab
    from reasonact.transforms import encode_rationale

    ds = load_dataset(annotated)
    texts = ds.rationales()
    text = TextTokenizer.train(sorted(set(texts)) + [t["instruction"] for t in ds.tasks], 400)
    tok = Tokenizers(ActionTokenizer.from_stats(ds.stats), TraceTokenizer(48, 48), text, Vocab(text=text.vocab_size))
    seq = SequenceConfig(reasoning="think", decoder="diffusion", think_tokens=56)
    rat = torch.stack([encode_rationale(t, text, tok.vocab, 56) for t in texts])
    src = BatchSource(ds, np.arange(len(ds)), tok, image_size=32, horizon=8, blocks=seq.blocks, instruction_tokens=16,
                      state_norm=StateNorm(np.zeros(7, np.float32), np.ones(7, np.float32)), rationales=rat,
                      augment=False, paraphrase_prob=0.0, progress=False)
    torch.manual_seed(0)
    model = ActionReasoningModel(Config(model_config("debug", views=len(ds.views)), seq), tok.vocab)
    rows = torch.tensor([0, 120])
    batch = src.batch(rows)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    # Usually exact after 800 steps; the float arithmetic (threads, CPU) moves the last token or two, so the
    # decoded block is checked every 200 steps from there, up to 1600.
    for step in range(1600):
        model.train()
        loss, m = model(batch["images"], batch["instr"], batch["state"], batch["targets"], None,
                        torch.Generator().manual_seed(step))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step + 1 >= 800 and (step + 1) % 200 == 0:
            model.eval()
            res = generate(model, batch["images"], batch["instr"], batch["state"], diffusion_steps=12,
                           generator=torch.Generator().manual_seed(0))
            if torch.equal(res.tokens["think"], batch["targets"]["think"]):
                break
    assert torch.equal(res.tokens["think"], batch["targets"]["think"])
    v = tok.vocab
    written = text.decode([int(i) - v.offset("text") for i in res.tokens["think"][1] if i >= v.offset("text")])
    assert written == texts[120].lower()


@pytest.mark.sim
def test_attention_maps_sum_to_one_over_the_image(tiny_dataset, tmp_path):
    from PIL import Image

    from reasonact.viz.attention import attention_report, heatmap

    run = reasonact.train(tiny_dataset, tmp_path / "run", config="debug", steps=2, batch_size=4, reasoning="trace",
                          progress=False)
    policy = reasonact.load_policy(run)
    item = load_dataset(tiny_dataset)[7]
    maps = policy.attention(item)
    g = 32 // 8
    assert maps.layers.shape == (2, g, g) and maps.fused.shape == (g, g)
    np.testing.assert_allclose(maps.layers.sum((1, 2)), 1.0, atol=1e-5)
    assert maps.fused.sum() == pytest.approx(1.0, abs=1e-5) and (maps.layers >= 0).all()
    assert ((maps.image_share > 0) & (maps.image_share <= 1 + 1e-6)).all()
    assert heatmap(item["rgb"], maps.fused, scale=4).shape == (192, 192, 3)
    sheet = attention_report(policy, tiny_dataset, 0, tmp_path / "att", frames=3)
    assert Image.open(sheet).size[0] > 4 * 192
    assert len(list((tmp_path / "att").glob("frame*_layer0.png"))) == 3
    assert Image.open(next((tmp_path / "att").glob("frame*_fused.png"))).size == (240, 240)


def test_attention_share_at_reads_the_patch_under_each_point():
    from reasonact.viz.attention import share_at

    attn = np.zeros((4, 4))
    attn[1, 2], attn[3, 0] = 0.7, 0.3  # (row, column)
    got = share_at(attn, np.array([[40, 20], [5, 60], [63.9, 63.9], [70, 10], [-1, 5]]), (64, 64))
    np.testing.assert_allclose(got[:3], [0.7, 0.3, 0.0])
    assert np.isnan(got[3:]).all()  # off the image
    # A wider image: x is read against the width, y against the height.
    assert share_at(attn, np.array([[80, 20]]), (128, 64))[0] == 0.7



def test_a_rationale_block_too_short_says_the_length_that_holds_every_rationale(capsys):
    from types import SimpleNamespace

    from reasonact.tokenizers import TextTokenizer, Vocab
    from reasonact.training.setup import rationale_tokens

    text = TextTokenizer.train(["open the drawer", "push the puck"], 300)  # fitted without the rationale
    tok = SimpleNamespace(text=text, vocab=Vocab(text=text.vocab_size))
    n = len(text.encode(GOOD))
    ids = rationale_tokens([GOOD, GOOD], tok, 16)
    assert ids.shape == (2, 16) and ids[0, -1] == tok.vocab.eot  # cut short, <eot> kept last
    assert f"the longest takes {n} tokens (--think-tokens {n + 1} holds them all" in capsys.readouterr().out
    ids = rationale_tokens([GOOD], tok, n + 1)
    assert "warning" not in capsys.readouterr().out and ids[0, -1] == tok.vocab.eot
    assert [int(i) - tok.vocab.offset("text") for i in ids[0, :-1]] == list(text.encode(GOOD))  # all of it
