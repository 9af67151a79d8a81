"""Compare evaluation reports side by side as a markdown table (per-task success, mean, latency, passes).

    python benchmarks/compare.py evals/diffusion-act evals/ar-act [--names a,b] [--json out.json]

With ``--merge OUT``, the reports are parts of one evaluation (the same policy and settings, each part its own
``--seed-base``): OUT gets their merged report.json, report.md and success.png.

    python benchmarks/compare.py evals/ls-0 evals/ls-10 evals/ls-20 --merge evals/ls
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(report_dir: Path) -> dict:
    from reasonact.checkpoint import read_summary

    path = report_dir / "report.json"
    if not path.exists() and (report_dir / "eval-report.json").exists():  # a shipped checkpoint's own report
        path = report_dir / "eval-report.json"
    if not path.exists():
        partial = report_dir / "episodes.partial.jsonl"
        hint = (f"; its evaluation is not finished ({partial} holds {len(partial.read_text().splitlines()) - 1} "
                "episodes): run the same `reasonact eval` command again to finish it") if partial.exists() else ""
        raise SystemExit(f"no report.json in {report_dir}{hint}")
    r = json.loads(path.read_text())
    r["_train"] = read_summary(r["checkpoint"])
    r.setdefault("diffusion_steps", r.get("steps"))  # reports written before the key was renamed
    return r


def table(reports: list[dict], names: list[str]) -> str:
    tasks = list(dict.fromkeys(t for r in reports for t in r["tasks"]))
    lines = ["| | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for t in tasks:
        cells = []
        for r in reports:
            v = r["tasks"].get(t)
            cells.append(f"{v['success_rate']:.0%} ({v['successes']}/{v['episodes']})" if v else "")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    lines.append("| **mean success** | " + " | ".join(f"**{r['success_rate']:.1%}**" for r in reports) + " |")
    lines.append("| decoder | " + " | ".join(r["decoder"] + (f", T={r['diffusion_steps']}" if r["diffusion_steps"] else "")
                                          for r in reports) + " |")
    lines.append("| reasoning | " + " | ".join(r.get("reasoning", "") for r in reports) + " |")
    lines.append("| instructions | " + " | ".join(r.get("instructions", "canonical") for r in reports) + " |")
    lines.append("| forward passes per chunk | " + " | ".join(f"{r['nfe_per_chunk']:.0f}" for r in reports) + " |")
    lines.append("| latency per chunk (ms) | " + " | ".join(
        f"{r['latency_ms_per_chunk']:.0f} (batch {r['mean_batch']:.1f})" for r in reports) + " |")
    lines.append("| training steps | " + " | ".join(str(r["_train"].get("steps", "")) for r in reports) + " |")
    lines.append("| training time (min) | " + " | ".join(
        f"{r['_train']['train_seconds'] / 60:.0f}" if r["_train"].get("train_seconds") else "" for r in reports) + " |")
    lines.append("| evaluation time (min) | " + " | ".join(f"{r['seconds'] / 60:.0f}" for r in reports) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("reports", nargs="+", help="evaluation output directories (holding report.json) "
                                                    "or shipped checkpoints (eval-report.json)")
    ap.add_argument("--names", default=None, help="column names, comma-separated (default: directory names)")
    ap.add_argument("--json", default=None, help="also write the reports' key numbers as JSON")
    ap.add_argument("--merge", default=None, metavar="OUT",
                    help="merge the reports, parts of one evaluation, into one written to OUT")
    a = ap.parse_args()
    dirs = [Path(p) for p in a.reports]
    reports = [load(d) for d in dirs]
    if a.merge:
        from reasonact.evaluation.report import merge_reports, write_report

        try:
            merged = merge_reports([{k: v for k, v in r.items() if k != "_train"} for r in reports])
        except ValueError as e:
            raise SystemExit(str(e)) from None
        Path(a.merge).mkdir(parents=True, exist_ok=True)
        write_report(merged, Path(a.merge))
        print(f"merged {sum(len(r['episodes']) for r in reports)} episodes into {a.merge}/report.json")
        reports, dirs = [load(Path(a.merge))], [Path(a.merge)]
    names = a.names.split(",") if a.names else [d.name for d in dirs]
    print(table(reports, names))
    if a.json:
        keep = ("success_rate", "latency_ms_per_chunk", "nfe_per_chunk", "decoder", "diffusion_steps", "reasoning")
        out = {n: {**{k: r.get(k) for k in keep}, "tasks": {t: v["success_rate"] for t, v in r["tasks"].items()}}
               for n, r in zip(names, reports)}
        Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
