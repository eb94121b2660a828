"""Calibration of the built-in policies' meta-prover, exact progress beside it, and the credit options on the same traces.

    python bench/calibration.py                                  # writes docs/results_calibration.md (a few min)
    python bench/calibration.py --quick --docs runs/calib-quick   # smoke check (small sizes, another directory)

For each built-in policy (the demo's warm start, the learning comparison's level-3 warm start, and the SmolLM2
reasoner when its build is cached) this samples held-out traces and estimates Ĵ after every episode with m forced
answers, through the sampling path of ``metarl-calibrate`` (:func:`metarl.cli.calibrate.sample`), then:

1. **Calibration of Ĵ** (:func:`metarl.calibration.calibrate`): correlation and AUROC of Ĵ_last with the outcome,
   mean Ĵ_last on correct / wrong traces, ΔĴ per episode kind, verify after a correct / wrong attempt, signal to
   noise, the verdict and its thresholds, a reliability diagram.
2. **Exact J beside Ĵ**: the same traces scored by the task's exact J (:class:`metarl.rewards.exact.ExactProgress`,
   an oracle: the ideal meta-prover of the task's rule on these prefixes). Its calibration (the same statistics with
   J in place of Ĵ), and Ĵ against J over every prefix: mean |Ĵ − J|, Pearson r, and the share of prefixes with
   |Ĵ − J| <= 2·sqrt(J(1−J)/m) (what an unbiased m-sample estimator of J meets at least ~95% of the time).
3. **Credit options side by side** (:func:`credit_comparison`): traces grouped by problem (``samples`` per problem,
   as GRPO groups them), episode rewards the progress ΔĴ (then the exact ΔJ), α = 1, dense weight 1, the episodes'
   token spans. Per option of :func:`metarl.credit.build_advantages`: the dense part of the advantage is the
   advantage minus the same option's advantage with dense rewards off; reported are the Pearson correlation across
   traces of the dense part at the first token with the outcome-only advantage there, and Var(dense part) /
   Var(advantage) over every token of the batch (above 1: the dense part works against the outcome part).

Writes ``DOCS/results_calibration.md`` and ``DOCS/results/calibration_*`` (CSV behind every PNG, and
``calibration_run.json`` with every statistic), and prints the command, the CPU and the timings.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from metarl.calibration import Calibration, Thresholds, calibrate, pearson  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

#: The credit options compared: (name, build_advantages keyword arguments); termination baselines get J_{j-1}.
CREDIT_OPTIONS: list[tuple[str, dict[str, Any]]] = [
    ("mrt", {"normalize": "mrt"}),
    ("separate", {"normalize": "separate"}),
    ("per_kind", {"normalize": "per_kind"}),
    ("prime", {"normalize": "prime"}),
    ("pure (credit=min)", {"normalize": "pure", "credit": "min"}),
    ("termination", {"baseline": "termination"}),
    ("mrt_termination", {"baseline": "mrt_termination"}),
]

REASONER_SYSTEM = "Pick numbers that add up to the target. Think in <think> </think>, then answer in \\boxed{}."


@dataclass
class Policy:
    """A built-in policy to calibrate: its ``metarl-calibrate`` overrides."""

    key: str
    label: str
    overrides: list[str]
    temperature: float = 1.0


POLICIES = [
    Policy("demo", "demo warm start (`model=tiny_split40`, level 2, its 40% held-out split, C=192)",
           ["model=tiny_split40", "+task.task.test_fraction=0.4", "budget.cap=192"]),
    Policy("compare_l3", "learning comparison's level-3 warm start (`model=tiny`, difficulty 3, C=192)",
           ["model=tiny", "+model.tiny.difficulty=3", "+model.tiny.max_attempts=10", "+model.tiny.p_continue=0.65",
            "task.task.difficulty=3", "budget.cap=192"]),
    Policy("reasoner", "SmolLM2 reasoner (`model=smollm2-reasoner`, R1 format, MRT's meta-prover, C=256)",
           ["model=smollm2-reasoner", "segmenter=mrt", "prover=r1", "budget.cap=256",
            f"task.system_prompt='{REASONER_SYSTEM}'"], temperature=0.7),
]


# --------------------------------------------------------------------------------------------------
# Credit options side by side (pure: no model)
# --------------------------------------------------------------------------------------------------


@dataclass
class CreditBatch:
    """What :func:`metarl.credit.build_advantages` needs from a batch of scored traces."""

    rewards: list[list[float]]          # dense episode rewards (ΔĴ or ΔJ)
    outcomes: list[float]
    spans: list[list[tuple[int, int]]]  # episode token spans into the completion tokens
    groups: list[Hashable]              # the prompt group of each trace
    kinds: list[list[str]]
    termination: list[list[float]]      # J_{j-1} at the start of every episode
    num_tokens: int = 0

    def __post_init__(self) -> None:
        if not self.num_tokens:
            self.num_tokens = max([1, *(s[-1][1] for s in self.spans if s)])


def _var(x: np.ndarray) -> float:
    return float(np.var(x)) if x.size else math.nan


def credit_comparison(batch: CreditBatch, options: Sequence[tuple[str, dict[str, Any]]] = CREDIT_OPTIONS,
                      alpha: float = 1.0, dense_weight: float = 1.0) -> list[dict[str, Any]]:
    """Per credit option: ``{"option", "n_traces", "n_tokens", "corr_first", "corr_reason", "var_share",
    "dense_first_std", "outcome_first_std"}``.

    A = the option's per-token advantage with the dense rewards, A₀ = the same option with dense rewards off
    (``dense_weight=0``: for the termination baselines A₀ keeps the baseline −J_{j−1}), D = A − A₀ its dense part.
    ``corr_first``: Pearson r across traces (those with at least one episode) of D and A₀ at each trace's first
    token; ``var_share``: Var(D) / Var(A) over every token inside an episode span (population variances);
    ``dense_first_std`` / ``outcome_first_std``: the standard deviations of D and A₀ at the first tokens.
    """
    import torch

    from metarl.credit import TERMINATION_BASELINES, build_advantages, spans_to_token_index

    index = spans_to_token_index(batch.spans, batch.num_tokens)
    inside = (index >= 0).numpy()
    have = [i for i, s in enumerate(batch.spans) if s]
    first = [batch.spans[i][0][0] for i in have]
    rows = []
    for name, kw in options:
        common = dict(alpha=alpha, episode_kinds=batch.kinds, **kw)
        if kw.get("baseline") in TERMINATION_BASELINES:
            common["termination_values"] = batch.termination
        full = build_advantages(batch.rewards, batch.outcomes, batch.spans, batch.groups, batch.num_tokens,
                                dense_weight=dense_weight, dtype=torch.float64, **common).numpy()
        off = build_advantages(batch.rewards, batch.outcomes, batch.spans, batch.groups, batch.num_tokens,
                               dense_weight=0.0, dtype=torch.float64, **common).numpy()
        dense = full - off
        d_first = [float(dense[i, t]) for i, t in zip(have, first)]
        o_first = [float(off[i, t]) for i, t in zip(have, first)]
        r, reason = pearson(d_first, o_first) if d_first else (math.nan, "no trace with an episode")
        if reason and reason.startswith("the outcome has no spread"):
            reason = "the outcome-only advantage has no spread at the first token"
        elif reason and reason.startswith("Ĵ_last has no spread"):
            reason = "the dense part is constant at the first token"
        v_all = _var(full[inside])
        rows.append({"option": name, "n_traces": len(have), "n_tokens": int(inside.sum()), "corr_first": r,
                     "corr_reason": reason,
                     "var_share": _var(dense[inside]) / v_all if v_all > 0 else math.nan,
                     "dense_first_std": float(np.std(d_first)) if d_first else math.nan,
                     "outcome_first_std": float(np.std(o_first)) if o_first else math.nan})
    return rows


def credit_batch(traces: Sequence[Any], exact: bool = False) -> CreditBatch:
    """The credit inputs of scored traces: progress rewards from Ĵ (``exact``: from the exact J), grouped by prompt."""
    rewards, outcomes, spans, groups, kinds, term = [], [], [], [], [], []
    for t in traces:
        js = exact_js(t) if exact else [t.meta["J_init"]] + [e.info["J"] for e in t.episodes]
        rewards.append([b - a for a, b in zip(js, js[1:])])
        outcomes.append(float(t.outcome))
        spans.append([(int(e.token_start), int(e.token_end)) for e in t.episodes])
        groups.append(t.prompt)
        kinds.append([str(e.kind) for e in t.episodes])
        term.append(js[:-1])
    n = max([1, *(len(t.completion_ids or []) for t in traces), *(s[-1][1] for s in spans if s)])
    return CreditBatch(rewards, outcomes, spans, groups, kinds, term, n)


# --------------------------------------------------------------------------------------------------
# Exact J beside Ĵ
# --------------------------------------------------------------------------------------------------


def exact_js(trace: Any) -> list[float]:
    return [trace.meta["J_init_exact"]] + [e.info["J_exact"] for e in trace.episodes]


def with_exact_j(traces: Sequence[Any]) -> list[Any]:
    """Copies of ``traces`` whose J fields hold the exact J (standard error 0)."""
    out = []
    for t in traces:
        c = copy.deepcopy(t)
        c.meta["J_init"], c.meta["J_init_se"] = c.meta["J_init_exact"], 0.0
        for e in c.episodes:
            e.info["J"], e.info["J_se"] = e.info["J_exact"], 0.0
        out.append(c)
    return out


def hat_vs_exact(traces: Sequence[Any], m: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ĵ against J over every prefix (the prompt alone and after every episode) and one row per prefix."""
    rows = []
    for ti, t in enumerate(traces):
        hats = [t.meta["J_init"]] + [e.info["J"] for e in t.episodes]
        for k, (h, j) in enumerate(zip(hats, exact_js(t))):
            se = math.sqrt(j * (1 - j) / m)
            rows.append({"trace": ti, "prefix": k - 1, "kind": "prompt" if k == 0 else t.episodes[k - 1].kind,
                         "J_hat": h, "J_exact": j, "se_true": se, "within_2se": int(abs(h - j) <= 2 * se + 1e-12),
                         "outcome": t.outcome})
    h = [r["J_hat"] for r in rows]
    j = [r["J_exact"] for r in rows]
    r, reason = pearson(h, j)
    stats = {"n_prefixes": len(rows), "mean_abs_diff": float(np.mean(np.abs(np.subtract(h, j)))) if rows else math.nan,
             "mean_diff": float(np.mean(np.subtract(h, j))) if rows else math.nan, "correlation": r,
             "correlation_reason": reason, "within_2se": float(np.mean([x["within_2se"] for x in rows])) if rows
             else math.nan, "mean_J_hat": float(np.mean(h)) if rows else math.nan,
             "mean_J_exact": float(np.mean(j)) if rows else math.nan}
    return stats, rows


# --------------------------------------------------------------------------------------------------
# One policy
# --------------------------------------------------------------------------------------------------


@dataclass
class Sizes:
    problems: int = 180
    samples: int = 8
    m: int = 8
    seed: int = 0
    bins: int = 5
    #: the exact J's meta-prover (``ExactProgress(rule=...)``): "last" is the tiny warm starts' own forced-answer rule
    rule: str = "last"


def reasoner_cached() -> tuple[bool, str]:
    """Whether the SmolLM2 reasoner's default build is in the cache, and where it would be."""
    from metarl.models.reasoner import make_recipe, policy_dir

    path = policy_dir(make_recipe())
    return path.is_dir(), str(path)


def run_policy(p: Policy, sizes: Sizes) -> tuple[dict[str, Any], list[Any], Any]:
    """Sample and score one policy's traces (metarl-calibrate's sampling path) and compute every statistic."""
    from metarl.cli.calibrate import check, sample
    from metarl.config import build_task_of, compose
    from metarl.rewards.exact import ExactProgress

    overrides = [*p.overrides, f"problems={sizes.problems}", f"samples={sizes.samples}", f"m={sizes.m}",
                 f"seed={sizes.seed}", f"bins={sizes.bins}", f"temperature={p.temperature}", "threads=1"]
    cfg = compose("calibrate", overrides)
    opts = check(cfg)
    t0 = time.perf_counter()
    traces, correct, info = sample(cfg, opts)
    t1 = time.perf_counter()
    ExactProgress(build_task_of(cfg), record_j=False, rule=sizes.rule).success_rates(traces)
    t2 = time.perf_counter()
    th: Thresholds = opts["thresholds"]
    cal = calibrate(traces, th, correct, bins=sizes.bins, m=sizes.m)
    exact_traces = with_exact_j(traces)
    cal_exact = calibrate(exact_traces, th, correct, bins=sizes.bins, m=None)
    versus, prefix_rows = hat_vs_exact(traces, sizes.m)
    vac = [r for r in episode_rows(traces, correct) if r["kind"] == "verify" and r["attempt_correct"] == 1]
    versus["verify_after_correct"] = {"n": len(vac), "exact_drops": sum(r["delta_J_exact"] < 0 for r in vac),
                                      "hat_drops": sum(r["delta_J_hat"] < 0 for r in vac)}
    credit_hat = credit_comparison(credit_batch(traces))
    credit_exact = credit_comparison(credit_batch(traces, exact=True))
    t3 = time.perf_counter()
    metarl_cmd = "metarl-calibrate " + " ".join(shlex.quote(o) for o in overrides if o != "threads=1")
    result = {"key": p.key, "label": p.label, "overrides": overrides, "equivalent_command": metarl_cmd,
              "sampling": info, "calibration": cal, "calibration_exact": cal_exact, "hat_vs_exact": versus,
              "credit": {"J_hat": credit_hat, "J_exact": credit_exact},
              "seconds": {**info["seconds"], "exact_J": round(t2 - t1, 2), "statistics": round(t3 - t2, 2),
                          "total": round(t3 - t0, 2)},
              "prefix_rows": prefix_rows}
    return result, traces, correct


# --------------------------------------------------------------------------------------------------
# Outputs
# --------------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        w.writeheader()
        w.writerows(rows)


def _f(x: Any, spec: str = ".3f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return format(x, spec)


def episode_rows(traces: Sequence[Any], correct: Any = None) -> list[dict[str, Any]]:
    """One row per episode: Ĵ and exact J before / after it, their Δ, the outcome and the checked attempt."""
    from metarl.calibration import episode_rows as cal_rows

    out = []
    hat_rows = cal_rows(traces, correct)
    exact_rows = cal_rows(with_exact_j(traces), correct)
    for h, x in zip(hat_rows, exact_rows):
        out.append({"trace": h["trace"], "group": traces[h["trace"]].prompt.split("\n")[0][:60], "episode": h["episode"],
                    "kind": h["kind"], "J_hat_prev": h["J_prev"], "J_hat": h["J"], "delta_J_hat": h["delta_J"],
                    "J_exact_prev": x["J_prev"], "J_exact": x["J"], "delta_J_exact": x["delta_J"],
                    "outcome": h["outcome"],
                    "attempt_correct": "" if h["attempt_correct"] is None else int(h["attempt_correct"])})
    return out


def plot_reliability(res: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    """Reliability diagram of Ĵ_last and exact J_last against the observed success rate; returns its CSV rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    fig, ax = plt.subplots(figsize=(5.8, 5.0))
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="calibrated (diagonal)")
    for source, cal, color, marker in (("J_hat", res["calibration"], "C0", "o"),
                                       ("J_exact", res["calibration_exact"], "C1", "s")):
        full = [b for b in cal.bins if b.n]
        total = max(1, sum(b.n for b in full))
        for b in cal.bins:
            rows.append({"source": source, "lo": b.lo, "hi": b.hi, "n": b.n, "mean_J_last": b.mean_J,
                         "success_rate": b.success_rate})
        name = "Ĵ (m=%d)" % cal.m if source == "J_hat" else "exact J (oracle)"
        ax.plot([b.mean_J for b in full], [b.success_rate for b in full], "-", color=color, lw=1.1)
        ax.scatter([b.mean_J for b in full], [b.success_rate for b in full], s=[25 + 350 * b.n / total for b in full],
                   color=color, marker=marker, zorder=3, alpha=0.8,
                   label=f"{name}: r = {_f(cal.correlation, '.2f')}, AUROC = {_f(cal.auroc, '.2f')}")
        for b in full:
            ax.annotate(f"{b.n}", (b.mean_J, b.success_rate), textcoords="offset points", xytext=(6, -11), fontsize=7,
                        color=color)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("J after the last episode (bin mean; 5 equal-width bins)")
    ax.set_ylabel("observed success rate")
    ax.set_title(f"{res['key']}: {res['calibration'].n_traces} held-out traces (marker size, label: count)",
                 fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return rows


def plot_hat_vs_exact(res: dict[str, Any], path: Path) -> None:
    """Ĵ against exact J over every prefix (jittered), coloured by what the prefix ends with."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["prefix_rows"]
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(5.8, 5.0))
    for kind in dict.fromkeys(r["kind"] for r in rows):
        sel = [r for r in rows if r["kind"] == kind]
        ax.scatter(np.array([r["J_exact"] for r in sel]) + rng.uniform(-0.012, 0.012, len(sel)),
                   np.array([r["J_hat"] for r in sel]) + rng.uniform(-0.012, 0.012, len(sel)), s=8, alpha=0.35,
                   label=f"after {kind}" if kind != "prompt" else "prompt alone")
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1)
    v = res["hat_vs_exact"]
    ax.set_xlabel("exact J (oracle)")
    ax.set_ylabel(f"Ĵ (m={res['calibration'].m} forced answers)")
    ax.set_title(f"{res['key']}: {v['n_prefixes']} prefixes; mean |Ĵ − J| = {_f(v['mean_abs_diff'])}, "
                 f"r = {_f(v['correlation'], '.2f')}", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_credit(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Two panels: corr(dense part, outcome-only advantage) at the first token and the dense variance share, per
    option, policy and source of J."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    options = list(dict.fromkeys(r["option"] for r in rows))
    series = list(dict.fromkeys((r["policy"], r["J"]) for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    width = 0.8 / max(1, len(series))
    for ax, key, label in ((axes[0], "corr_first", "corr(dense part, outcome-only advantage), first token"),
                           (axes[1], "var_share", "Var(dense part) / Var(advantage), all tokens")):
        for s_i, (pol, src) in enumerate(series):
            vals = []
            for o in options:
                r = next((x for x in rows if x["option"] == o and x["policy"] == pol and x["J"] == src), None)
                vals.append(math.nan if r is None or r[key] is None else r[key])
            ax.bar(np.arange(len(options)) + (s_i - (len(series) - 1) / 2) * width, vals, width,
                   label=f"{pol}, {'Ĵ' if src == 'J_hat' else 'exact J'}", hatch="" if src == "J_hat" else "//",
                   color=f"C{s_i // 2}", alpha=0.85 if src == "J_hat" else 0.5)
        ax.set_xticks(np.arange(len(options)), options, rotation=25, ha="right", fontsize=8)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(label, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_yscale("symlog", linthresh=1.0)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cal_summary_row(policy: str, source: str, cal: Calibration) -> dict[str, Any]:
    kinds = {f"dJ_{k}_mean": s.mean for k, s in cal.delta_by_kind.items()}
    kinds.update({f"dJ_{k}_n": s.n for k, s in cal.delta_by_kind.items()})
    return {"policy": policy, "J": source, "n_traces": cal.n_traces, "n_episodes": cal.n_episodes,
            "accuracy": cal.accuracy, "correlation": cal.correlation, "auroc": cal.auroc,
            "J_last_correct": cal.J_last_correct, "J_last_wrong": cal.J_last_wrong, "J_init": cal.J_init,
            "verify_after_correct_mean": cal.verify_after_correct.mean, "verify_after_correct_n":
            cal.verify_after_correct.n, "verify_after_wrong_mean": cal.verify_after_wrong.mean,
            "verify_after_wrong_n": cal.verify_after_wrong.n, "mc_se": cal.mc_se, "delta_se": cal.delta_se,
            "delta_std": cal.delta_std, "snr": cal.snr, "verdict": cal.verdict,
            "threshold_correlation": cal.thresholds.correlation,
            "threshold_verify_after_correct": cal.thresholds.verify_after_correct, **kinds}


def _cal_table(res: dict[str, Any]) -> list[str]:
    c, x = res["calibration"], res["calibration_exact"]
    kinds = list(dict.fromkeys([*c.delta_by_kind, *x.delta_by_kind]))

    def kind(cal: Calibration, k: str) -> str:
        s = cal.delta_by_kind.get(k)
        return "n/a" if s is None else f"{_f(s.mean, '+.3f')} (n={s.n})"

    def stat(s: Any) -> str:
        return f"{_f(s.mean, '+.3f')} (n={s.n})"

    lines = ["| statistic | Ĵ (m=%d) | exact J (oracle) |" % c.m, "|---|---|---|",
             f"| traces (episodes) | {c.n_traces} ({c.n_episodes}) | {x.n_traces} ({x.n_episodes}) |",
             f"| accuracy (outcome) | {_f(c.accuracy)} | {_f(x.accuracy)} |",
             f"| correlation of J_last with the outcome | **{_f(c.correlation)}** | **{_f(x.correlation)}** |",
             f"| AUROC of J_last | {_f(c.auroc)} | {_f(x.auroc)} |",
             f"| mean J_last on correct / wrong traces | {_f(c.J_last_correct)} / {_f(c.J_last_wrong)} | "
             f"{_f(x.J_last_correct)} / {_f(x.J_last_wrong)} |",
             f"| mean J of the prompt alone | {_f(c.J_init)} | {_f(x.J_init)} |"]
    lines += [f"| mean ΔJ of {k} episodes | {kind(c, k)} | {kind(x, k)} |" for k in kinds]
    lines += [f"| mean ΔJ of verify after a correct attempt | **{stat(c.verify_after_correct)}** | "
              f"**{stat(x.verify_after_correct)}** |",
              f"| mean ΔJ of verify after a wrong attempt | {stat(c.verify_after_wrong)} | "
              f"{stat(x.verify_after_wrong)} |",
              f"| Monte Carlo SE of J / of ΔJ | {_f(c.mc_se)} / {_f(c.delta_se)} | 0 (exact) |",
              f"| spread of ΔJ (std); signal to noise | {_f(c.delta_std)}; {_f(c.snr, '.2f')} | {_f(x.delta_std)}; "
              f"n/a (no noise) |",
              f"| verdict | **{c.verdict}** | **{x.verdict}** |"]
    return lines


def _reasons(cal: Calibration) -> str:
    parts = list(cal.reasons) + [f"note: {n}" for n in cal.notes]
    return "; ".join(parts) if parts else "none"


def write_page(result: dict[str, Any], docs: Path) -> Path:
    pols = result["policies"]
    th = result["thresholds"]
    machine = result["machine"]
    lines = [
        "# Meta-prover calibration, exact progress and the credit options on the built-in policies",
        "",
        "Generated by `bench/calibration.py`; do not edit by hand. Back to [results.md](results.md); the credit options "
        "are described in [method.md](method.md), the calibration statistics in `metarl/calibration.py` "
        "(`metarl-calibrate`), exact progress in `metarl/rewards/exact.py`.",
        "",
        "## How it was produced",
        "",
        "```",
        result["command"],
        "```",
        "",
        f"- machine: {machine['cpu']} ({machine['platform']}; Python {machine['python']}, torch {machine['torch']}, "
        f"{machine['torch_threads']} torch thread); run took **{result['seconds_total'] / 60:.1f} min** "
        f"({result['seconds_total']:.0f} s), finished {result['finished']}",
        f"- per policy: {result['sizes']['problems']} held-out problems × {result['sizes']['samples']} sampled "
        f"traces (temperature 1.0 for the tiny policies), Ĵ after every episode from m={result['sizes']['m']} forced "
        f"answers (`metarl.cli.calibrate.sample`, the sampling path of `metarl-calibrate`), seed "
        f"{result['sizes']['seed']}; exact J from the task's `exact_success` (`metarl.rewards.exact.ExactProgress`, "
        f"rule `{result['sizes'].get('rule', 'believed')}`: "
        + ("the last answer stated, the tiny warm starts' own forced-answer rule, so J is the exact value of what Ĵ "
           "estimates" if result['sizes'].get('rule') == "last" else
           "the answer last verified correct, else the pending one, else a guess among the candidates left")
        + ") on the same prefixes",
        f"- verdict thresholds (`metarl.calibration.Thresholds`): informative needs correlation of Ĵ_last with the "
        f"outcome ≥ {th['correlation']:g} and mean ΔĴ of verify after a correct attempt ≥ "
        f"{th['verify_after_correct']:+g}",
        "- each policy's `metarl-calibrate` equivalent is given in its section; timings per policy are in "
        "`results/calibration_run.json`",
        "",
        "## Summary",
        "",
        "| policy | accuracy | corr(Ĵ_last, outcome) | AUROC | verify after correct ΔĴ | verdict (Ĵ) | "
        "corr(J_last, outcome), exact | verify after correct ΔJ, exact | verdict (exact J) | mean \\|Ĵ − J\\| | "
        "corr(Ĵ, J) | within 2 SE |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in pols:
        c, x, v = r["calibration"], r["calibration_exact"], r["hat_vs_exact"]
        lines.append(f"| {r['key']} | {_f(c.accuracy)} | {_f(c.correlation)} | {_f(c.auroc)} | "
                     f"{_f(c.verify_after_correct.mean, '+.3f')} | {c.verdict} | {_f(x.correlation)} | "
                     f"{_f(x.verify_after_correct.mean, '+.3f')} | {x.verdict} | {_f(v['mean_abs_diff'])} | "
                     f"{_f(v['correlation'])} | {_f(v['within_2se'])} |")
    for skip in result["not_measured"]:
        lines.append(f"| {skip['key']} | not measured | | | | | | | | | | |")
    lines += [""]
    for skip in result["not_measured"]:
        lines += [f"**{skip['key']} not measured**: {skip['why']} To measure it: `{skip['command']}` (its "
                  f"calibration alone), or `python bench/calibration.py` once the build is cached.", ""]
    for r in pols:
        c, x, v = r["calibration"], r["calibration_exact"], r["hat_vs_exact"]
        s = r["sampling"]
        lines += [
            f"## {r['key']}: {r['label']}",
            "",
            f"`{r['equivalent_command']}`: {s['problems']} problems × {s['samples']} samples, accuracy "
            f"{_f(s['accuracy'])}, {_f(s['episodes_per_trace'], '.2f')} episodes per trace; "
            f"{r['seconds']['total']:.0f} s (load {s['seconds']['load']:.0f}, sample {s['seconds']['sample']:.0f}, "
            f"Ĵ {s['seconds']['estimate_J']:.0f}, exact J {r['seconds']['exact_J']:.1f}, statistics "
            f"{r['seconds']['statistics']:.1f}).",
            "",
            *_cal_table(r),
            "",
            f"Reasons (Ĵ): {_reasons(c)}.",
            "",
            f"Reasons (exact J; the messages name Ĵ, read the exact J): {_reasons(x)}.",
            "",
            f"Ĵ against exact J over {v['n_prefixes']} prefixes (the prompt alone and after every episode): mean "
            f"|Ĵ − J| = {_f(v['mean_abs_diff'])} (mean Ĵ − J = {_f(v['mean_diff'], '+.3f')}; mean Ĵ {_f(v['mean_J_hat'])}, "
            f"mean J {_f(v['mean_J_exact'])}), Pearson r = {_f(v['correlation'])}"
            + (f" ({v['correlation_reason']})" if v["correlation_reason"] else "")
            + f", share of prefixes with |Ĵ − J| ≤ 2·sqrt(J(1−J)/m) = {_f(v['within_2se'])} (an unbiased m-sample "
            "estimator of J meets this on at least ~95% of prefixes; at J = 0 or 1 only Ĵ = J does).",
            "",
            f"Of the {v['verify_after_correct']['n']} verify episodes after a correct attempt, exact J falls after "
            f"{v['verify_after_correct']['exact_drops']} and Ĵ after {v['verify_after_correct']['hat_drops']} "
            + ("(under the \"last\" rule a verification cannot change J: a drop of Ĵ there is a copying error)."
               if result['sizes'].get('rule') == "last" else
               "(the \"believed\" rule follows the verdict: where J falls the policy rejected its correct attempt)."),
            "",
            f"![reliability {r['key']}](results/calibration_{r['key']}.png) "
            f"![Ĵ vs J {r['key']}](results/calibration_{r['key']}_jhat_vs_j.png)",
            "",
            f"Data: [calibration_{r['key']}_bins.csv](results/calibration_{r['key']}_bins.csv) (reliability "
            f"diagram), [calibration_{r['key']}_prefixes.csv](results/calibration_{r['key']}_prefixes.csv) (Ĵ and J "
            f"per prefix), [calibration_{r['key']}_episodes.csv](results/calibration_{r['key']}_episodes.csv) (one "
            "row per episode: Ĵ and J before and after, the checked attempt's correctness).",
            "",
        ]
    lines += [
        "## Credit options on the same traces",
        "",
        "The traces of each policy, grouped by problem (the samples of one problem form a group, as in GRPO); "
        "episode rewards the progress ΔĴ (rows `Ĵ`) or the exact ΔJ (rows `exact J`), α = 1, dense weight 1, "
        "`scale_rewards=group`, the episodes' token spans (no separate stop step); termination baselines get "
        "J_{j−1} from the same source. For each option of `metarl.credit.build_advantages`, the dense part "
        "D = A − A₀ is its advantage minus the same option with dense rewards off (`dense_weight=0`; for the "
        "termination baselines A₀ = (α·r − J_{j−1}) / std keeps the baseline). **corr** is the Pearson correlation "
        "across traces of D and A₀ at each trace's first token (does the dense credit agree with the outcome's?); "
        "**Var share** is Var(D) / Var(A) over every token in an episode (above 1: the dense part and the outcome "
        "part pull against each other). The std columns are of D and A₀ at the first token.",
        "",
        "| policy | J | option | corr(D, A₀) first token | Var(D) / Var(A) | std D first | std A₀ first |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["credit_rows"]:
        corr = _f(row["corr_first"]) if row["corr_reason"] is None else f"n/a ({row['corr_reason']})"
        lines.append(f"| {row['policy']} | {'Ĵ' if row['J'] == 'J_hat' else 'exact J'} | {row['option']} | {corr} | "
                     f"{_f(row['var_share'])} | {_f(row['dense_first_std'])} | {_f(row['outcome_first_std'])} |")
    lines += ["", "![credit options](results/calibration_credit.png)", "",
              "Data: [calibration_credit.csv](results/calibration_credit.csv); every calibration statistic: "
              "[calibration_summary.csv](results/calibration_summary.csv) and "
              "[calibration_run.json](results/calibration_run.json).", ""]
    page = docs / "results_calibration.md"
    page.write_text("\n".join(lines), encoding="utf-8")
    return page


def _plain(obj: Any) -> Any:
    from metarl.calibration import json_safe

    if isinstance(obj, Calibration):
        return json_safe(obj.to_dict())
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items() if k != "prefix_rows"}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return json_safe(obj)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--docs", default="docs", help="where results_calibration.md and results/ go (default docs)")
    p.add_argument("--problems", type=int, default=180,
                   help="held-out problems per policy (default 180; level 3 holds out 183)")
    p.add_argument("--samples", type=int, default=8,
                   help="sampled traces per problem, one credit group (default 8, as the demo trains)")
    p.add_argument("--m", type=int, default=8, help="forced answers per prefix (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rule", default="last", choices=["last", "believed"],
                   help="the exact J's meta-prover (default last: the tiny warm starts' forced-answer rule)")
    p.add_argument("--policies", default="demo,compare_l3,reasoner",
                   help="which policies (the reasoner only when its build is cached)")
    p.add_argument("--quick", action="store_true", help="smoke check: 8 problems x 2 samples")
    a = p.parse_args(argv)
    if a.quick:
        a.problems, a.samples = 8, 2
    import torch

    from metarl.utils import cpu_model

    torch.set_num_threads(1)
    argv_list = list(argv if argv is not None else sys.argv[1:])
    command = "python " + " ".join(shlex.quote(x) for x in ["bench/calibration.py", *argv_list])
    cpu = cpu_model()
    print(f"[calibration] {command}\n[calibration] CPU: {cpu}, 1 torch thread", flush=True)
    docs = Path(a.docs)
    out = docs / "results"
    out.mkdir(parents=True, exist_ok=True)
    sizes = Sizes(problems=a.problems, samples=a.samples, m=a.m, seed=a.seed, rule=a.rule)
    wanted = [x.strip() for x in a.policies.split(",") if x.strip()]
    t_all = time.perf_counter()
    results, not_measured, credit_rows, summary_rows = [], [], [], []
    for pol in POLICIES:
        if pol.key not in wanted:
            continue
        if pol.key == "reasoner":
            cached, where = reasoner_cached()
            if not cached:
                plain = [o for o in pol.overrides if not o.startswith("task.system_prompt=")]
                cmd = ("metarl-calibrate " + " ".join([*plain, "temperature=0.7", "m=8"])
                       + f" \"task.system_prompt='{REASONER_SYSTEM}'\"")
                not_measured.append({"key": pol.key, "why": f"its build is not cached ({where} does not exist) and "
                                     "building it takes ~17 min on 2 cores.", "command": cmd})
                print(f"[calibration] {pol.key}: not measured (build not cached at {where})", flush=True)
                continue
        print(f"[calibration] {pol.key}: sampling {sizes.problems} x {sizes.samples} traces, m={sizes.m}", flush=True)
        res, traces, correct = run_policy(pol, sizes)
        results.append(res)
        key = pol.key
        bins = plot_reliability(res, out / f"calibration_{key}.png")
        write_csv(out / f"calibration_{key}_bins.csv", bins)
        write_csv(out / f"calibration_{key}_prefixes.csv", res["prefix_rows"])
        plot_hat_vs_exact(res, out / f"calibration_{key}_jhat_vs_j.png")
        write_csv(out / f"calibration_{key}_episodes.csv", episode_rows(traces, correct))
        for src in ("J_hat", "J_exact"):
            credit_rows += [{"policy": key, "J": src, **r} for r in res["credit"][src]]
        summary_rows += [cal_summary_row(key, "J_hat", res["calibration"]),
                         cal_summary_row(key, "J_exact", res["calibration_exact"])]
        print("[calibration]   Ĵ:  " + res["calibration"].summary().replace("\n", "\n[calibration]       "))
        print("[calibration]   J:  " + res["calibration_exact"].summary().replace("\n", "\n[calibration]       "))
        v = res["hat_vs_exact"]
        print(f"[calibration]   Ĵ vs J: mean |Ĵ − J| {_f(v['mean_abs_diff'])}, r {_f(v['correlation'])}, within 2 SE "
              f"{_f(v['within_2se'])}; {res['seconds']}", flush=True)
    if credit_rows:
        write_csv(out / "calibration_credit.csv", credit_rows)
        plot_credit(credit_rows, out / "calibration_credit.png")
    all_keys = list(dict.fromkeys(k for r in summary_rows for k in r))
    write_csv(out / "calibration_summary.csv", [{k: r.get(k, "") for k in all_keys} for r in summary_rows])
    seconds = time.perf_counter() - t_all
    result = {"command": command,
              "machine": {"cpu": cpu, "platform": platform.platform(), "python": platform.python_version(),
                          "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
              "sizes": asdict(sizes),
              "thresholds": {"correlation": Thresholds().correlation,
                             "verify_after_correct": Thresholds().verify_after_correct},
              "policies": results, "not_measured": not_measured, "credit_rows": credit_rows,
              "seconds_total": seconds, "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    (out / "calibration_run.json").write_text(json.dumps(_plain(result), indent=1, ensure_ascii=False) + "\n",
                                              encoding="utf-8")
    page = write_page(result, docs)
    print(f"[calibration] {seconds:.0f} s on {cpu}; wrote {page} and {out}/calibration_*", flush=True)
    return result


if __name__ == "__main__":
    main()
