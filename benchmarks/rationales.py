"""Does the policy write its teacher's rationale? For frames spread over each task's episodes of an annotated
dataset, the rationale a `--reasoning think` model decodes on its own, against the one the teacher wrote for
that frame: the character-level similarity (difflib's ratio, 1 = the same text) and, field by field
("Observation: ...", "Situation: ...", "Spatial reasoning: ...", "Plan: ..."), the share of frames whose field
is written exactly as the teacher's. Several `--diffusion-steps` show whether more rounds write it better.

    python benchmarks/rationales.py --checkpoint runs/refine --data data/mt10-zwj-h --diffusion-steps 12 48
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from attention_focus import task_frames  # noqa: E402
from common import report  # noqa: E402

from reasonact.reasoning.rationale import SECTIONS as FIELDS  # noqa: E402


def fields(text: str) -> dict[str, str]:
    """'Observation: a. Situation: b. ...' -> {'Observation': 'a', ...}. Unlike `parse_rationale`, which rejects
    a text without all four sections, this keeps what a garbled written rationale does have (missing fields are
    left out, a repeated one counts once)."""
    marks = [(m.start(), m.end(), m.group(1)) for m in re.finditer(r"(%s):" % "|".join(FIELDS), text)]
    out = {}
    for k, (_, end, name) in enumerate(marks):
        stop = marks[k + 1][0] if k + 1 < len(marks) else len(text)
        out.setdefault(name, text[end:stop].strip().rstrip(".").strip())
    return out


def compare(written: str, teacher: str) -> dict[str, float]:
    """Similarity of a written rationale to the teacher's, and per field 1.0 where it is written exactly."""
    mine, theirs = fields(written), fields(teacher)
    row = {"similarity": difflib.SequenceMatcher(None, written, teacher).ratio()}
    for f in FIELDS:
        if f in theirs:
            row[f] = float(mine.get(f) == theirs[f])
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", nargs="+", required=True, help="runs trained with --reasoning think")
    ap.add_argument("--data", required=True, help="a dataset annotated with rationales (reasonact annotate)")
    ap.add_argument("--diffusion-steps", type=int, nargs="+", default=[None],
                    help="diffusion rounds per block (default: the checkpoint's own)")
    ap.add_argument("--frames-per-task", type=int, default=10)
    ap.add_argument("--tasks", default=None, help="comma-separated task names (default: all of the dataset's)")
    ap.add_argument("--name", default="rationales", help="benchmarks/results/<name>.json")
    args = ap.parse_args()

    from reasonact.data import load_dataset
    from reasonact.policy import load_policy

    ds = load_dataset(args.data)
    teacher = ds.rationales()
    if teacher is None:
        raise SystemExit(f"{args.data} has no rationales; run `reasonact annotate --data {args.data}` first")
    names = args.tasks.split(",") if args.tasks else list(ds.task_names)
    unknown = sorted(set(names) - set(ds.task_names))
    if unknown:
        raise SystemExit(f"{args.data} has no task {', '.join(unknown)}; it has {', '.join(ds.task_names)}")
    rows, examples = [], []
    for ckpt in args.checkpoint:
        policy = load_policy(ckpt, "cpu")
        if policy.config.sequence.reasoning != "think":
            raise SystemExit(f"{ckpt} writes no rationale (reasoning {policy.config.sequence.reasoning!r}); "
                             "train it with --reasoning think")
        for steps in args.diffusion_steps:
            scores = []
            for name in names:
                for i in task_frames(ds, list(ds.task_names).index(name), args.frames_per_task):
                    if teacher[i] is None:
                        continue
                    written = policy.predict(ds[int(i)], diffusion_steps=steps).rationale
                    scores.append(compare(written, teacher[i]))
                    if len(scores) == 1:
                        examples.append(dict(checkpoint=ckpt, diffusion_steps=steps, frame=int(i),
                                             teacher=teacher[i], written=written))
            row = dict(checkpoint=ckpt, diffusion_steps=steps or policy.info.default_diffusion_steps,
                       frames=len(scores))
            for key in ("similarity", *FIELDS):
                vals = [s[key] for s in scores if key in s]
                row[key] = float(np.mean(vals)) if vals else None
            rows.append(row)
    for e in examples:
        print(f"\n{e['checkpoint']} (T = {e['diffusion_steps']}), frame {e['frame']}\n  teacher: {e['teacher']}\n"
              f"  written: {e['written']}")
    print()
    report(args.name, rows, ["checkpoint", "diffusion_steps", "frames", "similarity", *FIELDS],
           extra=dict(data=args.data, tasks=names, frames_per_task=args.frames_per_task, examples=examples))


if __name__ == "__main__":
    main()
