"""Bad command-line input: one line on stderr saying what is wrong, exit code 2, nothing left behind."""

import shutil
import socket

import pytest

import reasonact
from reasonact.cli import main


@pytest.fixture(scope="module")
def run(fake_data, tmp_path_factory):
    return reasonact.train(fake_data, tmp_path_factory.mktemp("runs") / "cli", config="debug", steps=2, batch_size=4,
                           progress=False, precision="fp32")


@pytest.fixture(scope="module")
def damaged(fake_data, run, tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged")
    out = {}
    for name in ("info", "stats"):
        data = root / f"bad-{name}"
        shutil.copytree(fake_data, data)
        (data / "meta" / f"{name}.json").write_text('{"total_episodes": 6,')
        out[name] = data
    weights = root / "bad-weights"
    shutil.copytree(run, weights)
    (weights / "model.safetensors").write_bytes(b"\x00" * 100)
    out["weights"] = weights
    (root / "a-file").write_text("not a directory")
    out["file"] = root / "a-file"
    return out


def _busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def test_every_bad_input_gives_one_line_and_exit_code_2(fake_data, run, damaged, tmp_path, capsys):
    busy = _busy_port()
    port = str(busy.getsockname()[1])
    new = str(tmp_path / "new")  # must not exist after any case
    data, ckpt = str(fake_data), str(run)
    cases = [
        (["serve", "--checkpoint", ckpt, "--port", "-1"], "not a port"),
        (["serve", "--checkpoint", ckpt, "--port", "70000"], "not a port"),
        (["serve", "--checkpoint", ckpt, "--port", "http"], "not a port"),
        (["serve", "--checkpoint", ckpt, "--port", port], "cannot listen on 127.0.0.1:" + port),
        (["serve", "--checkpoint", ckpt, "--host", "no-such-host.invalid", "--port", "0"], "cannot listen"),
        (["serve", "--checkpoint", str(damaged["weights"])], "cannot be read as safetensors"),
        (["serve", "--checkpoint", ckpt, "--device", "tpu9"], "unknown --device 'tpu9'"),
        (["serve", "--checkpoint", new], "reasonact train"),
        (["show", "--data", data, "--episode", "-1", "--out", new + ".png"], "out of range"),
        (["show", "--data", data, "--episode", "99", "--out", new + ".png"], "numbered 0 to 5"),
        (["show", "--data", data, "--out", new + ".txt"], ".png"),
        (["train", "--data", data, "--out", new, "--config", "debug", "--save-every", "0"], "--save-every"),
        (["train", "--data", data, "--out", new, "--config", "debug", "--steps", "0"], "--steps must be at least 1"),
        (["train", "--data", data, "--out", new, "--config", "debug", "--lr", "-1"], "--lr must be positive"),
        (["train", "--data", data, "--out", new, "--config", "debug", "--save-minutes", "-1"], "--save-minutes"),
        (["train", "--data", data, "--out", new, "--device", "tpu9"], "unknown --device"),
        (["train", "--data", data, "--out", new, "--steps", "many"], "invalid int value"),
        (["train", "--data", str(damaged["info"]), "--out", new], "info.json is not valid JSON"),
        (["train", "--data", str(damaged["stats"]), "--out", new], "stats.json is not valid JSON"),
        (["train", "--data", new, "--out", new + "-run"], "new"),
        (["eval", "--checkpoint", ckpt, "--out", new, "--max-steps", "-5"], "--max-steps must be at least 1"),
        (["eval", "--checkpoint", ckpt, "--out", new, "--perturb", "camera=9"], "camera' must be from 0 to 0.5"),
        (["eval", "--checkpoint", ckpt, "--out", new, "--episodes-per-task", "0"], "--episodes-per-task"),
        (["eval", "--checkpoint", ckpt, "--out", new, "--diffusion-steps", "0"], "--diffusion-steps"),
        (["eval", "--checkpoint", ckpt, "--out", new, "--device", "tpu9"], "unknown --device"),
        (["eval", "--checkpoint", str(damaged["weights"]), "--out", new], "cannot be read as safetensors"),
        (["collect", "--out", str(damaged["file"]), "--tasks", "reach-v3", "--episodes-per-task", "1"], "is a file"),
        (["collect", "--out", new, "--tasks", "fly-v3"], "fly-v3"),
        (["collect", "--out", new, "--resolution", "-3"], "resolution"),
        (["console", "--checkpoint", ckpt, "--task", "reach-v3", "--port", "99999"], "not a port"),
        (["console", "--checkpoint", ckpt, "--task", "reach-v3", "--diffusion-steps", "0"], "--diffusion-steps"),
        (["console", "--checkpoint", ckpt, "--task", "reach-v3", "--correct", "-0.1"], "--correct"),
        (["annotate", "--data", data, "--teacher", "openai"], "--model"),
        (["train-depth-vae", "--data", str(damaged["info"]), "--out", new], "info.json is not valid JSON"),
        (["dance"], "invalid choice"),
    ]
    try:
        for argv, expected in cases:
            capsys.readouterr()
            try:
                code = main(argv)
            except SystemExit as e:  # argparse's usage errors
                code = e.code
            err = capsys.readouterr().err
            lines = [line for line in err.splitlines() if line.strip()]
            assert code == 2, (argv, code, err)
            assert len(lines) == 1 and expected in lines[0], (argv, err)
            assert "Traceback" not in err
            assert not any(p.name.startswith("new") for p in tmp_path.iterdir()), (argv, sorted(tmp_path.iterdir()))
    finally:
        busy.close()
    assert not (fake_data / "meta" / "rationales.json").exists()
