"""docs/results_length.md from a finished ``bench/length_control.py`` output directory (issue 28 item 1)::

    .venv/bin/python bench/length_results.py runs/length runs/length_mrt   # docs/results_length.md, docs/results/length_*

One section per sweep (each of another policy), after an overview row per policy and recipe.

The page says how the numbers were produced (the commands, the machine, the wall time), shows the prompt the policy
saw, the per-N length table before/after training over seeds (median and range, the paired change with its 95%
t-interval over seeds), the slope of the mean length on N, and L1's comparison: accuracy against thinking tokens
of the length-prompted policy next to s1 budget forcing and plain truncation at budgets equal to the N's. The
reading is generated from those numbers (what the intervals decide and what they do not), not written by hand.

A smoke run (``--quick``) or a sweep of fewer than 3 seeds is refused unless ``--allow-small`` (for tests).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from length_control import PHASES, load_results, plot_points  # noqa: E402

L1_CLAIM = ("L1 (Aggarwal & Welleck, 2025) reports that a model trained with LCPO follows the length in its prompt "
            "(about 3% mean relative length error on math with LCPO-Exact) and is more accurate than s1's budget "
            "forcing at the same number of thinking tokens.")
NAMES = {"length_error": "mean |n_y − N| / N", "within_share": "share of streams with n_y ≤ N"}


def fmt(x: float | None, digits: int = 3, sign: bool = False) -> str:
    """A number for a table ("–" for none)."""
    if x is None:
        return "–"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def spread(cell: dict[str, Any], digits: int = 3) -> str:
    """``median [min, max]`` of a summary cell (just the median for one seed)."""
    if not cell or cell.get("median") is None:
        return "–"
    if cell.get("seeds", 0) < 2:
        return fmt(cell["median"], digits)
    return f"{fmt(cell['median'], digits)} [{fmt(cell['min'], digits)}, {fmt(cell['max'], digits)}]"


def ci(lo: float | None, hi: float | None, digits: int = 3) -> str:
    """A 95% interval, or a note that one seed gives none."""
    if lo is None:
        return "(no interval: 1 seed)"
    return f"[{fmt(lo, digits, True)}, {fmt(hi, digits, True)}]"


def command_of(out: Path, settings: dict[str, Any], seeds: list[int], recipes: list[str]) -> str:
    """The bench/length_control.py command that produced these settings."""
    parts = [".venv/bin/python", "bench/length_control.py", "--out", str(out), "--seeds",
             ",".join(map(str, seeds)), "--recipes", ",".join(recipes), "--model", settings["model"],
             "--steps", str(settings["steps"]), "--cap", str(settings["cap"]), "--targets",
             ",".join(map(str, settings["targets"])), "--questions", str(settings["questions"]), "--samples",
             str(settings["samples"]), "--temperature", str(settings["temperature"]), "--continuation",
             settings["continuation"]]
    for o in settings.get("eval_overrides") or []:
        parts += ["--eval-override", o]
    if settings.get("overrides"):
        parts += ["--", *settings["overrides"]]
    return shlex.join(parts)


def prompt_example(out: Path) -> str | None:
    """The first length-prompted held-out question the policy saw (``OUT/eval/questions_*.jsonl``)."""
    for path in sorted((out / "eval").glob("questions_*.jsonl")):
        line = path.read_text().split("\n", 1)[0]
        if line.strip():
            return json.loads(line)["prompt"] if isinstance(json.loads(line)["prompt"], str) else \
                json.dumps(json.loads(line)["prompt"])
    return None


def length_table(s: dict[str, Any]) -> list[str]:
    """Per N: the headline length metric, mean tokens and accuracy before / after (median [range] over seeds) and
    the paired change of the headline with its 95% t-interval over seeds."""
    h = s["headline"]
    lines = [f"| N | {h} before | {h} after | change (median, 95% CI over seeds) | tokens before | tokens after | "
             "accuracy before | accuracy after |", "|---|---|---|---|---|---|---|---|"]
    for n in s["targets"]:
        b, a, c = s["cells"].get(f"before/{n}", {}), s["cells"].get(f"after/{n}", {}), s["change"][str(n)][h]
        lines.append(f"| {n} | {spread(b.get(h, {}))} | {spread(a.get(h, {}))} | {fmt(c['median'], sign=True)} "
                     f"{ci(c['ci_low'], c['ci_high'])} | {spread(b.get('mean_tokens', {}), 1)} | "
                     f"{spread(a.get('mean_tokens', {}), 1)} | {spread(b.get('accuracy', {}))} | "
                     f"{spread(a.get('accuracy', {}))} |")
    return lines


def comparison_table(recipe: str, points: list[dict[str, Any]]) -> list[str]:
    """Per N and phase: (tokens, accuracy) of the L1 prompt, s1 budget forcing and truncation (medians over seeds)."""
    cell = {(p["phase"], p["method"], p["N"]): p for p in points if p["recipe"] == recipe}
    lines = ["| N | phase | L1 prompt: tokens, accuracy | s1 forcing to N: tokens, accuracy | truncation at N: tokens, "
             "accuracy |", "|---|---|---|---|---|"]
    for n in sorted({p["N"] for p in points if p["recipe"] == recipe}):
        for phase in PHASES:
            row = [f"{fmt(cell[(phase, m, n)]['tokens_median'], 1)}, {spread({**_acc(cell[(phase, m, n)])})}"
                   if (phase, m, n) in cell else "–" for m in ("l1_prompt", "budget_forcing", "truncation")]
            lines.append(f"| {n} | {phase} | " + " | ".join(row) + " |")
    return lines


def _acc(p: dict[str, Any]) -> dict[str, Any]:
    return {"median": p["accuracy_median"], "min": p["accuracy_min"], "max": p["accuracy_max"], "seeds": p["seeds"]}


def reading(recipe: str, s: dict[str, Any], points: list[dict[str, Any]]) -> list[str]:
    """Sentences generated from the numbers: did the length metric change (decided by the interval over seeds),
    does the length move with N (the slope), how the L1 prompt compares with s1 and truncation at matched N, and
    what the length sentence alone does to the untrained policy."""
    h, o = s["headline"], s["overall"]
    ch = o["change"][h]
    lo, hi = ch["ci"]
    better = (lambda x: x < 0) if h == "length_error" else (lambda x: x > 0)
    before, after = o["before"][h], o["after"][h]
    out = []
    verdict = ("no interval with one seed" if lo is None else
               "an improvement: the interval excludes 0" if better(lo) and better(hi) else
               "a deterioration: the interval excludes 0" if not better(lo) and not better(hi) and lo * hi > 0 else
               f"not decided: the interval includes 0 (changes smaller than about {max(abs(lo), abs(hi)):.3f} "
               "cannot be told from the seeds' spread)")
    out.append(f"**{recipe}** ({NAMES[h]}, averaged over the N's): {fmt(before['median'])} before, "
               f"{fmt(after['median'])} after training (medians over {len(s['seeds'])} seeds); the paired change "
               f"{fmt(ch['median'], sign=True)}, 95% CI {ci(lo, hi)}: {verdict}.")
    sl = o["after"]["slope"]
    sb = o["before"]["slope"]
    if sl["median"] is not None:
        slo, shi = sl["ci"]
        follows = ("the interval excludes 0: the length moves with N" if slo is not None and slo > 0 else
                   "the interval includes 0: the trained policy's length does not measurably move with N, i.e. it "
                   "has not learned to read the number" if slo is not None else "one seed, no interval")
        out.append(f"Slope of the mean thinking length on N (1: follows N token for token, 0: ignores N): "
                   f"{fmt(sb['median'], 2)} before, {fmt(sl['median'], 2)} after, 95% CI {ci(slo, shi, 2)} — "
                   f"{follows}.")
    if h == "length_error" and after["median"] is not None:
        out.append(f"L1 reports about 0.03 mean relative error; measured here after training: "
                   f"{fmt(after['median'])}.")
    acc = {(p["phase"], p["method"], p["N"]): p for p in points if p["recipe"] == recipe}
    wins = []
    for n in s["targets"]:
        l1, s1, tr = (acc.get(("after", m, n)) for m in ("l1_prompt", "budget_forcing", "truncation"))
        if l1 and s1 and tr:
            wins.append(f"N={n}: L1 prompt {fmt(l1['accuracy_median'])} at {fmt(l1['tokens_median'], 1)} tokens, s1 "
                        f"{fmt(s1['accuracy_median'])} at {fmt(s1['tokens_median'], 1)}, truncation "
                        f"{fmt(tr['accuracy_median'])} at {fmt(tr['tokens_median'], 1)}")
    if wins:
        out.append("Accuracy of the trained policy at matched N (medians over seeds; the L1 prompt runs at cap C, so "
                   "its tokens are matched only as far as it follows N): " + "; ".join(wins) + ".")
    b_l1 = [acc[("before", "l1_prompt", n)]["accuracy_median"] for n in s["targets"]
            if ("before", "l1_prompt", n) in acc]
    b_tr = [acc[("before", "truncation", n)]["accuracy_median"] for n in s["targets"]
            if ("before", "truncation", n) in acc]
    if b_l1 and b_tr:
        out.append(f"Before training, the length sentence alone: accuracy {fmt(sum(b_l1) / len(b_l1))} with it "
                   f"(cap C) vs {fmt(sum(b_tr) / len(b_tr))} without it (truncation at N), averaged over the N's.")
    return out


def shown(out: Path) -> Path:
    """``out`` relative to the repository when inside it (the page's commands run from its root)."""
    try:
        return out.resolve().relative_to(ROOT)
    except ValueError:
        return out


def overview(runs: list[tuple[Path, dict[str, Any], list[dict[str, Any]]]]) -> list[str]:
    """One row per policy and recipe: the headline length metric before → after (medians over seeds, averaged over
    the N's), its paired change with the 95% interval, and the slope of the mean length on N after training."""
    lines = ["| policy | recipe | length metric | before | after | change [95% CI] | slope on N after [95% CI] | seeds |",
             "|---|---|---|---|---|---|---|---|"]
    for _, summary, _ in runs:
        for recipe in sorted(summary["recipes"]):
            s = summary["recipes"][recipe]
            h, o = s["headline"], s["overall"]
            ch, sl = o["change"][h], o["after"]["slope"]
            name = NAMES[h].replace("|", "\\|")  # a bare | would end the table cell
            lines.append(f"| `{summary['settings']['model']}` | {recipe} | {name} | {fmt(o['before'][h]['median'])} "
                         f"| {fmt(o['after'][h]['median'])} | {fmt(ch['median'], sign=True)} {ci(*ch['ci'])} | "
                         f"{fmt(sl['median'], 2)} {ci(*sl['ci'], 2)} | {len(s['seeds'])} |")
    return lines


def model_comment(model: str) -> str:
    """The comment that opens ``conf/model/<model>.yaml`` (what the policy is), joined into one paragraph."""
    path = ROOT / "conf" / "model" / f"{model}.yaml"
    if not path.exists():
        return ""
    head = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        head.append(line.lstrip("#").strip())
    return " ".join(h for h in head if h)


def figure_stem(settings: dict[str, Any]) -> str:
    """The file name (without suffix) of a run's accuracy-vs-tokens figure in the figures folder."""
    return f"length_{settings['model']}_accuracy_vs_tokens"


def section(out: Path, summary: dict[str, Any], records: list[dict[str, Any]], figures: Path,
            page_path: Path) -> list[str]:
    """The section of one policy's sweep: how it was produced, the prompt, the length tables, L1's comparison at
    matched tokens and the reading generated from the numbers."""
    st = summary["settings"]
    recipes = sorted(summary["recipes"])
    seeds = sorted({int(r["seed"]) for r in records})
    points = plot_points(records)
    fig = figures / figure_stem(st)

    def rel(path: Path) -> str:
        return Path(os.path.relpath(path, page_path.parent)).as_posix()

    about = model_comment(st["model"])
    lines = [f"## Policy `{st['model']}`", "", *([about, ""] if about else []), "### How it was produced", "", "```",
             command_of(shown(out), st, seeds, recipes), "```", "",
             f"Policy `{st['model']}`; each recipe trained {st['steps']} GRPO steps per seed with targets N in "
             f"{st['targets']} (`budget.target_tokens`) under the cap C={st['cap']}; seeds {seeds}. Evaluation on "
             f"{st['questions']} held-out problems (the training run's held-out split), {st['samples']} samples "
             f"each at temperature {st['temperature']}: with the length sentence at cap C (every question once per "
             f"N), and without it under `metarl-eval`'s `pass@1` (truncation at N) and `budget_forcing` (s1, "
             f"continuation `{st['continuation']}`) at budgets N. Machine(s): {'; '.join(summary['machines'])}. "
             f"Wall time: {fmt(summary['wall_s']['total'], 0)} s in all "
             f"(per recipe and seed {spread(summary['wall_s']['per_job'] or {}, 0)} s)."]
    ex = prompt_example(out)
    if ex:
        lines += ["", "The prompt the policy saw (first held-out question), as `metarl.rewards.budget.budget_prompt` "
                  "writes it for training:", "", "```", ex, "```"]
    lines += ["", "### Length error per target N, before and after training", ""]
    for recipe in recipes:
        s = summary["recipes"][recipe]
        lines += [f"#### {recipe} ({NAMES[s['headline']]})", "", *length_table(s), ""]
    lines += ["### Accuracy against thinking tokens: the L1 prompt, s1 budget forcing, truncation", "",
              f"![accuracy vs tokens]({rel(fig.with_suffix('.png'))}) "
              f"(data: [{fig.name}.csv]({rel(fig.with_suffix('.csv'))}))", ""]
    for recipe in recipes:
        lines += [f"#### {recipe}", "", *comparison_table(recipe, points), ""]
    lines += ["### Reading", ""]
    for recipe in recipes:
        lines += [f"- {x}" for x in reading(recipe, summary["recipes"][recipe], points)]
    lines += ["", f"Intervals are 95% t-intervals over {len(seeds)} seeds (per-seed values paired before/after); "
              "with this few seeds only large changes are decided, and an interval that includes 0 is reported as "
              "undecided, not as no effect.", ""]
    return lines


def page(runs: list[tuple[Path, dict[str, Any], list[dict[str, Any]]]], figures: Path, page_path: Path) -> str:
    """The markdown of docs/results_length.md: L1's claim, one overview row per policy and recipe, then one
    section per policy's sweep."""
    outs = " ".join(str(shown(out)) for out, _, _ in runs)
    lines = ["# L1's length control, measured", "", L1_CLAIM, "",
             f"Generated by `.venv/bin/python bench/length_results.py {outs}` from the sweeps below; do not edit by "
             "hand.", "", "## Overview", "", *overview(runs), ""]
    for out, summary, records in runs:
        lines += section(out, summary, records, figures, page_path)
    return "\n".join(lines).rstrip("\n") + "\n"


def load_run(out: Path, allow_small: bool) -> tuple[Path, dict[str, Any], list[dict[str, Any]]]:
    """A finished sweep's summary and records; a smoke run or < 3 seeds is refused unless ``allow_small``."""
    if not (out / "summary.json").exists():
        raise SystemExit(f"[length_results] {out}/summary.json is missing: run bench/length_control.py --out {out}")
    summary = json.loads((out / "summary.json").read_text())
    records = [r for r in load_results(out / "results.jsonl").values() if r["recipe"] in summary["recipes"]]
    seeds = {int(r["seed"]) for r in records}
    if not allow_small and (summary["settings"].get("smoke") or len(seeds) < 3):
        raise SystemExit(f"[length_results] {out} is a smoke run or has fewer than 3 seeds ({sorted(seeds)}); the "
                         "page needs the full sweep (pass --allow-small only in tests)")
    return out, summary, records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, nargs="+", help="output directories of bench/length_control.py, one per policy")
    p.add_argument("--page", type=Path, default=ROOT / "docs" / "results_length.md", help="the page to write")
    p.add_argument("--figures", type=Path, default=ROOT / "docs" / "results",
                   help="where each sweep's plot and its CSV are copied (length_<model>_accuracy_vs_tokens.png/.csv)")
    p.add_argument("--allow-small", "--allow-smoke", dest="allow_small", action="store_true",
                   help="write a page from a smoke run or < 3 seeds (tests only)")
    args = p.parse_args(argv)
    runs = [load_run(out.resolve(), args.allow_small) for out in args.out]
    models = [summary["settings"]["model"] for _, summary, _ in runs]
    if len(set(models)) < len(models):
        raise SystemExit(f"[length_results] two sweeps of the same policy ({models}): the page has one section per "
                         "policy; pass one output directory per policy")
    args.figures.mkdir(parents=True, exist_ok=True)
    for out, summary, _ in runs:
        for suffix in ("png", "csv"):
            src = out / f"accuracy_vs_tokens.{suffix}"
            if src.exists():
                shutil.copyfile(src, args.figures / f"{figure_stem(summary['settings'])}.{suffix}")
    args.page.parent.mkdir(parents=True, exist_ok=True)
    args.page.write_text(page(runs, args.figures, args.page))
    print(f"[length_results] wrote {args.page} and {len(runs)} figure(s) in {args.figures}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
