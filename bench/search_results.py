"""Step-level search and compute-optimal selection on the built-in task (issue 15): ``docs/results_search.md``.

    python bench/search_results.py --out runs/search            # the numbers (est. 10-15 min, 2 CPU cores)
    python bench/search_results.py --out runs/search-quick --quick   # smoke check (random policy, ~1 min)
    python bench/search_results.py --out runs/search --page-only     # rewrite the page from an earlier run

One ``metarl-eval`` run (a subprocess; its exact command is on the page) of the tiny policy on held-out
problems of the built-in subset-sum task: parallel sampling (pass@1, pass@8, majority, weighted best-of-N
with Best-of-k rows) and the step-level searches (beam search with M = 4 and 2, lookahead k = 1, DVTS with
M = 4 and 2, all scored by the policy's own verification; beam search scored by μ's Monte Carlo J as an
oracle bound), at two budgets, N = n = 8, then ``analysis.report`` on it. The page holds accuracy per
strategy and budget with 95% bootstrap intervals over questions and the generated tokens per question,
the compute-optimal choices per difficulty bin (selection split → evaluation split, against best-of-N at
matched tokens) for oracle and predicted difficulty, the plots with their CSVs, the command, the machine
and the wall time. The page is a section ``docs/results.md`` can include.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
NAME = "search_bench"
STRATEGIES = "[pass_at_k,majority,weighted_best_of_n,beam_search,lookahead,dvts]"  # files of conf/strategies/
MORE_STRATEGIES = (  # second configurations of the searches, each under its own name (taking the search section)
    "+strategies.beam_m2={_target_:metarl.eval.search.BeamSearch,beam_width:2,name:beam_m2}",
    "+strategies.dvts_m2={_target_:metarl.eval.search.DVTS,beam_width:2,name:dvts_m2}",
    ("+strategies.beam_mc={_target_:metarl.eval.search.BeamSearch,name:beam_mc,"
     "scorer:{_target_:metarl.eval.step_scorers.MCValue,m:4}}"),
)


def eval_command(out: Path, quick: bool, questions: int, budgets: Sequence[int]) -> list[str]:
    """The ``metarl-eval`` command of the benchmark."""
    model = "random-tiny" if quick else "tiny"
    return [sys.executable, "-m", "metarl.cli.eval", f"model={model}", f"name={NAME}",
            f"n_questions={questions}", f"budgets=[{','.join(map(str, budgets))}]", "n=8", "seed=0",
            "temperature=0.7", f"strategies={STRATEGIES}", *MORE_STRATEGIES, "pass_at_k.k=[1,8]", "best_of_n.ks=[1,2,4]",
            "search.beam_width=4", "search.lookahead=1", "search.step_tokens=48", "threads=1",
            f"run_dir={out / 'eval_run'}", "overwrite=true"]


def machine() -> dict[str, Any]:
    import torch
    import transformers

    from metarl.utils import cpu_model

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__}


def run_benchmark(out: Path, quick: bool, questions: int, budgets: Sequence[int]) -> dict[str, Any]:
    """Run metarl-eval and analysis.report; write ``out/bench.json`` (command, machine, wall time)."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = eval_command(out, quick, questions, budgets)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    (out / "eval.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        raise SystemExit(f"metarl-eval failed (exit {proc.returncode}); see {out / 'eval.log'}:\n{proc.stderr[-2000:]}")
    report = [sys.executable, "-m", "analysis.report", str(out / "eval_run"), "--out", str(out / "report")]
    subprocess.run(report, cwd=REPO, env=env, check=True, capture_output=True, text=True)
    shown = ["python" if c == sys.executable else c for c in cmd]
    info = {"command": " ".join(f"'{c}'" if any(ch in c for ch in "[]{},") else c for c in shown),
            "report_command": f"python -m analysis.report {out / 'eval_run'} --out {out / 'report'}",
            "machine": machine(), "wall_s": round(wall, 1), "quick": quick, "questions": questions,
            "budgets": list(budgets), "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    (out / "bench.json").write_text(json.dumps(info, indent=1))
    return info


# --------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------


def _iv(m: Any, lo: Any, hi: Any) -> str:
    f = [float(v) if v not in (None, "") else math.nan for v in (m, lo, hi)]
    f = [0.0 if abs(v) < 5e-7 else v for v in f]  # no "-0.000" from rounding of equal accuracies
    if not math.isfinite(f[0]):
        return "-"
    return f"{f[0]:.3f} [{f[1]:.3f}, {f[2]:.3f}]" if math.isfinite(f[1]) and math.isfinite(f[2]) else f"{f[0]:.3f}"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def accuracy_table(run: Path) -> list[str]:
    """Strategy x budget, all questions: accuracy [95% CI], thinking tokens per path, generated tokens."""
    rows = list(csv.DictReader((run / "eval" / "summary.csv").open()))
    results = _jsonl(run / "eval" / "results.jsonl")
    oracle = {r["strategy"] for r in results if r.get("oracle")}
    budgets = sorted({int(r["budget"]) for r in rows})
    scorer: dict[tuple[str, int], list[float]] = {}
    for r in results:
        if "scorer_tokens" in r:
            scorer.setdefault((r["strategy"], int(r["budget"])), []).append(float(r["scorer_tokens"]))
    head = "| strategy | " + " | ".join(f"accuracy @ {b} | tokens/path | generated/question | scorer tokens/question"
                                       for b in budgets) + " |"
    lines = [head, "|---|" + "---|---|---|---|" * len(budgets)]
    cell = {(r["strategy"], int(r["budget"])): r for r in rows if r["difficulty_bin"] == "all"}
    for s in dict.fromkeys(r["strategy"] for r in rows):
        parts = []
        for b in budgets:
            r = cell.get((s, b))
            sc = scorer.get((s, b))
            parts.append("- | - | - | -" if r is None else f"{_iv(r['accuracy'], r['ci_low'], r['ci_high'])} | "
                         f"{float(r['mean_tokens']):.1f} | {float(r['mean_total_tokens']):.0f} | "
                         + (f"{sum(sc) / len(sc):.0f}" if sc else "0"))
        lines.append(f"| {s}{' (oracle)' if s in oracle else ''} | " + " | ".join(parts) + " |")
    return lines


def choice_tables(run: Path) -> list[str]:
    """Per difficulty source: every compute T for bin ``all``; for each bin the largest T."""
    recs = [r for r in _jsonl(run / "eval" / "compute_optimal.jsonl") if r["kind"] == "choice"]
    lines: list[str] = []
    for source in sorted({r["difficulty"] for r in recs}):
        mine = [r for r in recs if r["difficulty"] == source]
        for title, pick in (("all questions, every compute budget", [r for r in mine if r["bin"] == "all"]),
                            ("per bin, the largest compute budget", _largest_per_bin(mine))):
            lines += ["", f"**{source} difficulty — {title}**", "",
                      "| bin | compute T | chosen (selection acc.) | accuracy (evaluation) | tokens | best-of-N at "
                      "≤ T | its accuracy | its tokens | difference |", "|---|---|---|---|---|---|---|---|---|"]
            for r in pick:
                base = (f"{r['baseline_strategy']} @ {r['baseline_budget']} | "
                        f"{_iv(r['baseline_accuracy'], r['baseline_ci_low'], r['baseline_ci_high'])} | "
                        f"{r['baseline_tokens']:.0f} | "
                        f"{_iv(r['difference'], r['difference_ci_low'], r['difference_ci_high'])}"
                        if r.get("baseline_strategy") else "- | - | - | -")
                lines.append(f"| {r['bin']} | {r['compute']:.0f} | {r['strategy']} @ {r['budget']} "
                             f"({r['selection_accuracy']:.2f}, {r['n_selection']} q) | "
                             f"{_iv(r['accuracy'], r['ci_low'], r['ci_high'])} ({r['n_evaluation']} q) | "
                             f"{r['tokens']:.0f} | {base} |")
    return lines


def _largest_per_bin(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    best: dict[Any, dict[str, Any]] = {}
    for r in recs:
        if r["bin"] not in best or r["compute"] > best[r["bin"]]["compute"]:
            best[r["bin"]] = r
    return [best[b] for b in sorted(best, key=lambda b: (0, 0) if b == "all" else (1, int(b)))]


def reading(run: Path) -> list[str]:
    """Statements the intervals support, generated from the numbers."""
    recs = [r for r in _jsonl(run / "eval" / "compute_optimal.jsonl") if r["kind"] == "choice"
            and r.get("baseline_strategy")]
    out = []
    for source in sorted({r["difficulty"] for r in recs}):
        mine = [r for r in recs if r["difficulty"] == source]
        above = [r for r in mine if r["difference_ci_low"] is not None and r["difference_ci_low"] > 0]
        below = [r for r in mine if r["difference_ci_high"] is not None and r["difference_ci_high"] < 0]
        out.append(f"- {source} difficulty: of {len(mine)} (bin, compute) cells, the compute-optimal choice beats "
                   f"best-of-N at matched tokens with a 95% interval above 0 in {len(above)}, falls below it with an "
                   f"interval below 0 in {len(below)}, and is indistinguishable in the other {len(mine) - len(above) - len(below)}.")
    results = _jsonl(run / "eval" / "results.jsonl")
    faults = sum(int(r.get("scorer_faults", 0)) for r in results)
    out.append(f"- step-scorer faults over all searches: {faults}.")
    return out


def render(out: Path, docs: Path) -> Path:
    """``docs/results_search.md`` (+ figures and CSVs under ``docs/results/``) from a benchmark directory."""
    info = json.loads((out / "bench.json").read_text())
    run, report = out / "eval_run", out / "report"
    fig_dir = docs / "results"
    fig_dir.mkdir(parents=True, exist_ok=True)
    figures = []
    for source in ("oracle", "predicted"):
        stem = f"compute_optimal_{NAME}_{source}"
        if (report / f"{stem}.png").exists():
            for ext in ("png", "csv"):
                shutil.copy(report / f"{stem}.{ext}", fig_dir / f"search_{source}.{ext}")
            figures.append(source)
    meta = json.loads((run / "eval" / "meta.json").read_text())
    m = info["machine"]
    lines = ["## Step-level search and compute-optimal selection", "",
             "Generated by `bench/search_results.py`; do not edit by hand.", "",
             "### How it was produced", "", "```", info["command"], info["report_command"],
             f"python bench/search_results.py --out {out} --page-only", "```", "",
             f"- policy `model={'random-tiny' if info['quick'] else 'tiny'}`, {meta['questions']} held-out problems "
             f"of the built-in subset-sum task, budgets {meta['budgets']} (each bounds every sample's / path's "
             "thinking tokens), n = N = 8, temperature 0.7, seed 0; steps = episodes (`</attempt>`, `</verify>`, "
             "`</revise>`), at most 48 tokens each; search scorer `self_verify` (the policy's verdict; a step that "
             "is not a verification is verified by the policy, greedily), `beam_mc` scored by μ's Monte Carlo J "
             "(m = 4 forced answers; it reads the gold answer: an oracle bound, never selected)",
             f"- machine: {m['platform']}, {m['processor']}, {m['cpu_count']} CPUs (shared with other jobs: "
             f"timings are contended); Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}; "
             f"metarl-eval wall time {info['wall_s'] / 60:.1f} min, finished {info['finished']}",
             "- intervals: 95% percentile bootstrap over questions; *generated/question* counts every token the "
             "policy generated for a question (n × tokens for sampling; every branch, pruned or kept, and every "
             "lookahead rollout for a search); *scorer tokens/question* are the tokens a search's step scorer "
             "generated itself (the policy's verification probes; μ's forced answers for `beam_mc`); the compute T "
             "of the selection below is generated + scorer tokens (`compute_optimal.scorer_tokens=true`); best-of-N's "
             "`self_verify` reads verdicts already in its samples (0). Forced answers at the budget are in "
             "`eval/results.jsonl` (`answer_tokens`) and counted for no strategy", "",
             "### Accuracy per strategy and budget (all questions)", "", *accuracy_table(run), "",
             "### Compute-optimal selection", "",
             "Questions are split in two halves by a hash of their id; per difficulty bin and compute budget T "
             "(generated + scorer tokens per question), the configuration (strategy, hyper-parameters, budget) with the best "
             "accuracy among those costing at most T on the selection half is reported on the evaluation half, "
             "against best-of-N (weighted, Best-of-k rows included) with the most tokens ≤ T; the difference is "
             "paired over the evaluation questions. Oracle difficulty: quantile bins of pass@1 of 8 samples at the "
             "largest budget; predicted difficulty: bins of the mean self-verification score of those samples (no "
             "ground truth).", *choice_tables(run), "", "### Reading", "", *reading(run), ""]
    for source in figures:
        lines += [f"**Accuracy vs generated tokens per {source} difficulty bin** "
                  f"(data: [search_{source}.csv](results/search_{source}.csv))", "",
                  f"![{source} difficulty bins](results/search_{source}.png)", ""]
    path = docs / "results_search.md"
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory (eval run, report, bench.json)")
    ap.add_argument("--quick", action="store_true", help="random tiny policy, 12 questions, budgets 48,64")
    ap.add_argument("--questions", type=int, default=100, help="held-out problems (default 100)")
    ap.add_argument("--budgets", default="64,128", help="comma-separated budgets (default 64,128)")
    ap.add_argument("--docs", default=str(REPO / "docs"), help="where results_search.md goes (default docs/)")
    ap.add_argument("--page-only", action="store_true", help="rewrite the page from an earlier --out")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not args.page_only:
        questions, budgets = (12, [48, 64]) if args.quick else (args.questions, [int(b) for b in args.budgets.split(",")])
        run_benchmark(out, args.quick, questions, budgets)
    path = render(out, Path(args.docs))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
