"""The EMA ablation without a second run: a run trained with ``--ema`` publishes the averaged weights, and its
``checkpoint.pt`` keeps its own; this writes the own weights as a policy directory to evaluate beside it.
(The average never feeds back into training, so these are exactly the weights of the same run without --ema.)

    python benchmarks/own_weights.py --run runs/zwjh-6000 --out runs/zwjh-6000-own
    reasonact eval --checkpoint runs/zwjh-6000-own --suite mt10 --episodes-per-task 50 --out runs/evals/zwjh-6000-own-50
"""

from __future__ import annotations

import argparse


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a run directory written by `reasonact train --ema ...`")
    p.add_argument("--out", required=True, help="new policy directory for the run's own weights")
    a = p.parse_args()
    from reasonact.checkpoint import export_own_weights

    print(f"wrote {export_own_weights(a.run, a.out)}")


if __name__ == "__main__":
    main()
