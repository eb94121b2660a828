"""Learning comparison: outcome-reward GRPO against Obj-1 / Obj-2 dense rewards (issue 6, docs/method.md §7).

On the built-in task with the tiny policy, every recipe is trained with the same data order, steps and
compute cap C for each seed, and evaluated on held-out problems::

    python bench/compare_learning.py --setting compare_long --seeds 0,1,2,3,4,5 --out runs/compare_long --page
    python bench/compare_learning.py --out runs/compare                 # level 2, 150 steps, seeds 0,1,2
    python bench/compare_learning.py --out runs/compare-quick --quick   # smoke check (1 seed, 6 steps: ~80 s)
    python bench/results_page.py runs/compare_long                      # docs/results.md from an output directory

The setting every recipe is trained in is a config file, ``conf/setting/<name>.yaml`` (default ``compare``;
``--quick``: ``compare_quick``): each job is ``metarl-train recipe=<recipe> +setting=<name> seed=<k>`` plus
``--override``s, so the comparison's sizes live in no Python list. ``compare`` is level 2 of the task (traces of
3-5 episodes), 150 GRPO steps (batch 64 = 8 problems x 8 samples), C=192, learning rate 2e-4, 100 held-out
problems, sampled pass@1 (4 samples per problem, T=1) every 15 steps. ``compare_long`` (``make results``) is the
powered comparison: level 3 (a search over ten pairs instead of six) with a warm start that keeps searching
longer, so C binds, 100 steps, 180 held-out problems, every 25 steps. The recipes: outcome_grpo, obj1_verify,
obj2_likelihood_progress, obj2_mc_progress and obj2_mc_progress_min (PURE's min-form credit). Regret with m=4.
On this project's 2-core CPU a ``compare_long`` seed takes about 20 min with 2 workers (an MC-progress job
~11 min, an outcome job ~5 min).

A comparison resumes from its output directory, and may be extended there by more ``--seeds`` or ``--recipes``
(every other setting must match). Jobs run seed by seed, so a comparison stopped early leaves whole seeds, and
``summary.json`` is rewritten after every job. ``--record FILE`` keeps every finished job in a file outside the
output directory too (``make results``: the committed ``docs/results/compare_long.json``), from which a later run,
on this machine or another, reuses them, whole seeds at a time (:func:`import_jobs`); each job records the CPU it
ran on, the commit it ran from and the warm start it trained from.

One job per (recipe, seed), ``--jobs`` at a time (one torch thread each), plus one ``initial`` job per seed
that evaluates the untrained policy the same way. A training job:

1. trains with ``metarl.trainer.run.run`` (``evaluate.every`` writes the held-out learning curve,
   sampled pass@1 at C/2 and C, to ``eval/curve.jsonl``; ``summary.json`` holds before/after);
2. runs ``metarl-eval`` on the final policy (``bf/``): greedy decoding (``pass@1``, n=1, temperature 0)
   and s1 budget forcing (``budget_forcing``: an early stop is replaced by the continuation ``<revise>``,
   an answer is forced at the budget) at budgets C and 2C, i.e. beyond the training cap;
3. estimates the normalised regret (MRT) of the greedy held-out traces at cap C: μ's success J_j after
   every episode from ``m`` forced answers (``MCProgress``), regret at C0 in {C/4, C/2, C}.

``DIR/runs/<recipe>/seed<k>/job.json`` holds a job's numbers (a finished job is not rerun, so an
interrupted comparison resumes), ``DIR/summary.json`` the settings, machine, every job and the
aggregate over seeds (95% CIs), which the printed table and ``results_page.py`` read.

Token efficiency (a target of docs/method.md §7): per seed, the target is the baseline's (``outcome_grpo``) final
held-out accuracy at C; a method's cost is the training tokens (TRL's prompt + completion count) at which
its learning curve first reaches the target, linearly interpolated between evaluations; the ratio divides
by the baseline's total training tokens. A method that never reaches the target is censored at its own
total (a lower bound, marked ``>``). From 6 seeds on, the verdict is decided by a distribution-free interval
of the median ratio, which censored seeds leave valid (:func:`verdict`).

Verdicts (``tables.verdict_table``): each dense recipe minus the baseline, paired by seed, in final held-out
accuracy at C/2 and C and in regret at each C0; ``better`` / ``worse`` when the 95% CI excludes 0, ``equivalent
within ±0.03`` when it lies inside ``tables.MARGIN``, else ``undecided`` with :func:`seeds_for_margin`, the seeds
the spread measured so far would need for a CI of ±0.03.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metarl.metrics import Interval, bootstrap_ci, mean_ci, median_ci
from metarl.utils import cpu_model
from tables import (BASELINE, CONTINUATION, INITIAL, MARGIN, TARGET_RATIO, accuracy_table,  # noqa: F401
                    efficiency_table, fmt_iv, forcing_table, markdown_table, verdict_table)

RECIPES: tuple[str, ...] = ("outcome_grpo", "obj1_verify", "obj2_likelihood_progress", "obj2_mc_progress",
                             "obj2_mc_progress_min")
# Relative cost of a job, to start a seed's slow ones first (keeps both workers busy at the end).
_COST = {"obj2_mc_progress": 3.0, "obj2_mc_progress_min": 3.0, "mrt_termination_baseline": 3.0,
         "obj2_likelihood_progress": 1.5, "obj1_verify": 1.0, "outcome_grpo": 1.0, INITIAL: 0.2}
# Settings that may differ when a comparison is resumed: more seeds or recipes add jobs, ``jobs`` is speed only.
_EXTENSIBLE = ("jobs", "seeds", "recipes")


@dataclass
class Settings:
    """Everything that defines a comparison (written to summary.json; the same settings reproduce it).

    The training setting is the config file ``conf/setting/<setting>.yaml`` plus ``overrides``; the fields from
    ``steps`` to ``batch`` are what that composes to (:func:`resolve`), recorded for the tables and the page."""

    recipes: list[str] = field(default_factory=lambda: list(RECIPES))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    setting: str = "compare"
    mc_m: int = 4
    jobs: int = 2
    quick: bool = False
    overrides: list[str] = field(default_factory=list)
    steps: int | None = None
    model: str | None = None
    cap: int | None = None
    eval_n: int | None = None
    eval_every: int | None = None
    eval_samples: int | None = None
    learning_rate: float | None = None
    batch: int | None = None
    warm_start: dict[str, Any] | None = None
    """The tiny policy's warm-start overrides (``model.tiny``) the setting composes to."""
    task: dict[str, Any] | None = None
    """The task (``task.task``, a ``_target_`` mapping) the setting composes to."""
    forcing: list[int] | None = None
    """Budgets of the test-time evaluation with metarl-eval (None: C and 2C); ``--forcing-budgets`` sets them where 2C
    does not fit the model's positions (the tiny policy has 512)."""

    @property
    def budgets(self) -> list[int]:
        """Greedy held-out budgets during training: C/2 and C."""
        return [max(1, self.cap // 2), self.cap]

    @property
    def forcing_budgets(self) -> list[int]:
        """Budgets of the test-time evaluation: ``forcing``, by default C and 2C (beyond the training cap)."""
        return list(self.forcing) if self.forcing else [self.cap, 2 * self.cap]

    @property
    def test_budgets(self) -> list[int]:
        """Budgets of the test-time token curve (sampled, as ``budgets``): C/4, C/2, 3C/4 and C."""
        return sorted({max(1, self.cap * k // 4) for k in (1, 2, 3, 4)})

    @property
    def regret_budgets(self) -> list[int]:
        """Budgets C0 of the normalised regret: C/4, C/2 and C."""
        return sorted({max(1, self.cap // 4), max(1, self.cap // 2), self.cap})


QUICK = dict(seeds=[0], setting="compare_quick", mc_m=2)


def setting_config(s: Settings):
    """The training config of the comparison's setting: the baseline recipe with the setting file and overrides."""
    return _compose("train", [f"recipe={BASELINE}", f"+setting={s.setting}", *s.overrides])


def resolve(s: Settings) -> Settings:
    """Fill the recorded sizes, warm start and task from the composed setting (:func:`setting_config`)."""
    cfg = setting_config(s)
    s.task, s.warm_start = task_and_warm_start(cfg)
    s.steps, s.model, s.cap = int(cfg.trainer.max_steps), str(cfg.model.name_or_path), int(cfg.budget.cap)
    s.eval_n, s.eval_every = int(cfg.evaluate.n), int(cfg.evaluate.every)
    s.eval_samples, s.learning_rate = int(cfg.evaluate.samples), float(cfg.trainer.learning_rate)
    s.batch = int(cfg.trainer.per_device_train_batch_size)
    return s


def task_and_warm_start(train_cfg) -> tuple[dict[str, Any], dict[str, Any]]:
    """A training config's task (``task.task``) and tiny-policy warm-start overrides (``model.tiny``), as plain data."""
    from omegaconf import OmegaConf

    return (OmegaConf.to_container(train_cfg.task.task, resolve=True),
            OmegaConf.to_container(train_cfg.model.tiny, resolve=True))


# --------------------------------------------------------------------------------------------------
# One job (runs in a worker process)
# --------------------------------------------------------------------------------------------------


def job_dir(out: Path, recipe: str, seed: int) -> Path:
    return Path(out) / "runs" / recipe / f"seed{seed}"


def _compose(config: str, overrides: list[str]):
    from metarl.config import compose

    return compose(config, overrides)


def train_overrides(s: Settings, recipe: str, seed: int, run_dir: Path) -> list[str]:
    """One training run: the recipe, the comparison's setting file (sizes, caps, evaluation), the job's identity
    (name, run directory, seed) and the comparison's extra overrides."""
    recipe_name = BASELINE if recipe == INITIAL else recipe
    return [f"recipe={recipe_name}", f"+setting={s.setting}", f"name={recipe}", f"run_dir={run_dir}",
            f"seed={seed}", *s.overrides]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def hydra_literal(value: Any) -> str:
    """``value`` (plain data: a mapping with string keys, list, number, bool, None or string) in Hydra's override
    grammar; strings are quoted, so they come back exactly (quotes, backslashes and ``${`` included).

    >>> hydra_literal({"_target_": "metarl.tasks.SubsetSumTask", "difficulty": 3, "levels": None})
    "{_target_:'metarl.tasks.SubsetSumTask',difficulty:3,levels:null}"
    """
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(hydra_literal(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    # Hydra reads a backslash literally except before a quote or at the end, and interpolates ${...}
    text = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, str(value)).replace("${", "\\${")
    return "'" + text.replace("'", "\\'") + "'"


def setting_of(train_cfg) -> list[str]:
    """The training setting's task and tiny-policy recipe as overrides of metarl-eval, which composes its own
    config: the test-time evaluation then sees the same problems (level, split) and, for ``initial``, the same
    warm-started policy as training."""
    task, tiny = task_and_warm_start(train_cfg)
    return [f"task.task={hydra_literal(task)}", f"++model.tiny={hydra_literal(tiny)}"]


def _budget_forcing(s: Settings, seed: int, model_path: str, out_dir: Path, train_cfg) -> dict[str, Any]:
    """Greedy and budget-forced accuracy at C and 2C with metarl-eval: ``{strategy: {budget: {...}}}``."""
    from metarl.eval.run import run as run_eval

    cfg = _compose("eval", [*setting_of(train_cfg), f"model={s.model}", f"model.name_or_path={model_path}",
                            f"run_dir={out_dir}",
                            "overwrite=true", f"seed={seed}", f"data_seed={seed}", f"task.n_test={s.eval_n}",
                            f"n_questions={s.eval_n}", "threads=1", "n=1", "temperature=0",
                            f"budgets=[{','.join(map(str, s.forcing_budgets))}]",
                            "strategies=[pass_at_k,budget_forcing]", "pass_at_k.k=[1]",
                            f"budget_forcing.continuation='{CONTINUATION}'", "difficulty.enabled=false"])
    run_eval(cfg)
    out: dict[str, Any] = {}
    for r in _read_jsonl(out_dir / "eval" / "results.jsonl"):
        name = "greedy" if r["strategy"] == "pass@1" else r["strategy"]
        cell = out.setdefault(name, {}).setdefault(str(r["budget"]), {"correct": [], "tokens": []})
        cell["correct"].append(float(r["correct"]))
        cell["tokens"].append(float(r["tokens"]))
    for cells in out.values():
        for c in cells.values():
            c["accuracy"] = float(np.mean(c["correct"]))
            c["mean_tokens"] = float(np.mean(c["tokens"]))
    return out


def _load(cfg, model_path: str):
    """The run's plan (scorer, held-out rows, suffix) and the policy at ``model_path``."""
    from metarl.models.loading import load_model_and_tokenizer
    from metarl.trainer.run import validate

    plan = validate(cfg)
    model_cfg = {k: v for k, v in dict(cfg.model).items() if k not in ("lora", "name_or_path")}
    model, tok = load_model_and_tokenizer(name_or_path=model_path, **model_cfg)
    model.eval()
    plan.scorer.tokenizer = tok
    return plan, model, tok


def _heldout(s: Settings, plan, model, tok, cap: int, seed: int, sampled: bool = True) -> tuple[dict[str, Any], list[Any]]:
    """Held-out evaluation at ``cap``: sampled pass@1 (``s.eval_samples`` per problem at temperature 1, as
    metarl-train's with this comparison's overrides) or greedy; the summary cell and the traces."""
    from metarl.engine.hf import HFBackend
    from metarl.eval.heldout import evaluate_policy

    kw = dict(samples=s.eval_samples, temperature=1.0, seed=seed) if sampled else {}
    res = evaluate_policy(HFBackend(model, tok), plan.test_rows[: s.eval_n], cap=cap, scorer=plan.scorer,
                          return_traces=True, **kw)
    traces = res.pop("traces")
    res["correct"] = res.pop("per_question")
    return _cell(res), traces


def _regret(s: Settings, seed: int, plan, model, tok, traces: list[Any]) -> dict[str, Any]:
    """Normalised regret of greedy held-out traces (cap C), J from ``s.mc_m`` forced answers per prefix."""
    from metarl.engine import Engine
    from metarl.engine.hf import HFBackend
    from metarl.rewards.progress import MCProgress

    mc = MCProgress(m=s.mc_m, extract="context", seed=seed)
    mc.success_rates(traces, Engine(HFBackend(model, tok), plan.prover), plan.scorer.grader,
                     plan.scorer.extract_answer)
    return {"m": s.mc_m, **_regret_of(s, traces),
            "J_init": float(np.mean([t.meta.get("J_init", 0.0) for t in traces]))}


def _regret_of(s: Settings, traces: list[Any]) -> dict[str, Any]:
    """Per question and mean, the normalised regret at every C0 of traces whose episodes carry J
    (``info["J"]``, ``meta["J_init"]``)."""
    from metarl.metrics import curve_from_trace, information_gain_curve, normalized_regret

    per_budget: dict[str, list[float]] = {str(b): [] for b in s.regret_budgets}
    for t in traces:
        curve = curve_from_trace(t, unit="tokens") or information_gain_curve([], [], t.meta.get("J_init"))
        for b in s.regret_budgets:
            per_budget[str(b)].append(normalized_regret(curve, b))
    return {"per_question": per_budget, "mean": {b: float(np.mean(v)) for b, v in per_budget.items()}}


def _calibration(s: Settings, plan, traces: list[Any]) -> dict[str, Any]:
    """μ's calibration (``metarl.calibration.calibrate``) on the greedy held-out traces that :func:`_regret` scored
    with ``s.mc_m`` forced answers per prefix: the final policy's own meta-prover, checked as metarl-calibrate does."""
    from metarl.calibration import calibrate, grader_correctness

    cal = calibrate(traces, episode_correct=grader_correctness(plan.scorer.grader, plan.scorer.extract_answer),
                    m=s.mc_m)
    va = cal.verify_after_correct
    return {"m": s.mc_m, "n_traces": cal.n_traces, "correlation": cal.correlation, "auroc": cal.auroc,
            "verify_after_correct": va.mean, "verify_after_correct_n": va.n, "J_last_correct": cal.J_last_correct,
            "J_last_wrong": cal.J_last_wrong, "verdict": cal.verdict}


def _exact_regret(s: Settings, plan, traces: list[Any]) -> dict[str, Any] | None:
    """Normalised regret of the greedy held-out traces with J exact (``ExactProgress``, rule ``last``: the forced
    answer the warm start was taught), on copies of the traces; None when the task cannot compute J."""
    import copy

    from metarl.rewards.exact import ExactProgress, implements_exact_success

    if not implements_exact_success(plan.task):
        return None
    copies = copy.deepcopy(traces)
    ExactProgress(plan.task, rule="last").score_batch(copies)
    return {"rule": "last", **_regret_of(s, copies)}


def _cell(res: dict[str, Any]) -> dict[str, Any]:
    keep = ("accuracy", "correct", "tokens", "verification_accuracy", "cap_fraction", "episodes_per_trace", "n")
    return {k: res.get(k) for k in keep}


def learning_curve(summary: dict[str, Any], curve_rows: list[dict[str, Any]], steps: int,
                   final_tokens: float) -> dict[str, list[dict[str, Any]]]:
    """Per budget: held-out points ``{step, train_tokens, accuracy, tokens, verification_accuracy}`` from
    step 0 (``before``, 0 training tokens) through the curve to the final evaluation (``after``)."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for phase, step, toks in (("before", 0, 0.0), ("after", steps, final_tokens)):
        for b, r in (summary.get(phase) or {}).items():
            out.setdefault(str(b), {})[step] = {"step": step, "train_tokens": float(toks), "accuracy": r["accuracy"],
                                                "tokens": r["tokens"],
                                                "verification_accuracy": r.get("verification_accuracy")}
    for r in curve_rows:
        out.setdefault(str(r["budget"]), {}).setdefault(int(r["step"]), {
            "step": int(r["step"]), "train_tokens": float(r["train_tokens"]), "accuracy": r["accuracy"],
            "tokens": r["tokens"], "verification_accuracy": r.get("verification_accuracy")})
    return {b: [pts[k] for k in sorted(pts)] for b, pts in out.items()}


def run_job(settings: dict[str, Any], out: str, recipe: str, seed: int) -> dict[str, Any]:
    """Train (unless ``initial``), evaluate and write ``job.json``; stdout/stderr go to ``log.txt``."""
    s = Settings(**settings)
    jd = job_dir(Path(out), recipe, seed)
    jd.mkdir(parents=True, exist_ok=True)
    log = open(jd / "log.txt", "a")
    saved = os.dup(1), os.dup(2)
    sys.stdout.flush(), sys.stderr.flush()
    os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
    try:
        return _run_job(s, jd, recipe, seed)
    finally:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(saved[0], 1), os.dup2(saved[1], 2)
        log.close()


def _run_job(s: Settings, jd: Path, recipe: str, seed: int) -> dict[str, Any]:
    import torch

    from metarl.trainer.run import run as run_train

    torch.set_num_threads(1)
    t0 = time.time()
    run_dir = jd / "train"
    overrides = train_overrides(s, recipe, seed, run_dir)
    result: dict[str, Any] = {"recipe": recipe, "seed": seed, "cap": s.cap, "overrides": overrides}
    if recipe == INITIAL:
        cfg = _compose("train", overrides)
        model_path = s.model
        result.update(steps=0, train_tokens=0.0)
    else:
        if not (run_dir / "summary.json").exists():
            resume = (run_dir / "metrics.jsonl").exists()
            run_train(_compose("train", overrides + (["trainer.resume=true"] if resume else [])))
        cfg = _compose("train", overrides + ["trainer.resume=true"])  # the plan of the finished run
        summary = json.loads((run_dir / "summary.json").read_text())
        metrics = _read_jsonl(run_dir / "metrics.jsonl")
        final_tokens = float(max((m.get("num_tokens", 0.0) for m in metrics), default=0.0))
        curve = learning_curve(summary, _read_jsonl(run_dir / "eval" / "curve.jsonl"), int(summary["steps"]),
                               final_tokens)
        model_path = str(run_dir / "final")
        result.update(steps=int(summary["steps"]), train_tokens=final_tokens, train_seconds=summary.get("train_seconds"),
                      before={str(b): _cell(r) for b, r in summary["before"].items()},
                      after={str(b): _cell(r) for b, r in summary["after"].items()}, curve=curve,
                      train_accuracy=[m.get("metarl/outcome_accuracy") for m in metrics])
    phases = {"train": round(time.time() - t0, 1)}
    t1 = time.time()
    result["forcing"] = _budget_forcing(s, seed, model_path, jd / "bf", cfg)
    phases["forcing"], t1 = round(time.time() - t1, 1), time.time()
    plan, model, tok = _load(cfg, model_path)
    if recipe == INITIAL:  # the untrained policy, evaluated as metarl-train evaluates after training
        result["after"] = {str(b): _heldout(s, plan, model, tok, b, seed)[0] for b in s.budgets}
    # accuracy against test-time tokens: the final sampled evaluations plus the test budgets they lack
    result["test_time"] = {str(b): result["after"].get(str(b)) or _heldout(s, plan, model, tok, b, seed)[0]
                           for b in s.test_budgets}
    phases["test_time"], t1 = round(time.time() - t1, 1), time.time()
    _, traces = _heldout(s, plan, model, tok, s.cap, seed, sampled=False)  # greedy traces for the regret
    result["regret"] = _regret(s, seed, plan, model, tok, traces)
    result["calibration"] = _calibration(s, plan, traces)
    exact = _exact_regret(s, plan, traces)
    if exact is not None:
        result["regret_exact"] = exact
    phases["regret"] = round(time.time() - t1, 1)
    result["phase_seconds"] = phases
    result["seconds"] = round(time.time() - t0, 1)
    result["machine"], result["commit"], result["warm_start"] = cpu_model(), source_commit(), warm_start_sha(s)
    (jd / "job.json").write_text(json.dumps(result))
    return result


# --------------------------------------------------------------------------------------------------
# Aggregation over seeds (pure functions: tested in tests/test_compare_learning.py)
# --------------------------------------------------------------------------------------------------


def tokens_to_reach(points: Sequence[tuple[float, float]], target: float) -> float | None:
    """Training tokens at which a learning curve ``[(train_tokens, accuracy), ...]`` first reaches ``target``.

    Points are taken in order of tokens; between the last point below the target and the first at or
    above it, the curve is linear, so the crossing is interpolated. None when no point reaches the target.

    >>> tokens_to_reach([(0, 0.1), (100, 0.3), (200, 0.5)], 0.4)
    150.0
    """
    pts = sorted((float(t), float(a)) for t, a in points)
    for i, (t, a) in enumerate(pts):
        if a >= target:
            if i == 0:
                return t
            t0, a0 = pts[i - 1]
            return t0 + (target - a0) / (a - a0) * (t - t0)
    return None


def interval(per_seed: Sequence[Sequence[float]], seed: int = 0) -> Interval:
    """Mean and 95% CI of a quantity measured on units (questions) of each seed's run.

    Several seeds: the mean of each seed, then a Student-t interval over seeds (seeds are the
    replications). One seed: a percentile bootstrap over its units. Empty: NaN.
    """
    runs = [np.asarray([v for v in r if v is not None], dtype=float) for r in per_seed]
    runs = [r for r in runs if r.size]
    if not runs:
        return Interval(math.nan, math.nan, math.nan, 0)
    if len(runs) == 1:
        return bootstrap_ci(runs[0], seed=seed)
    return mean_ci([r.mean() for r in runs])


def verdict(ratios: Sequence[float], reached: Sequence[bool], ci: Interval, target: float = TARGET_RATIO,
            median: Interval | None = None) -> str:
    """Whether a method meets the token-efficiency target, judged over seeds.

    With a distribution-free interval of the median ratio (``median``: :func:`metarl.metrics.median_ci`, from
    6 seeds on), that interval decides: ``meets`` when its upper end is <= target, ``misses`` when its lower end
    is above it. It stays valid when seeds never reached the baseline's accuracy (their ratios are lower
    bounds), where a mean of lower bounds does not. With fewer seeds, the t-interval of the mean ratio (``ci``)
    decides: ``meets`` when every seed reached the target and the CI's upper end is <= target, ``misses`` when
    the CI's lower end is above it (censored ratios are lower bounds, so this holds).
    ``inconclusive`` otherwise (the interval contains the target, or there is none).
    """
    if not ratios:
        return "inconclusive"
    if median is not None and math.isfinite(median.low):
        if median.high <= target:
            return "meets"
        return "misses" if median.low > target else "inconclusive"
    if len(ratios) >= 2 and math.isfinite(ci.low):
        if all(reached) and ci.high <= target:
            return "meets"
        if ci.low > target:
            return "misses"
        return "inconclusive"
    return "inconclusive"


def token_efficiency(jobs: Sequence[dict[str, Any]], budget: int, baseline: str = BASELINE,
                     target: float = TARGET_RATIO) -> dict[str, Any]:
    """Per recipe: per seed ``{target_accuracy, tokens, baseline_tokens, ratio, reached}`` and the CI of the ratio.

    ``target_accuracy`` is the baseline's final held-out accuracy at ``budget`` for that seed; ``tokens`` the
    method's training tokens to first reach it (its own total, censored, when it never does);
    ``ratio = tokens / baseline total training tokens``.
    """
    b = str(budget)
    base = {j["seed"]: j for j in jobs if j["recipe"] == baseline}
    out: dict[str, Any] = {}
    order = list(RECIPES)
    for recipe in sorted(dict.fromkeys(j["recipe"] for j in jobs if j["recipe"] != INITIAL),
                         key=lambda r: (order.index(r) if r in order else len(order), r)):
        seeds = []
        for j in sorted((j for j in jobs if j["recipe"] == recipe), key=lambda j: j["seed"]):
            bj = base.get(j["seed"])
            if bj is None or b not in j.get("curve", {}) or b not in bj.get("curve", {}):
                continue
            goal = float(bj["after"][b]["accuracy"])
            pts = [(p["train_tokens"], p["accuracy"]) for p in j["curve"][b]]
            reach = tokens_to_reach(pts, goal)
            total_base = float(bj["train_tokens"])
            tokens = float(j["train_tokens"]) if reach is None else reach
            start = float(j["curve"][b][0]["accuracy"])
            seeds.append({"seed": j["seed"], "target_accuracy": goal, "tokens": tokens, "reached": reach is not None,
                          "baseline_tokens": total_base, "ratio": tokens / total_base if total_base > 0 else math.nan,
                          "trivial": start >= goal})
        finite = [x for x in seeds if math.isfinite(x["ratio"])]
        ratios, reached = [x["ratio"] for x in finite], [x["reached"] for x in finite]
        none = Interval(math.nan, math.nan, math.nan, 0)
        ci = mean_ci(ratios) if ratios else none
        med = median_ci(ratios, reached) if ratios else none
        out[recipe] = {"seeds": seeds, "ratio": asdict(ci), "median": censored_median(med, ratios, reached),
                       "n_reached": sum(x["reached"] for x in seeds), "n_trivial": sum(x["trivial"] for x in seeds),
                       "verdict": verdict(ratios, reached, ci, target, med)}
    return out


def censored_median(med: Interval, values: Sequence[float], exact: Sequence[bool]) -> dict[str, Any]:
    """``med`` as a dict, with ``lower_bound``: whether the median of the values as given only bounds the true
    median from below -- some censored value (a seed that never reached the target) lies at or below it, and its
    true value could lie above.

    >>> censored_median(Interval(0.61, math.nan, math.nan, 2), [0.5, 0.72], [False, False])["lower_bound"]
    True
    >>> censored_median(Interval(0.6, math.nan, math.nan, 3), [0.5, 0.6, 2.0], [True, True, False])["lower_bound"]
    False
    """
    return {**asdict(med), "lower_bound": any(not e and v <= med.mean for v, e in zip(values, exact))}


def _iv(iv: Interval) -> dict[str, float]:
    return {"mean": iv.mean, "low": iv.low, "high": iv.high, "n": iv.n}


def seeds_for_margin(diffs: Sequence[float], margin: float = MARGIN, confidence: float = 0.95,
                     most: int = 1000) -> int | None:
    """The fewest seeds ``n`` whose Student-t interval ``t_{(1+conf)/2, n-1} * s / sqrt(n)`` is at most ``margin``
    wide on each side, ``s`` being the standard deviation of the paired differences measured so far (the power
    a comparison would need at the spread it showed). None with fewer than two differences or above ``most``.

    >>> seeds_for_margin([0.0, 0.06, -0.06, 0.02, -0.02])  # s = 0.0447; n=11: 2.228 s/3.317 = 0.0300 (just over)
    12
    >>> seeds_for_margin([0.01, -0.01])  # s = 0.0141; n=3: 4.303 s/1.732 = 0.035; n=4: 3.182 s/2 = 0.0225
    4
    """
    from scipy.stats import t as student_t

    v = np.asarray(diffs, dtype=float)
    if v.size < 2:
        return None
    sd = float(v.std(ddof=1))
    for n in range(2, most + 1):
        if student_t.ppf((1 + confidence) / 2, n - 1) * sd / math.sqrt(n) <= margin:
            return n
    return None


def per_question(job: dict[str, Any], metric: str, b: str) -> list[float] | None:
    """A job's per-question final held-out correctness (``accuracy``) or normalised regret of its greedy traces
    (``regret``) at budget ``b``; None when the job has none there."""
    if metric == "accuracy":
        v = job.get("after", {}).get(b, {}).get("correct")
    elif metric in ("regret", "regret_exact"):
        v = job.get(metric, {}).get("per_question", {}).get(b)
    else:
        raise ValueError(f"metric must be accuracy, regret or regret_exact, got {metric!r}")
    return [float(x) for x in v] if v else None


def paired_difference(jobs: Sequence[dict[str, Any]], recipe: str, budget: int,
                      baseline: str = BASELINE, metric: str = "accuracy") -> dict[str, Any]:
    """A recipe's final ``metric`` (the mean over questions of :func:`per_question`) minus the baseline's, paired
    by seed (same data order, sampling and held-out problems): mean and 95% CI (Student-t over seeds; one seed: a
    bootstrap over the paired per-question differences), the per-seed differences and :func:`seeds_for_margin`."""
    b = str(budget)
    runs = {(j["recipe"], j["seed"]): v for j in jobs if j["recipe"] in (recipe, baseline)
            and (v := per_question(j, metric, b)) is not None}
    seeds = sorted(sd for (r, sd) in runs if r == recipe and (baseline, sd) in runs)
    d = paired({sd: float(np.mean(runs[recipe, sd])) for sd in seeds},
               {sd: float(np.mean(runs[baseline, sd])) for sd in seeds})
    if len(seeds) == 1:  # one seed: bootstrap over questions of the paired per-question differences
        d.update(_iv(bootstrap_ci(np.asarray(runs[recipe, seeds[0]]) - np.asarray(runs[baseline, seeds[0]]))))
    return d


def accuracy_at(points: Sequence[tuple[float, float]], tokens: float) -> float:
    """The accuracy of an accuracy-against-tokens curve ``[(tokens, accuracy), ...]`` at ``tokens``: linear between
    points (in order of tokens), flat beyond the ends (a policy that stops early spends no more with a larger budget).

    >>> accuracy_at([(40, 0.1), (80, 0.3)], 60), accuracy_at([(40, 0.1), (80, 0.3)], 100), accuracy_at([(40, 0.1)], 10)
    (0.2, 0.3, 0.1)
    """
    pts = sorted((float(t), float(a)) for t, a in points)
    if not pts:
        raise ValueError("accuracy_at needs at least one point")
    if tokens <= pts[0][0]:
        return pts[0][1]
    for (t0, a0), (t1, a1) in zip(pts, pts[1:]):
        if tokens <= t1:
            return a0 if t1 == t0 else a0 + (tokens - t0) / (t1 - t0) * (a1 - a0)
    return pts[-1][1]


def learning_auc(job: dict[str, Any], budget: int) -> float | None:
    """The area under a job's held-out learning curve at ``budget`` over training steps, divided by the steps
    (the mean accuracy over training, trapezoid rule): a training-efficiency measure with a valid null (a copy of
    the baseline differs from it by 0 in expectation), unlike "the first step that reaches the target".

    >>> learning_auc({"curve": {"8": [{"step": 0, "accuracy": 0.1}, {"step": 50, "accuracy": 0.3},
    ...                                {"step": 100, "accuracy": 0.3}]}}, 8)
    0.25
    """
    pts = sorted((int(p["step"]), float(p["accuracy"])) for p in job.get("curve", {}).get(str(budget), []))
    if len(pts) < 2 or pts[-1][0] <= pts[0][0]:
        return None
    area = sum((s1 - s0) * (a0 + a1) / 2 for (s0, a0), (s1, a1) in zip(pts, pts[1:]))
    return area / (pts[-1][0] - pts[0][0])


def curve_point(job: dict[str, Any], budget: int) -> tuple[float, float] | None:
    """A job's (mean test-time tokens, accuracy) at ``budget`` from its test-time curve (or its final evaluation)."""
    c = job.get("test_time", {}).get(str(budget)) or job.get("after", {}).get(str(budget))
    return None if not c else (float(c["tokens"]), float(c["accuracy"]))


def paired(values: dict[int, float], base: dict[int, float]) -> dict[str, Any]:
    """``values[seed] − base[seed]`` over the seeds both have (finite): mean, Student-t 95% CI over seeds (none
    from one seed), the per-seed differences and :func:`seeds_for_margin`.

    >>> d = paired({0: 0.75, 1: 0.5, 2: 0.4}, {0: 0.5, 1: 0.375})
    >>> d["per_seed"], d["mean"], d["n"]
    ({0: 0.25, 1: 0.125}, 0.1875, 2)
    """
    pairs = {sd: float(v) - float(base[sd]) for sd, v in sorted(values.items())
             if sd in base and math.isfinite(v) and math.isfinite(base[sd])}
    iv = _iv(mean_ci(list(pairs.values())) if len(pairs) > 1 else
             Interval(next(iter(pairs.values()), math.nan), math.nan, math.nan, len(pairs)))
    return {**iv, "per_seed": pairs, "seeds_for_margin": seeds_for_margin(list(pairs.values()))}


def paired_scalar(jobs: Sequence[dict[str, Any]], recipe: str, value: Callable[[dict[str, Any]], float | None],
                  baseline: str = BASELINE) -> dict[str, Any]:
    """``value(job) − value(baseline's job)``, paired by seed (:func:`paired`; as :func:`paired_difference`, for
    one number per job)."""
    def by_seed(name: str) -> dict[int, float]:
        return {j["seed"]: v for j in jobs if j["recipe"] == name and (v := value(j)) is not None}

    return paired(by_seed(recipe), by_seed(baseline))


def forcing_vs_greedy(js: Sequence[dict[str, Any]], cap: int) -> dict[str, Any]:
    """Budget forcing to the largest forcing budget minus greedy decoding at C, one recipe's jobs paired by seed
    (:func:`paired`: each seed's accuracy difference on its own held-out problems), with ``budget`` the forcing
    budget.

    >>> j = {"seed": 0, "forcing": {"greedy": {"8": {"correct": [1.0, 0.0]}},
    ...                             "budget_forcing": {"8": {"correct": [0.0, 0.0]}, "16": {"correct": [1.0, 1.0]}}}}
    >>> d = forcing_vs_greedy([j], 8); d["budget"], d["per_seed"]
    ('16', {0: 0.5})
    """
    two = max({b for j in js for b in j.get("forcing", {}).get("budget_forcing", {})}, key=int)

    def acc(j: dict[str, Any], strat: str, b: str) -> float | None:
        c = j.get("forcing", {}).get(strat, {}).get(b)
        return float(np.mean(c["correct"])) if c and c["correct"] else None

    forced = {j["seed"]: a for j in js if (a := acc(j, "budget_forcing", two)) is not None}
    greedy = {j["seed"]: a for j in js if (a := acc(j, "greedy", str(cap))) is not None}
    return {**paired(forced, greedy), "budget": two}


def efficiency_at_test_time(jobs: Sequence[dict[str, Any]], cap: int, baseline: str = BASELINE) -> dict[str, Any]:
    """Test-time token efficiency as MRT measures it, per recipe, paired with the baseline by seed.

    Each job has an accuracy-against-tokens curve: sampled held-out accuracy and mean thinking tokens at the
    test budgets C/4 … C (``test_time``). Per seed, the baseline's point at C gives the target accuracy a_b and
    its tokens n_b:

    - ``at_matched_tokens``: the recipe's accuracy at n_b tokens (:func:`accuracy_at`) minus a_b: paired, with a
      Student-t CI over seeds; the verdict (±MARGIN) is read from it;
    - ``ratio``: the test-time tokens at which the recipe's curve first reaches a_b (:func:`tokens_to_reach`),
      divided by n_b; a seed that never reaches it is censored at its largest tokens (``reached`` false), and the
      median's interval from order statistics (:func:`metarl.metrics.median_ci`) stays valid. MRT reports ~1.5×
      fewer tokens (a ratio near 0.67) at equal accuracy.
    """
    base = {j["seed"]: j for j in jobs if j["recipe"] == baseline}
    out: dict[str, Any] = {}
    for recipe in dict.fromkeys(j["recipe"] for j in jobs if j["recipe"] != INITIAL):
        seeds = []
        for j in sorted((j for j in jobs if j["recipe"] == recipe), key=lambda j: j["seed"]):
            bj = base.get(j["seed"])
            goal = bj and curve_point(bj, cap)
            pts = [p for b in j.get("test_time", {}) if (p := curve_point(j, int(b)))]
            if not goal or not pts:
                continue
            n_b, a_b = goal
            reach = tokens_to_reach(pts, a_b)
            tokens = max(t for t, _ in pts) if reach is None else reach
            seeds.append({"seed": j["seed"], "target_accuracy": a_b, "baseline_tokens": n_b,
                          "accuracy_at_baseline_tokens": accuracy_at(pts, n_b), "tokens": tokens,
                          "reached": reach is not None, "ratio": tokens / n_b if n_b > 0 else math.nan})
        diff = None if recipe == baseline else paired({x["seed"]: x["accuracy_at_baseline_tokens"] for x in seeds},
                                                      {x["seed"]: x["target_accuracy"] for x in seeds})
        finite = [x for x in seeds if math.isfinite(x["ratio"])]
        ratios, reached = [x["ratio"] for x in finite], [x["reached"] for x in finite]
        none = Interval(math.nan, math.nan, math.nan, 0)
        out[recipe] = {"seeds": seeds, "at_matched_tokens": diff,
                       "ratio": asdict(mean_ci(ratios) if len(ratios) > 1 else none),
                       "median": censored_median(median_ci(ratios, reached) if ratios else none, ratios, reached),
                       "n_reached": sum(reached)}
    return out


def calibration_summary(js: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """μ's calibration on a recipe's final policies over seeds: the correlation of Ĵ_last with the outcome and
    the mean ΔĴ of a verify after a correct attempt (95% CIs over seeds), and how many seeds' μ was informative."""
    cals = [j["calibration"] for j in js if j.get("calibration")]
    num = lambda k: [[float(c[k])] for c in cals if c.get(k) is not None and math.isfinite(float(c[k]))]  # noqa: E731
    return {"n": len(cals), "informative": sum(c["verdict"] == "informative" for c in cals),
            "correlation": _iv(interval(num("correlation"))),
            "verify_after_correct": _iv(interval(num("verify_after_correct")))}


def aggregate(jobs: Sequence[dict[str, Any]], cap: int) -> dict[str, Any]:
    """Every reported number with a 95% CI over seeds, per recipe (``initial`` included where it applies)."""
    order = [INITIAL, *RECIPES]
    recipes = sorted(dict.fromkeys(j["recipe"] for j in jobs),
                     key=lambda r: (order.index(r) if r in order else len(order), r))
    agg: dict[str, Any] = {"cap": cap, "recipes": recipes, "per_recipe": {}}
    for recipe in recipes:
        js = sorted((j for j in jobs if j["recipe"] == recipe), key=lambda j: j["seed"])
        r: dict[str, Any] = {"seeds": [j["seed"] for j in js], "accuracy": {}, "test_tokens": {},
                             "forcing": {}, "regret": {}}
        budgets = sorted({b for j in js for b in j.get("after", {})}, key=int)
        for b in budgets:
            cells = [j["after"][b] for j in js if b in j.get("after", {})]
            r["accuracy"][b] = _iv(interval([c["correct"] for c in cells]))
            r["test_tokens"][b] = _iv(interval([[c["tokens"]] for c in cells]))
        vs = [[j["after"][str(cap)].get("verification_accuracy")] for j in js if str(cap) in j.get("after", {})]
        r["verification_accuracy"] = _iv(interval(vs))
        for key in ("episodes_per_trace", "cap_fraction"):  # how long the streams are and how often C binds
            r[key] = _iv(interval([[j["after"][str(cap)].get(key)] for j in js if str(cap) in j.get("after", {})]))
        for strat in sorted({k for j in js for k in j.get("forcing", {})}):
            for b in sorted({b for j in js for b in j["forcing"].get(strat, {})}, key=int):
                cells = [j["forcing"][strat][b] for j in js if b in j["forcing"].get(strat, {})]
                r["forcing"].setdefault(strat, {})[b] = {"accuracy": _iv(interval([c["correct"] for c in cells])),
                                                         "tokens": _iv(interval([c["tokens"] for c in cells]))}
        if str(cap) in r["forcing"].get("greedy", {}) and r["forcing"].get("budget_forcing"):
            r["forcing_vs_greedy"] = forcing_vs_greedy(js, cap)
        for b in sorted({b for j in js for b in j.get("regret", {}).get("per_question", {})}, key=int):
            r["regret"][b] = _iv(interval([j["regret"]["per_question"].get(b, []) for j in js]))
        exact = [j for j in js if j.get("regret_exact")]
        if exact:
            r["regret_exact"] = {b: _iv(interval([j["regret_exact"]["per_question"].get(b, []) for j in exact]))
                                 for b in sorted({b for j in exact for b in j["regret_exact"]["per_question"]},
                                                 key=int)}
        tt = sorted({b for j in js for b in j.get("test_time", {})}, key=int)
        if tt:
            r["test_time"] = {b: {"accuracy": _iv(interval([j["test_time"][b]["correct"] for j in js
                                                            if b in j.get("test_time", {})])),
                                  "tokens": _iv(interval([[j["test_time"][b]["tokens"]] for j in js
                                                          if b in j.get("test_time", {})]))} for b in tt}
        if any(j.get("calibration") for j in js):
            r["calibration"] = calibration_summary(js)
        aucs = [[a] for j in js if (a := learning_auc(j, cap)) is not None]
        if aucs:
            r["learning_auc"] = _iv(interval(aucs))
        if recipe not in (INITIAL, BASELINE) and any(j["recipe"] == BASELINE for j in jobs):
            r["vs_baseline_by_budget"] = {b: paired_difference(jobs, recipe, int(b)) for b in budgets}
            r["vs_baseline"] = r["vs_baseline_by_budget"].get(str(cap)) or paired_difference(jobs, recipe, cap)
            r["regret_vs_baseline"] = {b: paired_difference(jobs, recipe, int(b), metric="regret")
                                       for b in r["regret"]}
            if "regret_exact" in r:
                r["regret_exact_vs_baseline"] = {b: paired_difference(jobs, recipe, int(b), metric="regret_exact")
                                                 for b in r["regret_exact"]}
            if "learning_auc" in r:
                r["learning_auc_vs_baseline"] = paired_scalar(jobs, recipe, lambda j: learning_auc(j, cap))
        if recipe != INITIAL and any(j["recipe"] == INITIAL for j in jobs):
            r["vs_initial"] = paired_difference(jobs, recipe, cap, baseline=INITIAL)
        r["train_tokens"] = _iv(interval([[j.get("train_tokens", 0.0)] for j in js]))
        agg["per_recipe"][recipe] = r
    if any(j["recipe"] == BASELINE for j in jobs):
        agg["token_efficiency"] = token_efficiency(jobs, cap)
        if any(j.get("test_time") for j in jobs):
            agg["test_time_efficiency"] = efficiency_at_test_time(jobs, cap)
    return agg


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------




# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def warm_start_sha(s: Settings) -> str | None:
    """The SHA-256 (first 16 hex digits) of the tiny policy's weights the comparison starts from (None for
    ``random-tiny``): the warm start is built on each machine, and its weights differ between CPUs."""
    import hashlib

    if s.model != "tiny":
        return None
    from metarl.models.warmstart import tiny_policy_path

    weights = sorted(tiny_policy_path(**(s.warm_start or {})).glob("*.safetensors"))
    h = hashlib.sha256()
    for w in weights:
        h.update(w.read_bytes())
    return h.hexdigest()[:16] if weights else None


def source_commit() -> str | None:
    """The git commit of the checkout the comparison runs from (``+`` when it has uncommitted changes), or None."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+" if dirty else "")


def machine() -> dict[str, Any]:
    import torch
    import transformers
    import trl

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Settings]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="output directory (jobs resume from it)")
    p.add_argument("--quick", action="store_true", help=f"smoke check: {QUICK} (< 5 min)")
    p.add_argument("--setting", help="the training setting, conf/setting/NAME.yaml (default compare; quick: "
                                     "compare_quick)")
    p.add_argument("--seeds", help="comma-separated seeds (default 0,1,2; quick: 0)")
    p.add_argument("--jobs", type=int, default=2, help="parallel jobs, one torch thread each (default 2)")
    p.add_argument("--recipes", help=f"comma-separated recipes (default {','.join(RECIPES)})")
    p.add_argument("--mc-m", type=int, help="forced answers per prefix for regret (default 4; quick: 2)")
    p.add_argument("--forcing-budgets", metavar="B1,B2",
                   help="budgets of the greedy / budget-forcing evaluation with metarl-eval (default C,2C); e.g. "
                        "320,440 where 2C does not fit the model's positions")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Hydra override for every training run (repeatable), e.g. trainer.max_steps=300 "
                        "or model=random-tiny")
    p.add_argument("--record", metavar="FILE",
                   help="a file of finished jobs kept outside --out (make results: the committed "
                        "docs/results/compare_long.json): the jobs it holds are reused, each new one is added")
    p.add_argument("--page", action="store_true", help="then write docs/results.md (bench/results_page.py)")
    a = p.parse_args(argv)
    s = Settings(**(QUICK if a.quick else {}), quick=a.quick, jobs=a.jobs, overrides=list(a.override))
    if a.seeds:
        try:
            s.seeds = [int(x) for x in a.seeds.split(",") if x.strip()]
        except ValueError:
            p.error(f"--seeds {a.seeds!r}: give comma-separated whole numbers, e.g. --seeds 0,1,2")
    if a.recipes:
        s.recipes = [x.strip() for x in a.recipes.split(",") if x.strip()]
    if a.setting:
        s.setting = a.setting
    if a.mc_m is not None:
        s.mc_m = a.mc_m
    if a.forcing_budgets:
        try:
            s.forcing = [int(x) for x in a.forcing_budgets.split(",") if x.strip()]
        except ValueError:
            p.error(f"--forcing-budgets {a.forcing_budgets!r}: give comma-separated whole numbers, e.g. 320,440")
        if not s.forcing or min(s.forcing) < 1:
            p.error(f"--forcing-budgets {a.forcing_budgets!r}: give positive budgets, e.g. 320,440")
    for key in ("mc_m", "jobs"):
        if getattr(s, key) < 1:
            p.error(f"--{key.replace('_', '-')}={getattr(s, key)} must be >= 1")
    try:
        resolve(s)
    except ValueError as e:  # metarl's ConfigError: the setting or an override does not compose
        p.error(f"--setting {s.setting} with the overrides {s.overrides}: {e}")
    if s.eval_every < 1:
        p.error(f"the setting's evaluate.every={s.eval_every} must be >= 1 (the learning curves need it)")
    if not s.seeds:
        p.error("--seeds is empty; e.g. --seeds 0,1,2")
    if BASELINE not in s.recipes:
        p.error(f"--recipes must include the baseline {BASELINE} (token efficiency is measured against it)")
    from metarl.config import conf_dir

    known = {q.stem for q in (Path(conf_dir()) / "recipe").glob("*.yaml")}
    unknown = [r for r in s.recipes if r not in known]
    if unknown:
        p.error(f"--recipes: unknown {unknown}; recipes/ has {sorted(known)}")
    if s.model not in ("tiny", "random-tiny"):
        p.error(f"model={s.model!r}: the comparison trains the tiny policy (tiny) or random-tiny "
                f"(--override model=random-tiny)")
    return a, s


def plan_jobs(s: Settings, out: Path) -> tuple[list[tuple[str, int]], list[dict[str, Any]]]:
    """The jobs still to run, as ``(recipe, seed)``, and the finished ones (their job.json) under ``out``.

    Jobs run seed by seed, in the order of ``s.seeds``, the slow recipes of a seed first: a comparison stopped
    early leaves whole seeds, which is what a paired comparison can use."""
    todo, done = [], []
    for seed in s.seeds:
        for recipe in [INITIAL, *s.recipes]:
            f = job_dir(out, recipe, seed) / "job.json"
            if f.exists():
                done.append(json.loads(f.read_text()))
            else:
                todo.append((recipe, seed))
    todo.sort(key=lambda rs: (s.seeds.index(rs[1]), -_COST.get(rs[0], 1.0)))
    return todo, done


def same_comparison(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether recorded settings ``old`` and ``new`` describe one comparison, so that ``new`` may resume ``old``'s
    output directory: everything but the seeds, the recipes and the number of workers must agree."""
    return ({k: v for k, v in old.items() if k not in _EXTENSIBLE}
            == {k: v for k, v in new.items() if k not in _EXTENSIBLE})


def import_jobs(record: Path, s: Settings, out: Path) -> int:
    """Write the finished jobs recorded in ``record`` (:func:`write_record`, or a comparison's summary.json) into
    ``out`` as ``job.json`` files, so that they are reused instead of run again. The recorded settings must
    describe the same comparison (:func:`same_comparison`). Returns how many jobs were written.

    Seeds are reused whole: a seed's jobs are imported only when the record holds every job of it that ``s`` asks
    for (``initial`` and each recipe), all trained from one warm start (``warm_start``, the policy's SHA-256), and
    ``out`` holds none of that seed from another. The comparison pairs recipes within a seed, and the warm start is
    built anew on each machine, with weights that differ between CPUs: a pair across two warm starts would
    measure the machines. A seed that is not whole in the record is run here, all of it."""
    data = json.loads(Path(record).read_text())
    old = data.get("settings") or {}
    if not same_comparison(old, asdict(s)):
        raise SystemExit(f"--record {record} holds a comparison with other settings ({old}); only "
                         f"{', '.join(_EXTENSIBLE)} may differ")
    by_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for job in data.get("jobs", []):
        by_seed.setdefault(int(job["seed"]), {})[job["recipe"]] = job
    wanted = [INITIAL, *s.recipes]
    n = 0
    for seed in s.seeds:
        held = by_seed.get(seed, {})
        if any(r not in held for r in wanted):
            continue
        starts = {held[r].get("warm_start") for r in wanted}
        local = [json.loads(f.read_text()).get("warm_start") for r in wanted
                 if (f := job_dir(out, r, seed) / "job.json").exists()]
        if len(starts) != 1 or any(w not in starts for w in local):
            continue
        for r in wanted:
            f = job_dir(out, r, seed) / "job.json"
            if not f.exists():
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(json.dumps(held[r]))
                n += 1
    return n


def write_record(record: Path, s: Settings, jobs: Sequence[dict[str, Any]]) -> None:
    """Add ``jobs`` to the record file (settings and finished jobs, one per recipe and seed: a new job replaces an
    old one); the jobs of other seeds or recipes it already holds are kept. Written atomically."""
    record = Path(record)
    held = json.loads(record.read_text()).get("jobs", []) if record.exists() else []
    merged = {(j["recipe"], int(j["seed"])): j for j in [*held, *jobs]}
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_name(record.name + ".tmp")
    settings = json.dumps({k: v for k, v in asdict(s).items() if k not in _EXTENSIBLE}, default=float)
    lines = [json.dumps(merged[k], default=float) for k in sorted(merged, key=lambda rs: (rs[1], rs[0]))]
    tmp.write_text('{"settings": ' + settings + ',\n "jobs": [\n' + ",\n".join(lines) + "\n]}\n")  # a job a line
    os.replace(tmp, record)


def write_summary(s: Settings, out: Path, jobs: Sequence[dict[str, Any]], command: str, t0: float) -> dict[str, Any]:
    """``out/summary.json``: the settings, the machine, every finished job and their aggregate. Written after every
    job (atomically), so a comparison stopped at any point keeps a summary of what it finished."""
    summary = {"settings": asdict(s), "command": command, "machine": machine(),
               "wall_seconds": round(time.time() - t0, 1), "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "jobs": list(jobs), "aggregate": aggregate(jobs, s.cap)}
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=float))
    os.replace(tmp, out / "summary.json")
    return summary


def run_all(s: Settings, out: Path, on_done: Callable[[list[dict[str, Any]]], Any] | None = None
            ) -> list[dict[str, Any]]:
    """Run (or reuse) every job, calling ``on_done(finished jobs)`` after each; a failed job is reported and left
    out, the others go on."""
    import multiprocessing as mp

    todo, done = plan_jobs(s, out)
    if done:
        print(f"[compare] reusing {len(done)} finished jobs from {out}", flush=True)
    settings = asdict(s)
    with ProcessPoolExecutor(max_workers=s.jobs, mp_context=mp.get_context("spawn"), max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_job, settings, str(out), r, sd): (r, sd) for r, sd in todo}
        for f in as_completed(futures):
            r, sd = futures[f]
            try:
                res = f.result()
            except Exception as e:  # noqa: BLE001 - one failed job must not lose the others
                print(f"[compare] FAILED {r} seed {sd}: {type(e).__name__}: {e} (log: "
                      f"{job_dir(out, r, sd) / 'log.txt'})", flush=True)
                continue
            done.append(res)
            acc = res.get("after", {}).get(str(s.cap), {}).get("accuracy", math.nan)
            print(f"[compare] done {r} seed {sd}: held-out accuracy @ {s.cap} = {acc:.3f}, {res['seconds']:.0f} s",
                  flush=True)
            if on_done is not None:
                on_done(done)
    return done


def lock_output(out: Path):
    """An exclusive lock on ``out`` for this process's lifetime (the returned open file holds it): a second
    comparison on the same output directory would train the same jobs into the same run directories."""
    import fcntl

    f = open(out / ".lock", "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise SystemExit(f"{out} is in use by another comparison (it holds {out / '.lock'}); wait for it or stop it "
                         f"first") from None
    return f


def stop_workers_on_sigterm() -> None:
    """On SIGTERM (``kill PID``, a batch scheduler), end the job processes too: pool workers are separate processes
    that would otherwise train on, unseen, and collide with the next run on the same output directory. Ctrl-C
    already reaches them (the whole process group gets SIGINT)."""
    import multiprocessing as mp
    import signal

    def stop(signum, frame):
        for child in mp.active_children():
            child.terminate()
        raise SystemExit(f"[compare] stopped by signal {signum}; finished jobs are kept (rerun to resume)")

    signal.signal(signal.SIGTERM, stop)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    a, s = parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    lock = lock_output(out)  # noqa: F841 - held until the process ends
    stop_workers_on_sigterm()
    prev = out / "summary.json"
    if prev.exists():
        old = json.loads(prev.read_text()).get("settings", {})
        if old and not same_comparison(old, asdict(s)):
            raise SystemExit(f"{out} holds a comparison with other settings ({old}); choose a new --out (more "
                             f"seeds or recipes may be added to it: {', '.join(_EXTENSIBLE)} may differ)")
    (out / "settings.json").write_text(json.dumps(asdict(s), indent=1))
    if a.record and Path(a.record).exists():
        print(f"[compare] {import_jobs(Path(a.record), s, out)} finished jobs reused from {a.record}", flush=True)
    t0 = time.time()
    n_jobs = len(s.seeds) * (len(s.recipes) + 1)
    print(f"[compare] {len(s.recipes)} recipes x {len(s.seeds)} seeds (+ initial policy), {s.steps} steps, C={s.cap}, "
          f"model={s.model}, {s.jobs} workers: {n_jobs} jobs -> {out}", flush=True)
    if s.model == "tiny":  # build (or find) the cached tiny policy once, before the workers need it
        from metarl.models.warmstart import tiny_policy_path

        print(f"[compare] tiny policy: {tiny_policy_path(**(s.warm_start or {}))}", flush=True)
    command = "python " + " ".join(shlex.quote(x) for x in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])

    def on_done(done: list[dict[str, Any]]) -> None:
        try:
            write_summary(s, out, done, command, t0)
            if a.record:
                write_record(Path(a.record), s, done)
        except Exception as e:  # noqa: BLE001 - the jobs go on; the final summary below says what failed
            print(f"[compare] could not write the summary so far: {type(e).__name__}: {e}", flush=True)

    jobs = run_all(s, out, on_done=on_done)
    summary = write_summary(s, out, jobs, command, t0)
    if a.record:  # also when every job was reused: the record then holds them all
        write_record(Path(a.record), s, jobs)
    agg = summary["aggregate"]
    print("\n" + accuracy_table(agg) + "\n\n" + verdict_table(agg) + "\n\n" + efficiency_table(agg) + "\n\n"
          + forcing_table(agg), flush=True)
    print(f"\n[compare] {len(jobs)}/{n_jobs} jobs in {summary['wall_seconds']:.0f} s; wrote {prev}", flush=True)
    if a.page:
        import results_page

        results_page.main([str(out)])
    return summary


if __name__ == "__main__":
    main()
