"""Step-level search and compute-optimal selection on the built-in task (issue 15): ``docs/results_search.md``.

    python bench/search_results.py --out runs/search500 --questions-file docs/results/search_questions.jsonl
                                                  # the page's numbers: 546 questions (est. 35-45 min, one core)
    python bench/search_results.py --out runs/search            # 100 problems of difficulty 2 (est. 6-8 min)
    python bench/search_results.py --out runs/search-quick --quick   # smoke check (random policy, ~1 min)
    python bench/search_results.py --out runs/search --page-only     # rewrite the page from an earlier run

One ``metarl-eval`` run (a subprocess; its exact command is on the page) of the tiny policy on held-out
problems of the built-in subset-sum task (``--questions-file``: all 546 held-out one-digit two-term problems
with 3-8 numbers, since difficulty 2 alone has only 114): parallel sampling (pass@1, pass@8, majority,
weighted best-of-N with Best-of-k rows), sequential revisions, and the step-level searches (beam search
with M = 4 and 2, lookahead k = 1, DVTS with M = 4 and 2, all scored by the policy's own verification; beam
search scored by μ's Monte Carlo J as an oracle bound), at two budgets, N = n = 8, then ``analysis.report``
on it. The page holds accuracy per strategy and budget with 95% bootstrap intervals over questions and the
generated tokens per question, the compute-optimal choices per difficulty bin (selection split → evaluation
split, against best-of-N at matched tokens) for oracle and predicted difficulty with Snell et al.'s efficiency
ratio (best-of-N's tokens for the choice's accuracy over the choice's tokens, bootstrapped over evaluation
questions), the plots with their CSVs, the command, the machine and the wall time. The page is a section ``docs/results.md`` can include.
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
STRATEGIES = "[pass_at_k,majority,weighted_best_of_n,revisions,beam_search,lookahead,dvts]"  # files of conf/strategies/
MORE_STRATEGIES = (  # second configurations of the searches, each under its own name (taking the search section)
    "+strategies.beam_m2={_target_:metarl.eval.search.BeamSearch,beam_width:2,name:beam_m2}",
    "+strategies.dvts_m2={_target_:metarl.eval.search.DVTS,beam_width:2,name:dvts_m2}",
    ("+strategies.beam_mc={_target_:metarl.eval.search.BeamSearch,name:beam_mc,"
     "scorer:{_target_:metarl.eval.step_scorers.MCValue,m:4}}"),
)


#: The held-out pool of ``--questions-file``: every test-split problem of the built-in task's arithmetic (two
#: one-digit terms added, numbers from 1..9) with 3 to 8 listed numbers. Difficulties 1-3 of the task are the
#: 3-, 4- and 5-number levels (44, 114 and 183 held-out problems, all there are); the tiny policy is trained on
#: the 4-number level's train split. Difficulty 4 (two-digit numbers) is out of the tiny policy's reach.
POOL_NUMBERS = (3, 4, 5, 6, 7, 8)


def write_questions(path: Path, seed: int = 1) -> int:
    """Write the held-out pool (see ``POOL_NUMBERS``) as a JSONL file for ``metarl-eval data=``; return its size.

    The split is the task's own hash split (``test_fraction`` 0.2), so no problem of the tiny policy's training
    split is in it; ``seed`` is the eval's ``data_seed + 1``, as for the built-in test split."""
    from metarl.tasks import SubsetSumTask
    from metarl.tasks.subset_sum import Level

    rows = []
    for k in POOL_NUMBERS:
        task = SubsetSumTask(difficulty=Level(k, 9, 2, 2, "+"))
        for r in task.generate("test", n=10**6, seed=seed, allow_fewer=True):
            key = task.problem_key(r["numbers"], r["target"])
            rows.append({"id": f"subset_sum/n{k}/{key}", "prompt": r["prompt"], "answer": r["answer"],
                         "numbers": r["numbers"], "target": r["target"], "n_numbers": k})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return len(rows)


def eval_command(out: Path, quick: bool, questions: int, budgets: Sequence[int],
                 data: Path | None = None) -> list[str]:
    """The ``metarl-eval`` command of the benchmark (``data``: a questions JSONL instead of the test split)."""
    model = "random-tiny" if quick else "tiny"
    return [sys.executable, "-m", "metarl.cli.eval", f"model={model}", f"name={NAME}",
            f"data={data}" if data else f"n_questions={questions}", f"budgets=[{','.join(map(str, budgets))}]", "n=8", "seed=0",
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


def run_benchmark(out: Path, quick: bool, questions: int, budgets: Sequence[int],
                  data: Path | None = None) -> dict[str, Any]:
    """Run metarl-eval and analysis.report; write ``out/bench.json`` (command, machine, wall time)."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = eval_command(out, quick, questions, budgets, data)
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
    info = {"bench_command": " ".join(["python", *sys.argv]),
            "command": " ".join(f"'{c}'" if any(ch in c for ch in "[]{},") else c for c in shown),
            "report_command": f"python -m analysis.report {out / 'eval_run'} --out {out / 'report'}",
            "machine": machine(), "wall_s": round(wall, 1), "quick": quick, "questions": questions,
            "budgets": list(budgets), "data": str(data) if data else None, "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
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


def choice_tables(recs: list[dict[str, Any]]) -> list[str]:
    """Per difficulty source: every compute T for bin ``all``; for each bin the largest T."""
    recs = [r for r in recs if r["kind"] == "choice"]
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
    return [best[b] for b in sorted(best, key=_bin_order)]


def _bin_order(b: Any) -> tuple[int, int]:
    return (0, 0) if b == "all" else (1, int(b))


SEARCHES = ("beam", "lookahead", "dvts", "revisions")  # row-name prefixes of the non-sampling strategies
BEYOND = (1.5, 2.0)  # compute budgets past best-of-N's largest (multiples of it): where the searches fit


def _is_search(strategy: str) -> bool:
    return strategy.startswith(SEARCHES)


def _key(r: dict[str, Any]) -> tuple[str, str, float]:
    return r["difficulty"], str(r["bin"]), round(float(r["compute"]), 6)


def selection_records(run: Path, n_resamples: int = 2000) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The compute-optimal records and Snell et al.'s efficiency ratios
    (:func:`metarl.eval.selection.compute_optimal` / :func:`~metarl.eval.selection.efficiency_ratios`) from the
    run's rows and difficulty bins with the run's own compute-optimal settings, on best-of-N's grid plus
    ``BEYOND``; every choice metarl-eval wrote to compute_optimal.jsonl (best-of-N's grid) must come out equal."""
    import yaml

    from metarl.eval.selection import compute_optimal, efficiency_ratios

    ev = run / "eval"
    cfg = yaml.safe_load((ev / "config.yaml").read_text())
    co = cfg.get("compute_optimal") or {}
    bins: dict[str, dict[str, int]] = {}
    for source, name in (("oracle", "difficulty.json"), ("predicted", "difficulty_predicted.json")):
        if (ev / name).exists():
            bins[source] = {str(q["question_id"]): int(q["difficulty_bin"])
                            for q in json.loads((ev / name).read_text())["questions"]}
    rows = _jsonl(ev / "results.jsonl")
    opts = dict(seed=int(cfg.get("seed", 0)), baseline=str(co.get("baseline", "weighted_best_of_n")),
                compute=co.get("compute"), include_oracle=bool(co.get("include_oracle", False)),
                scorer_tokens=bool(co.get("scorer_tokens", True)), beyond=BEYOND)
    recs = compute_optimal(rows, bins, **opts)
    eff = efficiency_ratios(rows, bins, n_resamples=n_resamples, **opts)
    mine = {_key(r): (r["strategy"], r["budget"]) for r in recs if r["kind"] == "choice"}
    written = {_key(r): (r["strategy"], r["budget"]) for r in _jsonl(ev / "compute_optimal.jsonl")
               if r["kind"] == "choice"}
    bad = [k for k in written if mine.get(k) != written[k]]
    if bad or mine != {_key(r): (r["strategy"], r["budget"]) for r in eff}:
        raise SystemExit(f"compute-optimal choices differ from eval/compute_optimal.jsonl or each other: {bad[:4]}")
    return recs, eff


def _ratio(v: float, how: str = "") -> str:
    if not math.isfinite(v):
        return "not reached" if v > 0 else "-"
    return ("≤ " if how == "cheapest" else "") + f"{v:.2f}"


def _ratio_iv(r: dict[str, Any]) -> str:
    lo, hi = r["ratio_low"], r["ratio_high"]
    if isinstance(lo, float) and math.isnan(lo):
        return _ratio(r["ratio"], r["how"])
    return f"{_ratio(r['ratio'], r['how'])} [{_ratio(lo)}, {_ratio(hi)}]"


def _distinct(recs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """One entry per (source, bin, chosen configuration): R depends on the choice, not on T."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in sorted(recs, key=lambda r: (r["difficulty"], _bin_order(r["bin"]), r["compute"])):
        groups.setdefault((r["difficulty"], str(r["bin"]), r["strategy"], r["budget"]), []).append(r)
    return [(v[0], v) for v in groups.values()]


def efficiency_tables(recs: list[dict[str, Any]]) -> list[str]:
    """Per difficulty source: one row per (bin, chosen configuration) with the compute budgets T it is chosen
    at, the ratio and its interval."""
    lines: list[str] = []
    for source in sorted({r["difficulty"] for r in recs}):
        lines += ["", f"**{source} difficulty — efficiency ratio R = best-of-N tokens for acc(c\\*) / tokens of c\\***",
                  "", "| bin | chosen c\\* | at compute T | acc(c\\*), evaluation | tokens of c\\* | best-of-N tokens "
                  "for acc(c\\*) | R [95% CI] | resamples not reached |", "|---|---|---|---|---|---|---|---|"]
        for r, cells in _distinct([r for r in recs if r["difficulty"] == source]):
            need = r["baseline_tokens_needed"]
            need_s = (f"not reached (max {r['baseline_max_tokens']:.0f})" if not math.isfinite(need)
                      else ("≤ " if r["how"] == "cheapest" else "") + f"{need:.0f}")
            ts = ", ".join(f"{c['compute']:.0f}" + (f" ({c['grid_config']})" if str(c["grid_config"]).endswith("×")
                                                     else "") for c in cells)
            share = r["share_not_reached"]
            lines.append(f"| {r['bin']} | {r['strategy']} @ {r['budget']} | {ts} | {r['accuracy']:.3f} "
                         f"({r['n_evaluation']} q) | {r['tokens']:.0f} | {need_s} | {_ratio_iv(r)} | "
                         + (f"{100 * share:.0f}% |" if math.isfinite(share) else "- |"))
    return lines


def efficiency_reading(eff: list[dict[str, Any]], recs: list[dict[str, Any]]) -> list[str]:
    """The ratio's intervals counted over distinct choices; every choice of a search or revisions."""
    out = []
    diff = {_key(r): r for r in recs if r["kind"] == "choice"}
    for source in sorted({r["difficulty"] for r in eff}):
        groups = _distinct([r for r in eff if r["difficulty"] == source])
        firsts = [r for r, _ in groups]
        above = [r for r in firsts if r["ratio_low"] > 1 + 1e-6]
        below = [r for r in firsts if r["ratio_high"] < 1 - 1e-6]
        sampling = [r for r in firsts if not _is_search(r["strategy"]) and r["ratio_low"] > 1 + 1e-6]
        out.append(f"- {source} difficulty, efficiency ratio: {len(firsts)} distinct (bin, choice) pairs over "
                   f"{sum(len(c) for _, c in groups)} (bin, compute) cells; R's 95% interval lies above 1 (best-of-N "
                   f"needs more compute for the choice's accuracy) for {len(above)}, below 1 for {len(below)}, and "
                   f"contains 1 for {len(firsts) - len(above) - len(below)}"
                   + (f" ({len(sampling)} of those above 1 are sampling rules: majority or pass@1)" if sampling else "")
                   + ".")
        cells = []
        for r, group in groups:
            if not _is_search(r["strategy"]):
                continue
            ds = []
            for c in group:
                d = diff.get(_key(c), {})
                ds.append(f"T = {c['compute']:.0f}: difference "
                          + (_iv(d.get("difference"), d.get("difference_ci_low"), d.get("difference_ci_high"))
                             if d.get("baseline_strategy") else "-"))
            cells.append(f"bin {r['bin']}, {r['strategy']} @ {r['budget']} (R = {_ratio_iv(r)}; " + "; ".join(ds) + ")")
        out.append(f"- {source} difficulty, where a search or revisions is chosen: "
                   + ("; ".join(cells) if cells else "nowhere") + ".")
    return out


def power(recs: list[dict[str, Any]]) -> list[str]:
    """What the evaluation split can resolve: half-widths of the chosen accuracy's and the paired difference's
    95% intervals (the latter where the choice is not best-of-N's own configuration)."""
    out = []
    for source in sorted({r["difficulty"] for r in recs if r["kind"] == "choice"}):
        mine = [r for r in recs if r["kind"] == "choice" and r["difficulty"] == source]

        def med(vals: list[float]) -> str:
            return f"median ± {sorted(vals)[len(vals) // 2]:.3f}, largest ± {max(vals):.3f}" if vals else "-"

        parts = []
        for name, rs in (("all questions", [r for r in mine if r["bin"] == "all"]),
                         ("per bin", [r for r in mine if r["bin"] != "all"])):
            acc = [(r["ci_high"] - r["ci_low"]) / 2 for r in rs]
            dif = [(r["difference_ci_high"] - r["difference_ci_low"]) / 2 for r in rs if r.get("baseline_strategy")
                   and (r["baseline_strategy"], r["baseline_budget"]) != (r["strategy"], r["budget"])]
            n = sorted({r["n_evaluation"] for r in rs})
            parts.append(f"{name} ({n[0]}{'–' + str(n[-1]) if n[-1] != n[0] else ''} evaluation questions): "
                         f"accuracy {med(acc)}; difference where the choice is not the matched best-of-N {med(dif)}")
        out.append(f"- power, {source} difficulty, half-widths of the 95% intervals: " + "; ".join(parts) + ".")
    return out


def reading(recs: list[dict[str, Any]], run: Path) -> list[str]:
    """Statements the intervals support, generated from the numbers."""
    recs = [r for r in recs if r["kind"] == "choice" and r.get("baseline_strategy")]
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


def figures_from(recs: list[dict[str, Any]], run: Path, fig_dir: Path, tmp: Path) -> list[str]:
    """The per-bin plots and CSVs of ``analysis.compute_optimal`` drawn from ``recs`` (the page's grid)."""
    sys.path.insert(0, str(REPO))
    from analysis.compute_optimal import compute_optimal_section
    from metarl.analysis.io import load_run

    data = load_run(run)
    data.compute_optimal = recs
    compute_optimal_section([data], tmp)
    done = []
    for source in ("oracle", "predicted"):
        stem = f"compute_optimal_{''.join(c if c.isalnum() else '_' for c in data.label)}_{source}"
        if (tmp / f"{stem}.png").exists():
            for ext in ("png", "csv"):
                shutil.copy(tmp / f"{stem}.{ext}", fig_dir / f"search_{source}.{ext}")
            done.append(source)
    return done


def render(out: Path, docs: Path) -> Path:
    """``docs/results_search.md`` (+ figures and CSVs under ``docs/results/``) from a benchmark directory."""
    info = json.loads((out / "bench.json").read_text())
    run = out / "eval_run"
    fig_dir = docs / "results"
    fig_dir.mkdir(parents=True, exist_ok=True)
    recs, eff = selection_records(run)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        figures = figures_from(recs, run, fig_dir, Path(tmp))
    meta = json.loads((run / "eval" / "meta.json").read_text())
    m = info["machine"]
    if info.get("data"):
        counts: dict[int, int] = {}
        for q in _jsonl(REPO / info["data"] if not Path(info["data"]).is_absolute() else Path(info["data"])):
            counts[int(q["n_numbers"])] = counts.get(int(q["n_numbers"]), 0) + 1
        pool = (f"{meta['questions']} held-out problems of the built-in subset-sum task: every test-split problem "
                f"of its arithmetic (two one-digit numbers added) with {min(counts)}–{max(counts)} numbers listed "
                f"(`{info['data']}`, written by `--questions-file`; "
                + ", ".join(f"{v} with {k}" for k, v in sorted(counts.items()))
                + " numbers; the task's difficulties 1–3 are the 3-, 4- and 5-number sets, and difficulty 2, the "
                "tiny policy's training level, has only 114 held-out problems; difficulty 4, two-digit numbers, "
                "is beyond the tiny policy: pass@1 0 of 96 samples on 24 of its problems at budget 128, "
                "`task.task.difficulty=4`)")
    else:
        pool = f"{meta['questions']} held-out problems of the built-in subset-sum task"
    cpu = f"{m['cpu']}, " if m.get("cpu") else ""
    lines = ["## Step-level search and compute-optimal selection", "",
             "Generated by `bench/search_results.py`; do not edit by hand.", "",
             "### How it was produced", "", "```", *([info["bench_command"] + "   # runs the next two commands"]
                                                    if info.get("bench_command") else []),
             info["command"], info["report_command"],
             f"python bench/search_results.py --out {out} --page-only", "```", "",
             f"- policy `model={'random-tiny' if info['quick'] else 'tiny'}`, {pool}, budgets {meta['budgets']} (each bounds every sample's / path's "
             "thinking tokens), n = N = 8, temperature 0.7, seed 0; steps = episodes (`</attempt>`, `</verify>`, "
             "`</revise>`), at most 48 tokens each; `revisions`: Snell et al.'s sequential revisions (after "
             "the stream stops `<revise>` is appended, 2 rounds, all within the budget; the last answer counts; the "
             "mean over n chains, each costing its own tokens); search scorer `self_verify` (the policy's verdict; a step that "
             "is not a verification is verified by the policy, greedily), `beam_mc` scored by μ's Monte Carlo J "
             "(m = 4 forced answers; it reads the gold answer: an oracle bound, never selected)",
             f"- machine: {m['platform']}, {cpu}{m['processor']}, {m['cpu_count']} CPUs (shared with other jobs: "
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
             "paired over the evaluation questions. The grid of T is best-of-N's own costs on the bin's selection "
             "half (what metarl-eval writes to `eval/compute_optimal.jsonl`; the page checks its choices are the "
             "same) plus " + " and ".join(f"{m:g}×" for m in BEYOND) + " the largest of them: the searches cost "
             "more than best-of-N's largest configuration (N = 8 at 128 tokens), so only there can they be chosen, "
             "against that configuration (`metarl.eval.selection.compute_optimal(..., beyond=" + str(list(BEYOND))
             + ")`, recomputed by the page from `eval/results.jsonl`; the plots are drawn from the same records). "
             "Oracle difficulty: quantile bins of pass@1 of 8 samples at the "
             "largest budget (ties kept together, so a bin can be empty) — the very samples best-of-N at 128 tokens "
             "selects from, so in the hardest oracle bin best-of-N at 128 is 0 by construction and in the easiest "
             "it is favoured; predicted difficulty: bins of the mean self-verification score of those samples (no "
             "ground truth), the fair comparison.", *choice_tables(recs), "",
             "#### Efficiency ratio", "",
             "Snell et al. state the gain of compute-optimal selection as the compute best-of-N needs to match it. "
             "Per bin and compute T, with c\\* the configuration chosen on the selection half, on the evaluation "
             "half E: R = tokens_BoN(acc_E(c\\*)) / tokens_E(c\\*), where tokens_BoN(a) is read off weighted "
             "best-of-N's curve on E (its eight configurations: N = 1, 2, 4, 8 at both budgets; their running "
             "maximum in tokens, interpolated linearly in log tokens; `metarl.eval.selection.tokens_to_reach`). "
             "R > 1: best-of-N needs R times c\\*'s compute for c\\*'s accuracy (Snell et al. report about 4 "
             "against best-of-N); R ≤ 1 whenever c\\* is itself a best-of-N configuration (best-of-N reaches its "
             "accuracy at its own tokens or fewer), so R > 1 needs another strategy to be chosen; \"≤\" when c\\*'s accuracy is "
             "at or below best-of-N's cheapest point (N = 1 at 64 tokens), whose tokens are then an upper bound; "
             "*not reached* when best-of-N's best configuration is less accurate than c\\*. Interval: 95% "
             "percentile bootstrap over E (2000 resamples, the same questions for every configuration, the curve "
             "re-read per resample; c\\* fixed, since it was chosen on the other half); *resamples not reached* "
             "is the share of resamples in which best-of-N never gets to c\\*'s accuracy. R depends on the bin and "
             "c\\* only, so the table has one row per (bin, c\\*) with the budgets T it is chosen at. Best-of-N's "
             "curve ends at N = 8 at 128 tokens (n = 8 samples were drawn per question), so a choice costing more "
             "than that is either matched by a cheaper best-of-N point (R < 1) or *not reached*; whether best-of-N "
             "with N > 8 would match it, and at which R, this run cannot say (R is censored there).",
             *efficiency_tables(eff), "", "### Reading", "", *reading(recs, run), *efficiency_reading(eff, recs),
             *power(recs), ""]
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
    ap.add_argument("--questions-file", default=None,
                    help="evaluate on this JSONL file (written first if missing: every held-out one-digit two-term "
                         "problem with 3-8 numbers) instead of --questions problems of the test split")
    ap.add_argument("--page-only", action="store_true", help="rewrite the page from an earlier --out")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if not args.page_only:
        questions, budgets = (12, [48, 64]) if args.quick else (args.questions, [int(b) for b in args.budgets.split(",")])
        data = Path(args.questions_file) if args.questions_file else None
        if data is not None and not data.exists():
            print(f"wrote {write_questions(data)} questions to {data}")
        if data is not None:
            questions = len(_jsonl(data))
        run_benchmark(out, args.quick, questions, budgets, data)
    path = render(out, Path(args.docs))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
