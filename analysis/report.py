"""The one analysis command: plots, the CSV behind each plot, and ``report.md`` for one or more runs.

    python -m analysis.report RUN_DIR [RUN_DIR ...] --out DIR [--budgets 64,128 | --budgets mrt] [--all-steps]
        [--likelihood-scale auto|log|prob]

A RUN_DIR is a folder written by metarl-train / metarl-score / metarl-eval (``metrics.jsonl``,
trace JSONL, ``eval/results.jsonl``, ``config.yaml``) or one JSONL file. Runs whose config has the
same ``name`` (or ``recipe``) are seeds of one configuration and are pooled. Missing inputs are
skipped with a note in the report; malformed JSONL lines are listed with file and line number.

A handful of curated plots (accuracy and the objective with its terms, tokens and episodes per trace,
the health monitors that tripped, information-gain curves, regret, compute–accuracy with >= 2 budgets,
calibration); every logged metric stays in ``metrics_all.csv`` (one row per run and step).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from analysis.calibration import calibration_section
from analysis.compute_accuracy import compute_accuracy_section
from analysis.compute_optimal import compute_optimal_section
from analysis.health import health_section
from analysis.info_gain import AXES, LIKELIHOOD_SCALES, MAX_TRACE_LINES, information_gain_section
from analysis.plots import Section
from metarl.analysis.io import RunData, load_run
from analysis.regret import MRT_BUDGETS, regret_section
from analysis.training import heldout_section, training_section


def parse_budgets(text: str | None) -> list[float] | None:
    """``"64,128"`` -> [64.0, 128.0]; ``"mrt"`` -> MRT's 4096..16384; None/"" -> None (from data)."""
    if not text:
        return None
    if text.strip().lower() == "mrt":
        return [float(b) for b in MRT_BUDGETS]
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--budgets must be comma-separated numbers like 64,128 (or 'mrt'), got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"--budgets must be positive numbers, got {text!r}")
    return sorted(set(vals))


def render(runs: list[RunData], sections: list[Section]) -> str:
    """The markdown of ``report.md``."""
    lines = ["# metarl report", "", "## Runs", "", "| run | seed | path | metrics rows | traces | eval rows |", "|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r.label} | {'' if r.seed is None else r.seed} | `{r.path}` | {len(r.metrics)} | {len(r.traces)} | {len(r.eval_results)} |")
    notes = [n for r in runs for n in r.notes]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    for s in sections:
        lines += ["", f"## {s.title}", ""]
        for caption, png, csv in s.figures:
            lines += [f"**{caption}** ([data]({csv}))", "", f"![{caption}]({png})", ""]
        if s.markdown:
            lines += [s.markdown, ""]
        if s.notes:
            lines += ["Notes:", ""] + [f"- {n}" for n in s.notes]
    problems = [p for r in runs for p in r.problems]
    lines += ["", "## Input problems", ""]
    lines += [f"- {p}" for p in problems] if problems else ["None: every input line parsed."]
    return "\n".join(lines).rstrip() + "\n"


def build_report(
    run_paths: Sequence[str | Path], out_dir: str | Path, budgets: Sequence[float] | None = None, max_trace_lines: int = MAX_TRACE_LINES,
    axis: str = "metarl", all_steps: bool = False, likelihood_scale: str = "auto",
) -> Path:
    """Read the runs, write every plot + CSV and ``report.md`` under ``out_dir``; return report.md's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [load_run(p) for p in run_paths]
    found = [r for r in runs if r.path.exists()]
    ig_section, curves = information_gain_section(found, out, max_trace_lines, axis, all_steps, likelihood_scale)
    sections = [
        training_section(found, out),
        heldout_section(found, out),
        health_section(found, out),
        ig_section,
        calibration_section(found, out),
        regret_section(curves, out, budgets),
        compute_accuracy_section(found, out),
        compute_optimal_section(found, out),
    ]
    path = out / "report.md"
    path.write_text(render(runs, sections), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run directories (or JSONL files) to analyse and compare")
    ap.add_argument("--out", required=True, help="output folder for PNG, CSV and report.md")
    ap.add_argument("--budgets", type=parse_budgets, default=None, help="budgets C0 for regret, e.g. 64,128 or 'mrt' (4096,...,16384); default: from the data")
    ap.add_argument("--max-trace-lines", type=int, default=MAX_TRACE_LINES, help="single-trace lines drawn per information-gain panel")
    ap.add_argument("--axis", choices=AXES, default="metarl",
                    help="x axis of information-gain curves and regret: metarl (thinking tokens, curve from (0, J_init)) "
                         "or mrt (MRT's regret notebook: context tokens + forced-answer tokens/16, curve from (0, 0))")
    ap.add_argument("--all-steps", action="store_true",
                    help="information-gain curves from the traces of every logged step of a rollouts.jsonl "
                         "(default: its last step, the trained policy; scored files always give every trace)")
    ap.add_argument("--likelihood-scale", choices=LIKELIHOOD_SCALES, default="auto",
                    help="likelihood progress curves as log p(a* | prefix) (log) or as exp(log p) (prob); "
                         "auto: the scale of the run's likelihood_progress reward")
    args = ap.parse_args(argv)
    path = build_report(args.runs, args.out, args.budgets, args.max_trace_lines, args.axis, args.all_steps,
                        args.likelihood_scale)
    problems = path.read_text(encoding="utf-8").split("## Input problems", 1)[1].strip()
    print(f"wrote {path}")
    if not problems.startswith("None"):
        print("input problems (see report.md):\n" + problems, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
