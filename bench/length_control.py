"""L1's length control, measured (issue 28 item 1): does LCPO make a policy follow the N in its prompt?

For each recipe (``l1_exact``, ``l1_max``) and seed, the script trains the recipe on a built-in policy with
length targets N drawn from ``--targets`` (``budget.target_tokens``) under the compute cap ``--cap``, then
evaluates the untrained policy (``before``) and the trained one (``after``) on the same held-out problems:

* **length following** -- every held-out question once per target N, with L1's sentence ("Think for N tokens." or
  "Think for maximum N tokens.", written by ``metarl.rewards.budget.budget_prompt`` exactly as training writes it)
  and the cap C, ``--samples`` sampled completions each (``metarl-eval`` with a question file, strategy pass@1 at
  budget C). Per N: the mean relative length error ``|n_y - N| / N`` (LCPO-Exact's target), the share of streams
  within N (``n_y <= N``, LCPO-Max's), the mean thinking tokens and the held-out accuracy;
* **L1's comparison at matched tokens** -- the same questions without a length sentence, under ``metarl-eval``'s
  test-time strategies at budgets equal to the N's: plain truncation (``pass@1``: the stream is cut at N and an
  answer forced) and s1 budget forcing (``budget_forcing``: an early stop becomes ``--continuation``, the answer
  forced at N). The untrained policy's truncation / s1 run is shared by both recipes of a seed.

Commands (from the repository root; one job at a time, one torch thread)::

    .venv/bin/python bench/length_control.py --out runs/length --seeds 0-2            # the measurement
    .venv/bin/python bench/length_control.py --out runs/length --seeds 0-2 --model smollm2 \\
        --targets 32,64,128,256 --cap 320 --continuation Wait                         # a policy that reads numbers
    .venv/bin/python bench/length_control.py --out runs/length_l1 --seeds 0-2 --model tiny_l1   # SFT saw the sentence
    .venv/bin/python bench/length_control.py --out /tmp/lc-smoke --quick              # smoke: 1 seed, 2 steps
    .venv/bin/python bench/length_results.py runs/length                              # docs/results_length.md

Extra ``metarl-train`` overrides follow ``--`` (e.g. ``-- trainer.learning_rate=1e-4``); ``threads=1`` is always
passed. Outputs in ``OUT``: ``results.jsonl`` (one record per recipe, seed, N and phase, with the CPU model, the
commit and the wall times), ``results.csv`` (the same, flat), ``summary.json`` (medians and ranges over seeds, the
paired after - before change per N with a 95% t-interval over seeds, the slope of the mean length on N),
``accuracy_vs_tokens.png`` and ``accuracy_vs_tokens.csv`` (accuracy against thinking tokens: the L1 prompt, s1 and
truncation, before and after). Work directories: ``OUT/train/<recipe>/s<seed>`` (the training runs) and
``OUT/eval/...`` (one ``metarl-eval`` run directory per evaluation).

Resumable: a (recipe, seed) whose records are all in ``results.jsonl`` is skipped; a finished training run
(``summary.json`` and ``final/``) or evaluation (``eval/meta.json``) is read instead of rerun; an unfinished one
(killed) is removed and rerun. The settings are kept in ``OUT/settings.json``: resuming with other settings is
refused (use another ``--out``).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.demo_seeds import machine, parse_seeds  # noqa: E402  (the sweeps' one --seeds parser and machine record)

RECIPES = ("l1_exact", "l1_max")
MODE = {"l1_exact": "exact", "l1_max": "max"}
"""The length sentence each recipe trains with (``budget.prompt_mode`` of ``conf/budget/<recipe>.yaml``)."""
HEADLINE = {"exact": "length_error", "max": "within_share"}
"""The length metric each mode is judged by: mean |n_y - N| / N (lower is better) or the share n_y <= N."""
PHASES = ("before", "after")
METHODS = ("l1_prompt", "truncation", "budget_forcing")
"""Points of the accuracy-vs-tokens comparison: the length sentence at cap C, and at budget N without it."""
METRICS = ("length_error", "within_share", "mean_tokens", "accuracy", "truncation_accuracy", "truncation_tokens",
           "s1_accuracy", "s1_tokens")
"""Numbers of a record summarised over seeds."""
CSV_FIELDS = ["recipe", "seed", "N", "phase", "mode", "length_error", "length_error_se", "within_share",
              "mean_tokens", "tokens_sd", "accuracy", "accuracy_se", "truncation_accuracy", "truncation_tokens",
              "s1_accuracy", "s1_tokens", "questions", "samples", "cap", "steps", "model", "train_s", "eval_s",
              "wall_s", "cpu", "commit"]
QUICK = {"seeds": "0", "steps": 2, "questions": 8, "samples": 2, "targets": "32,64"}
"""``--quick``: a smoke run of the whole pipeline (not a measurement; length_results.py refuses it)."""
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}
"""Student t 0.975 quantiles by degrees of freedom (a missing df uses the next smaller one listed; > 30: 1.96)."""


def log(msg: str) -> None:
    """A progress line."""
    print(f"[length_control] {msg}", flush=True)


# ---------------------------------------------------------------- pure parts (tested in tests/test_length_control.py)

def parse_targets(text: str, cap: int) -> list[int]:
    """``"32,64,128"`` -> sorted distinct positive targets, each at most the cap (training refuses N > C)."""
    try:
        targets = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"--targets {text!r}: give whole numbers of tokens separated by commas, e.g. 32,64,128") \
            from None
    if not targets or targets[0] < 1:
        raise ValueError(f"--targets {text!r}: give positive token counts, e.g. 32,64,128")
    if targets[-1] > cap:
        raise ValueError(f"--targets {text!r}: N={targets[-1]} exceeds the cap --cap {cap}; raise --cap (each "
                         f"target must be reachable under it)")
    return targets


def length_error(tokens: Sequence[int], target: int) -> float:
    """Mean relative length error ``|n_y - N| / N`` of streams of ``tokens`` thinking tokens at target N.

    >>> length_error([32, 48, 16], 32)
    0.3333333333333333
    """
    if target <= 0 or not tokens:
        raise ValueError(f"length_error needs a positive target and at least one stream (N={target}, "
                         f"{len(tokens)} streams)")
    return sum(abs(n - target) for n in tokens) / (len(tokens) * target)


def within_share(tokens: Sequence[int], target: int) -> float:
    """The share of streams with at most N thinking tokens (LCPO-Max's budget).

    >>> within_share([10, 32, 33, 100], 32)
    0.5
    """
    if not tokens:
        raise ValueError("within_share needs at least one stream")
    return sum(n <= target for n in tokens) / len(tokens)


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """The mean and its standard error (sample SD / sqrt(n); 0 for one value)."""
    if not values:
        raise ValueError("mean_se of no values")
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    return m, statistics.stdev(values) / math.sqrt(len(values))


def t_interval(values: Sequence[float]) -> tuple[float | None, float | None]:
    """The 95% t-interval of the mean of ``values`` (seeds as independent replicates); (None, None) below 2."""
    if len(values) < 2:
        return None, None
    m, se = mean_se(values)
    df = len(values) - 1
    t = 1.96 if df > 30 else T975[max(k for k in T975 if k <= df)]
    return m - t * se, m + t * se


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of ys on xs (None with fewer than two distinct xs): 1 for a policy whose mean length
    moves one token per token of N, 0 for one that ignores N."""
    if len(xs) != len(ys):
        raise ValueError("slope: xs and ys differ in length")
    if len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def length_cells(samples: Iterable[dict[str, Any]], targets: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per target N, from ``metarl-eval`` sample records of the length-prompted questions (``question_id`` ending in
    ``#N<target>``, ``tokens``, ``correct``): the length error and within-N share over all streams, with standard
    errors over questions (each question's mean over its samples), mean and SD of the thinking tokens, accuracy.
    """
    per_q: dict[int, dict[str, list[tuple[int, int]]]] = {n: {} for n in targets}
    for s in samples:
        qid, _, tail = str(s["question_id"]).rpartition("#N")
        if not tail.isdigit() or int(tail) not in per_q:
            raise ValueError(f"sample of question {s['question_id']!r} names no target of {list(targets)}")
        per_q[int(tail)].setdefault(qid, []).append((int(s["tokens"]), int(s["correct"])))
    out: dict[int, dict[str, Any]] = {}
    for n, qs in per_q.items():
        if not qs:
            raise ValueError(f"no samples for target N={n}")
        toks = [t for q in qs.values() for t, _ in q]
        errs = [length_error([t for t, _ in q], n) for q in qs.values()]
        accs = [sum(c for _, c in q) / len(q) for q in qs.values()]
        err, err_se = mean_se(errs)
        acc, acc_se = mean_se(accs)
        out[n] = {"length_error": length_error(toks, n), "length_error_se": err_se,
                  "within_share": within_share(toks, n), "mean_tokens": sum(toks) / len(toks),
                  "tokens_sd": statistics.pstdev(toks), "accuracy": acc, "accuracy_se": acc_se,
                  "questions": len(qs), "samples": len(toks) // len(qs)}
    return out


def testtime_cells(rows: Iterable[dict[str, Any]], targets: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per budget N, from ``metarl-eval`` result rows (``strategy`` pass@1 = plain truncation, budget_forcing = s1):
    accuracy and mean thinking tokens per sample, each a mean over questions."""
    acc: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in rows:
        name = {"pass@1": "truncation", "budget_forcing": "s1"}.get(r["strategy"])
        if name is not None:
            acc.setdefault((name, int(r["budget"])), []).append((float(r["correct"]), float(r["tokens"])))
    out: dict[int, dict[str, Any]] = {}
    for n in targets:
        cell = {}
        for name in ("truncation", "s1"):
            got = acc.get((name, n))
            if not got:
                raise ValueError(f"no {name} rows at budget {n} in the test-time evaluation")
            cell[f"{name}_accuracy"] = sum(c for c, _ in got) / len(got)
            cell[f"{name}_tokens"] = sum(t for _, t in got) / len(got)
        out[n] = cell
    return out


def record_key(rec: dict[str, Any]) -> tuple[str, int, int, str]:
    """A record's identity: (recipe, seed, N, phase)."""
    return str(rec["recipe"]), int(rec["seed"]), int(rec["N"]), str(rec["phase"])


def load_results(path: Path) -> dict[tuple[str, int, int, str], dict[str, Any]]:
    """Records already in a results.jsonl by :func:`record_key` (the last line of a key wins); a line that is
    not JSON (a write cut short) is skipped with a warning."""
    out: dict[tuple[str, int, int, str], dict[str, Any]] = {}
    if not path.exists():
        return out
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            log(f"warning: {path}:{i} is not a JSON line (a write cut short?); ignored")
            continue
        out[record_key(rec)] = rec
    return out


def pending(done: dict[tuple[str, int, int, str], Any], recipes: Sequence[str], seeds: Sequence[int],
            targets: Sequence[int]) -> list[tuple[str, int]]:
    """The (recipe, seed) jobs still missing at least one of their (N, phase) records, in run order (seed by
    seed, so a sweep stopped early leaves whole seeds)."""
    return [(r, s) for s in seeds for r in recipes
            if any((r, s, n, p) not in done for n in targets for p in PHASES)]


def _spread(values: Sequence[float]) -> dict[str, Any]:
    vals = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return {"median": None, "min": None, "max": None, "seeds": 0}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "seeds": len(vals)}


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Over seeds, per recipe: per (phase, N) the median and range of every metric of :data:`METRICS`; per N the
    paired change after - before of each metric (per-seed values, median, range, mean and 95% t-interval); per
    phase the slope of the mean length on N (per seed, then median and range) and the headline metric averaged
    over the N's; the machines and wall times."""
    out: dict[str, Any] = {"recipes": {}}
    for recipe in sorted({r["recipe"] for r in records}):
        recs = [r for r in records if r["recipe"] == recipe]
        mode = recs[0]["mode"]
        seeds = sorted({int(r["seed"]) for r in recs})
        targets = sorted({int(r["N"]) for r in recs})
        by = {(r["phase"], int(r["N"]), int(r["seed"])): r for r in recs}
        cells: dict[str, dict[str, Any]] = {}
        for phase in PHASES:
            for n in targets:
                rows = [by[(phase, n, s)] for s in seeds if (phase, n, s) in by]
                if rows:
                    cells[f"{phase}/{n}"] = {m: _spread([r.get(m) for r in rows]) for m in METRICS}
        change: dict[str, dict[str, Any]] = {}
        for n in targets:
            paired = [s for s in seeds if ("before", n, s) in by and ("after", n, s) in by]
            per_n = {}
            for m in METRICS:
                d = [by[("after", n, s)][m] - by[("before", n, s)][m] for s in paired
                     if by[("after", n, s)].get(m) is not None and by[("before", n, s)].get(m) is not None]
                lo, hi = t_interval(d)
                per_n[m] = {"per_seed": d, **_spread(d), "mean": sum(d) / len(d) if d else None,
                            "ci_low": lo, "ci_high": hi}
            change[str(n)] = per_n
        overall: dict[str, Any] = {}
        for phase in PHASES:
            slopes, heads, accs = [], [], []
            for s in seeds:
                rows = [by[(phase, n, s)] for n in targets if (phase, n, s) in by]
                if len(rows) == len(targets):
                    slopes.append(slope([r["N"] for r in rows], [r["mean_tokens"] for r in rows]))
                    heads.append(sum(r[HEADLINE[mode]] for r in rows) / len(rows))
                    accs.append(sum(r["accuracy"] for r in rows) / len(rows))
            overall[phase] = {"slope": {"per_seed": slopes, **_spread([x for x in slopes if x is not None]),
                                        "ci": t_interval([x for x in slopes if x is not None])},
                              HEADLINE[mode]: {"per_seed": heads, **_spread(heads), "ci": t_interval(heads)},
                              "accuracy": {"per_seed": accs, **_spread(accs), "ci": t_interval(accs)}}
        diff = [a - b for a, b in zip(overall["after"][HEADLINE[mode]]["per_seed"],
                                      overall["before"][HEADLINE[mode]]["per_seed"])]
        overall["change"] = {HEADLINE[mode]: {"per_seed": diff, **_spread(diff), "ci": t_interval(diff)}}
        out["recipes"][recipe] = {"mode": mode, "headline": HEADLINE[mode], "seeds": seeds, "targets": targets,
                                  "cells": cells, "change": change, "overall": overall}
    walls = {}
    for r in records:
        walls.setdefault((r["recipe"], int(r["seed"])), r.get("wall_s"))
    w = [v for v in walls.values() if v is not None]
    out["machines"] = sorted({f"{r.get('cpu', '?')} @ {r.get('commit', '?')}" for r in records})
    out["wall_s"] = {"per_job": w and _spread(w), "total": round(sum(w), 1) if w else None}
    return out


def plot_points(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy against thinking tokens per (recipe, phase, method, N), medians and ranges over seeds: the rows of
    ``accuracy_vs_tokens.csv`` and the points of the plot."""
    cols = {"l1_prompt": ("mean_tokens", "accuracy"), "truncation": ("truncation_tokens", "truncation_accuracy"),
            "budget_forcing": ("s1_tokens", "s1_accuracy")}
    groups: dict[tuple[str, str, str, int], list[dict[str, Any]]] = {}
    for r in records:
        for method in METHODS:
            groups.setdefault((r["recipe"], r["phase"], method, int(r["N"])), []).append(r)
    out = []
    for (recipe, phase, method, n), rows in sorted(groups.items()):
        tcol, acol = cols[method]
        t, a = _spread([r[tcol] for r in rows]), _spread([r[acol] for r in rows])
        out.append({"recipe": recipe, "phase": phase, "method": method, "N": n, "seeds": len(rows),
                    "tokens_median": t["median"], "tokens_min": t["min"], "tokens_max": t["max"],
                    "accuracy_median": a["median"], "accuracy_min": a["min"], "accuracy_max": a["max"]})
    return out


# ---------------------------------------------------------------- outputs

def write_csv(path: Path, rows: Sequence[dict[str, Any]], fields: Sequence[str]) -> None:
    """Rows to a CSV (floats rounded to 4 places)."""
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()})


def write_plot(path: Path, points: Sequence[dict[str, Any]]) -> None:
    """Accuracy against mean thinking tokens per sample, one panel per recipe: the L1 prompt (at cap C), plain
    truncation and s1 budget forcing (at budget N), before (dashed) and after (solid) training; bars: range over
    seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recipes = sorted({p["recipe"] for p in points})
    fig, axes = plt.subplots(1, len(recipes), figsize=(5.5 * len(recipes), 4.2), squeeze=False, sharey=True)
    colors = {"l1_prompt": "tab:blue", "truncation": "tab:gray", "budget_forcing": "tab:orange"}
    labels = {"l1_prompt": "L1 prompt (cap C)", "truncation": "truncation at N", "budget_forcing": "s1 forcing to N"}
    for ax, recipe in zip(axes[0], recipes):
        for method in METHODS:
            for phase in PHASES:
                pts = sorted((p for p in points if p["recipe"] == recipe and p["method"] == method
                              and p["phase"] == phase), key=lambda p: p["N"])
                if not pts:
                    continue
                x = [p["tokens_median"] for p in pts]
                y = [p["accuracy_median"] for p in pts]
                yerr = [[p["accuracy_median"] - p["accuracy_min"] for p in pts],
                        [p["accuracy_max"] - p["accuracy_median"] for p in pts]]
                ax.errorbar(x, y, yerr=yerr, marker="o", ms=4, capsize=2, color=colors[method],
                            ls="-" if phase == "after" else "--", label=f"{labels[method]}, {phase}")
        ax.set_title(recipe)
        ax.set_xlabel("thinking tokens per sample (median over seeds)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out accuracy")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(out: Path, records: Sequence[dict[str, Any]], settings: dict[str, Any]) -> dict[str, Any]:
    """results.csv, summary.json (with the settings), accuracy_vs_tokens.csv and .png from the records."""
    records = sorted(records, key=lambda r: (r["recipe"], int(r["seed"]), r["phase"] != "before", int(r["N"])))
    write_csv(out / "results.csv", records, CSV_FIELDS)
    summary = {"settings": settings, **summarize(records)}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    points = plot_points(records)
    write_csv(out / "accuracy_vs_tokens.csv", points, list(points[0]) if points else ["recipe"])
    if points:
        write_plot(out / "accuracy_vs_tokens.png", points)
    return summary


def describe(summary: dict[str, Any]) -> str:
    """Printable lines: per recipe and N, the headline length metric before -> after (medians over seeds)."""
    lines = []
    for recipe, s in summary["recipes"].items():
        h = s["headline"]
        for n in s["targets"]:
            b, a = s["cells"].get(f"before/{n}", {}), s["cells"].get(f"after/{n}", {})
            if not b or not a:
                continue
            c = s["change"][str(n)][h]
            ci = f", 95% CI {c['ci_low']:+.3f} to {c['ci_high']:+.3f}" if c["ci_low"] is not None else ""
            lines.append(f"  {recipe} N={n}: {h} {b[h]['median']:.3f} -> {a[h]['median']:.3f} (change median "
                         f"{c['median']:+.3f}{ci}), tokens {b['mean_tokens']['median']:.1f} -> "
                         f"{a['mean_tokens']['median']:.1f}, accuracy {b['accuracy']['median']:.3f} -> "
                         f"{a['accuracy']['median']:.3f}; s1 {a['s1_accuracy']['median']:.3f}, truncation "
                         f"{a['truncation_accuracy']['median']:.3f} (after)")
        sl = s["overall"]["after"]["slope"]
        if sl["median"] is not None:
            lines.append(f"  {recipe}: slope of mean length on N after training {sl['median']:.2f} "
                         f"(range {sl['min']:.2f} to {sl['max']:.2f}; 1 = follows N, 0 = ignores it)")
    return "\n".join(lines)


# ---------------------------------------------------------------- the jobs

def train_overrides(args: argparse.Namespace, recipe: str, seed: int, run_dir: Path) -> list[str]:
    """``metarl-train`` overrides of one training job (the trainer's own held-out evaluation is off: the
    evaluations here cover it)."""
    targets = ",".join(map(str, args.target_list))
    return [f"recipe={recipe}", f"name={recipe}", f"model={args.model}", f"seed={seed}", "threads=1",
            f"run_dir={run_dir}", f"trainer.max_steps={args.steps}", f"budget.cap={args.cap}",
            f"budget.target_tokens=[{targets}]", "evaluate.enabled=false", *args.overrides]


def eval_overrides(args: argparse.Namespace, model_path: str, seed: int, run_dir: Path, strategies: str) -> list[str]:
    """``metarl-eval`` overrides of one evaluation of a policy (sampling, questions, no bins, ``strategies``)."""
    return [f"model={args.model}", f"model.name_or_path={model_path}", f"run_dir={run_dir}", "overwrite=true",
            f"seed={seed}", f"data_seed={seed}", f"task.n_test={args.questions}", "threads=1",
            f"n={args.samples}", f"temperature={args.temperature}", "difficulty.enabled=false",
            "compute_optimal.enabled=false", f"strategies=[{strategies}]", "pass_at_k.k=[1]",
            *args.eval_overrides]


def heldout_questions(args: argparse.Namespace, seed: int):
    """The held-out questions of a seed (the training run's held-out split: ``data_seed`` = seed)."""
    from metarl.config import build_task_of, compose, plain
    from metarl.eval.questions import load_questions

    cfg = compose("eval", [f"model={args.model}", f"data_seed={seed}", f"task.n_test={args.questions}",
                           *args.eval_overrides])
    questions, problems = load_questions(plain(cfg.task), build_task_of(cfg), data_seed=seed, limit=args.questions)
    for p in problems:
        log(f"data problem: {p}")
    return questions


def write_length_questions(path: Path, questions, targets: Sequence[int], mode: str) -> None:
    """Every question once per target N, with L1's sentence as training writes it; id ``<question>#N<target>``."""
    from metarl.rewards.budget import budget_prompt

    with path.open("w") as f:
        for q in questions:
            for n in targets:
                f.write(json.dumps({"id": f"{q.id}#N{n}", "prompt": budget_prompt(q.prompt, n, mode),
                                    "answer": q.answer, "target_tokens": n}) + "\n")


def finished_eval(run_dir: Path) -> bool:
    return (run_dir / "eval" / "meta.json").exists()


def run_eval(run_dir: Path, overrides: list[str], what: str) -> float:
    """One ``metarl-eval`` run in-process (skipped when finished; an unfinished directory is removed first);
    its seconds (from ``eval/meta.json``)."""
    from metarl.config import compose
    from metarl.eval.run import run

    if not finished_eval(run_dir):
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.mkdir(parents=True)
        log(f"{what}: evaluating -> {run_dir}")
        run(compose("eval", overrides))
    else:
        log(f"{what}: finished earlier, read from {run_dir}")
    return float(json.loads((run_dir / "eval" / "meta.json").read_text()).get("seconds") or 0.0)


def run_train(run_dir: Path, overrides: list[str], what: str) -> float:
    """One ``metarl-train`` run in-process (skipped when ``summary.json`` and ``final/`` exist; an unfinished
    directory is removed first); its training seconds."""
    from metarl.config import compose
    from metarl.trainer.run import run

    if not ((run_dir / "summary.json").exists() and (run_dir / "final").is_dir()):
        if run_dir.exists():
            shutil.rmtree(run_dir)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        log(f"{what}: training -> {run_dir}")
        run(compose("train", overrides))
    else:
        log(f"{what}: trained earlier, read from {run_dir}")
    return float(json.loads((run_dir / "summary.json").read_text()).get("train_seconds") or 0.0)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def job(args: argparse.Namespace, out: Path, recipe: str, seed: int, where: dict[str, str]) -> list[dict[str, Any]]:
    """Train one (recipe, seed) and evaluate before and after; its records, one per (N, phase)."""
    mode, targets = MODE[recipe], args.target_list
    tag = f"{recipe} seed {seed}"
    train_dir = out / "train" / recipe / f"s{seed}"
    train_s = run_train(train_dir, train_overrides(args, recipe, seed, train_dir), tag)
    qfile = out / "eval" / f"questions_{mode}_s{seed}.jsonl"
    qfile.parent.mkdir(parents=True, exist_ok=True)
    if not qfile.exists():
        write_length_questions(qfile, heldout_questions(args, seed), targets, mode)
    budgets = f"budgets=[{','.join(map(str, targets))}]"
    records, eval_s = [], 0.0
    for phase in PHASES:
        model_path = args.model_name if phase == "before" else str(train_dir / "final")
        base = out / "eval" / recipe / f"s{seed}" / phase
        ldir = base / "length"
        eval_s += run_eval(ldir, [*eval_overrides(args, model_path, seed, ldir, "pass_at_k"), f"data={qfile}",
                                  f"budgets=[{args.cap}]", f"n_questions={len(targets) * args.questions}"],
                           f"{tag} {phase}: length prompts")
        tdir = out / "eval" / "untrained" / f"s{seed}" / "testtime" if phase == "before" else base / "testtime"
        eval_s += run_eval(tdir, [*eval_overrides(args, model_path, seed, tdir, "pass_at_k,budget_forcing"), budgets,
                                  f"n_questions={args.questions}",
                                  f"budget_forcing.continuation={hydra_quote(args.continuation)}"],
                           f"{tag} {phase}: truncation and s1 at N")
        length = length_cells(_read_jsonl(ldir / "eval" / "samples.jsonl"), targets)
        testtime = testtime_cells(_read_jsonl(tdir / "eval" / "results.jsonl"), targets)
        for n in targets:
            records.append({"recipe": recipe, "seed": seed, "N": n, "phase": phase, "mode": mode,
                            **length[n], **testtime[n], "cap": args.cap,
                            "steps": args.steps if phase == "after" else 0, "model": args.model,
                            "temperature": args.temperature, "continuation": args.continuation,
                            "overrides": args.overrides, **where})
    for r in records:
        r.update(train_s=train_s, eval_s=round(eval_s, 1))
    return records


def hydra_quote(text: str) -> str:
    """A string value for a Hydra override, quoted (``<revise>`` would not parse bare)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """What a sweep's numbers depend on (a resumed sweep must match; seeds and recipes may be extended)."""
    return {"model": args.model, "steps": args.steps, "cap": args.cap, "targets": args.target_list,
            "questions": args.questions, "samples": args.samples, "temperature": args.temperature,
            "continuation": args.continuation, "overrides": args.overrides, "eval_overrides": args.eval_overrides,
            "smoke": bool(args.quick)}


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Options (``--`` then metarl-train overrides)."""
    overrides: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, overrides = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path, help="output directory (results here, work dirs below)")
    p.add_argument("--seeds", default=None, help="e.g. 0-2 or 0,2,5 (default 0-2; --quick: 0)")
    p.add_argument("--recipes", default=",".join(RECIPES), help="comma-separated, of l1_exact,l1_max")
    p.add_argument("--model", default="tiny", help="built-in policy (conf/model/): tiny (default), smollm2, ...")
    p.add_argument("--steps", type=int, default=None, help="GRPO steps per training run (default 300; --quick: 2)")
    p.add_argument("--cap", type=int, default=192, help="compute cap C of training and the length evaluation")
    p.add_argument("--targets", default=None, help="targets N, comma-separated (default 32,64,96,128: the tiny "
                   "policy writes ~50-120 thinking tokens untrained; --quick: 32,64)")
    p.add_argument("--questions", type=int, default=None, help="held-out questions (default 64; --quick: 8)")
    p.add_argument("--samples", type=int, default=None, help="sampled completions per question and N (default 4; "
                   "--quick: 2)")
    p.add_argument("--temperature", type=float, default=0.7, help="evaluation sampling temperature (default 0.7)")
    p.add_argument("--continuation", default=None, help="s1's continuation (default <revise> for tiny, the built-in "
                   "tag format; Wait otherwise)")
    p.add_argument("--eval-override", action="append", default=[], dest="eval_overrides",
                   help="an extra metarl-eval override (repeatable), e.g. task overrides matching training's")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 2 steps, 8 questions, 2 samples, "
                   "targets 32,64 (explicit options win)")
    args = p.parse_args(argv)
    args.overrides = overrides
    q = QUICK if args.quick else {"seeds": "0-2", "steps": 300, "questions": 64, "samples": 4,
                                  "targets": "32,64,96,128"}
    for k in ("seeds", "steps", "questions", "samples", "targets"):
        if getattr(args, k) is None:
            setattr(args, k, q[k])
    if args.continuation is None:
        args.continuation = "<revise>" if args.model.startswith("tiny") else "Wait"
    args.model_name = _model_name(args.model)
    for k in ("steps", "questions", "samples", "cap"):
        if getattr(args, k) < 1:
            p.error(f"--{k} must be at least 1")
    try:
        args.seed_list = parse_seeds(args.seeds)
        args.target_list = parse_targets(args.targets, args.cap)
    except ValueError as e:
        p.error(str(e))
    args.recipe_list = [r.strip() for r in args.recipes.split(",") if r.strip()]
    bad = [r for r in args.recipe_list if r not in RECIPES]
    if bad or not args.recipe_list:
        p.error(f"--recipes: {bad or args.recipes!r} not among {list(RECIPES)}")
    return args


def _model_name(model: str) -> str:
    """The ``model.name_or_path`` of a conf/model group as Hydra composes it (``tiny`` -> ``tiny``; ``tiny_mrt``,
    whose defaults extend ``tiny``, -> ``tiny``; ``smollm2`` -> ``smollm2``)."""
    from metarl.config import compose

    if not (ROOT / "conf" / "model" / f"{model}.yaml").exists():
        raise SystemExit(f"[length_control] --model {model!r}: no conf/model/{model}.yaml (choose one of "
                         f"{sorted(p.stem for p in (ROOT / 'conf' / 'model').glob('*.yaml'))})")
    name = compose("train", [f"model={model}"]).model.get("name_or_path")
    if not name or name == "???":
        raise SystemExit(f"[length_control] --model {model!r} names no fixed policy (name_or_path {name!r}); use a "
                         "built-in one (tiny, tiny_mrt, smollm2, smollm2-reasoner)")
    return str(name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    settings = settings_of(args)
    spath = out / "settings.json"
    if spath.exists():
        old = json.loads(spath.read_text())
        diff = {k: (old.get(k), v) for k, v in settings.items() if old.get(k) != v}
        if diff:
            log(f"{out} holds a sweep with other settings {diff} (earlier, now); use another --out")
            return 2
    spath.write_text(json.dumps(settings, indent=1))
    results = out / "results.jsonl"
    done = load_results(results)
    todo = pending(done, args.recipe_list, args.seed_list, args.target_list)
    where = machine()
    from metarl.utils import set_verbose

    set_verbose(False)
    t0 = time.time()
    log(f"{len(todo)} of {len(args.recipe_list) * len(args.seed_list)} (recipe, seed) jobs to run; model "
        f"{args.model}, {args.steps} steps, cap {args.cap}, targets {args.target_list}, {args.questions} questions x "
        f"{args.samples} samples; on {where['cpu']} @ {where['commit']}")
    for k, (recipe, seed) in enumerate(todo, 1):
        t1 = time.time()
        log(f"job {k}/{len(todo)}: {recipe} seed {seed}")
        try:
            recs = job(args, out, recipe, seed, where)
        except Exception as e:  # noqa: BLE001 - say which job failed and keep what is finished
            log(f"{recipe} seed {seed} failed: {type(e).__name__}: {e}; finished jobs are kept (rerun to resume)")
            return 1
        for r in recs:  # this process's time on the job (a job resumed half-way counts only what ran now)
            r["wall_s"] = round(time.time() - t1, 1)
        with results.open("a") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
                done[record_key(r)] = r
        log(f"job {k}/{len(todo)}: {recipe} seed {seed} done in {recs[0]['wall_s']:.0f} s (train "
            f"{recs[0]['train_s']} s, evaluations {recs[0]['eval_s']} s); elapsed {time.time() - t0:.0f} s")
    chosen = [r for key, r in done.items() if key[0] in args.recipe_list and key[1] in args.seed_list
              and key[2] in args.target_list]
    if not chosen:
        log("no records")
        return 1
    summary = write_outputs(out, chosen, settings)
    log(f"wrote {out}/results.jsonl, results.csv, summary.json, accuracy_vs_tokens.png/.csv\n{describe(summary)}")
    return 0


def _exit_on_sigterm(signum, frame):
    raise SystemExit(f"[length_control] stopped by signal {signum}; finished jobs are kept (rerun to resume)")


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    sys.exit(main())
