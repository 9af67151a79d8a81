"""Training speed when the machine is shared: the tiny model's training step alone and beside one process
that keeps a core busy, with 2 threads or 1, and with OpenMP's wait policy active (the default) or passive.

    python benchmarks/contention.py [--config tiny] [--iters 15]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import report  # noqa: E402

STEP = r"""
import sys, time, torch
from reasonact.model.arm import ActionReasoningModel
from reasonact.model.config import Config, SequenceConfig, model_config
from reasonact.tokenizers import Vocab
torch.set_num_threads(int(sys.argv[2]))
vocab, seq, m = Vocab(text=512), SequenceConfig(reasoning="act"), model_config(sys.argv[1])
torch.manual_seed(0)
model = ActionReasoningModel(Config(m, seq), vocab)
opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
B, g = 64, torch.Generator().manual_seed(0)
img, instr, state = torch.rand(B, 3, m.image_size, m.image_size), torch.full((B, 16), vocab.pad), torch.randn(B, 7)
targets = {"act": torch.randint(*vocab.block_range("act"), (B, seq.block_length("act")), generator=g)}
def step():
    loss, _ = model(img, instr, state, targets, None, None)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
for _ in range(3): step()
t0 = time.perf_counter()
for _ in range(int(sys.argv[3])): step()
print(int(sys.argv[3]) * B / (time.perf_counter() - t0))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tiny", help="model preset")
    ap.add_argument("--iters", type=int, default=15, help="timed training steps per row")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    rows = []
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            for threads, policy in ((2, "ACTIVE"), (2, "PASSIVE"), (1, "ACTIVE")):
                env = {**os.environ, "OMP_WAIT_POLICY": policy}
                out = subprocess.run([sys.executable, "-c", STEP, a.config, str(threads), str(a.iters)], env=env,
                                     capture_output=True, text=True, check=True).stdout
                rows.append({"other_core_busy": busy, "threads": threads, "omp_wait_policy": policy,
                             "samples_per_s": float(out.strip().splitlines()[-1])})
                print(rows[-1])
        finally:
            if hog is not None:
                hog.kill()
    report(f"contention_{a.config}", rows, ["other_core_busy", "threads", "omp_wait_policy", "samples_per_s"], out=a.out)


if __name__ == "__main__":
    main()
