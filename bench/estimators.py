"""Estimator quality: Monte Carlo Ĵ against exact enumeration, likelihood progress against Monte Carlo progress.

    python bench/estimators.py --out runs/estimators                # full run (est. 1-3 min, 1 CPU thread)
    python bench/estimators.py --out runs/estimators-quick --quick  # smoke check (~10 s with the tiny policy
                                                                    # cached; its first build adds ~1 min)
    python bench/results_page.py runs/compare --estimators runs/estimators/estimators.json

Writes ``DIR/estimators.json`` (schema below), CSVs and PNG plots next to it, and prints a summary.

1. **MC against exact** (``mc_vs_exact``): a random, sharpened tiny Llama over a 16-token vocabulary
   (digits, space, newline, 4 specials) whose forced-answer distribution `metarl.prover.answer_distribution`
   enumerates exactly (answers of at most 2 tokens). On the prefixes of a few digit-string traces, the
   exact J (probability that the forced answer is graded correct; toy grader: the answer starts with a
   digit <= the gold digit) is compared with `MCProgress`'s Ĵ for m in {4, 8, 32, 128}, each repeated
   over R seeds. Per m: mean |Ĵ − J|, the true standard error sqrt(J(1−J)/m), the exact expected
   |Ĵ − J| of a binomial draw, their ratio, the coverage of Ĵ ± 2·SE with the estimator's own
   SE = sqrt(Ĵ(1−Ĵ)/m) (``J_se``) and with the true SE, the bias mean(Ĵ − J) with its z-score, and a
   χ² test of the per-prefix means against J (catches biases of either sign).
2. **Likelihood against MC** (``likelihood_vs_mc``): traces of the warm-started tiny policy
   (``model=tiny``, built and cached on first use) on held-out problems of the built-in subset-sum task,
   sampled at temperature 1 with cap 192 (`evaluate_policy`), scored by `LikelihoodProgress` (default
   mode, log scale: ΔI = L_j − L_{j−1}, L_j = log p(a* | prefix_j, suffix)) and by `MCProgress` (m=8,
   temperature 0.7, the task's suffix, ``extract="context"`` with the scorer's extractor and grader, as
   ``bench/compare_learning._regret`` does). Spearman rank correlation of the two ΔI per episode, pooled
   and per episode kind, and of the levels (L_j against Ĵ_j over every prefix of every trace, the
   prompt-only one included). A correlation is NaN, with the reason stated, when one side has no spread.

Note: likelihood progress scores the single gold answer a* of the row, while MC grades any correct
answer (subset-sum problems can have several valid subsets): part of any disagreement is that.

JSON::

    {"command", "quick", "machine", "seconds",
     "mc_vs_exact": {"settings", "rows": [{"m", "mean_abs_error", "mean_se", "coverage_2se", "n_prefixes",
                     "repeats", "mean_se_hat", "expected_abs_error", "error_ratio", "coverage_2se_true",
                     "bias", "bias_z", "bias_chi2_p"}], "exact_J": [...]},
     "likelihood_vs_mc": {"settings", "n_traces", "n_episodes", "spearman_delta", "spearman_delta_p",
                          "spearman_level", "per_kind": {kind: {"n", "spearman", "p", "reason"}}, ...},
     "figures": [[caption, png, csv], ...]}
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

if str(Path(__file__).resolve().parent) not in sys.path:  # compare_learning (plan loading, machine info)
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from metarl.engine import Engine  # noqa: E402
from metarl.engine.hf import HFBackend  # noqa: E402
from metarl.prover import ProverConfig, extract_raw, success_probability  # noqa: E402
from metarl.rewards.progress import LikelihoodProgress, MCProgress, trace_tokens  # noqa: E402
from metarl.types import EPISODE_KINDS, Episode, Trace  # noqa: E402

Grader = Callable[[str, str, str], bool]


@dataclass
class ExactSettings:
    """Part 1: the toy model, its traces and the Monte Carlo draws."""

    ms: list[int] = field(default_factory=lambda: [4, 8, 32, 128])
    repeats: int = 40
    traces: int = 6
    episodes: int = 4  # prefixes per trace = episodes + 1 (the prompt alone)
    temperature: float = 0.7
    max_answer_tokens: int = 2
    suffix: str = " "
    seed: int = 0

    def prover(self) -> ProverConfig:
        return ProverConfig(suffix=self.suffix, answer_tokens=self.max_answer_tokens, answer_stop=(),
                            temperature=self.temperature)


@dataclass
class LikelihoodSettings:
    """Part 2: the tiny policy's held-out traces and both estimators."""

    problems: int = 100
    samples: int = 4  # sampled completions per problem (traces = problems x samples)
    cap: int = 192
    policy_temperature: float = 1.0
    mc_m: int = 8
    mc_temperature: float = 0.7
    mc_max_answer_tokens: int = 16
    answer_template: str = "{answer}</answer>"  # as conf/rewards/likelihood_progress.yaml
    likelihood_mode: str = "one_pass"
    likelihood_scale: str = "log"
    seed: int = 0


QUICK_EXACT = dict(ms=[4, 8, 32], repeats=5)
QUICK_LIKELIHOOD = dict(problems=16, samples=1)


# --------------------------------------------------------------------------------------------------
# Part 1: Monte Carlo Ĵ against exact enumeration
# --------------------------------------------------------------------------------------------------


def toy_model(seed: int = 4):
    """A random tiny Llama over digits, space and newline (16 tokens), sharpened so that forced answers
    are far from uniform (as the ``digits`` fixture of tests/test_progress.py)."""
    from metarl.models.tiny import build_char_tokenizer, build_tiny_model, sharpen

    tok = build_char_tokenizer(list("0123456789 \n"))
    return sharpen(build_tiny_model(len(tok), seed=seed, tokenizer=tok)), tok


def char_trace(tok: Any, prompt: str, parts: Sequence[str], answer: str, kinds: Sequence[str] | None = None) -> Trace:
    """A trace whose episodes are ``parts`` with token spans (character tokenizer: one token per character)."""
    completion = "".join(parts)
    episodes, pos = [], 0
    for i, p in enumerate(parts):
        ep = Episode(kinds[i] if kinds else "other", pos, pos + len(p), p)
        ep.token_start, ep.token_end = pos, pos + len(p)
        episodes.append(ep)
        pos += len(p)
    trace = Trace(prompt, completion, answer=answer, episodes=episodes)
    trace.prompt_ids = [tok.bos_token_id] + tok(prompt, add_special_tokens=False)["input_ids"]
    trace.completion_ids = tok(completion, add_special_tokens=False)["input_ids"]
    if len(trace.completion_ids) != len(completion):
        raise ValueError("char_trace needs a one-token-per-character tokenizer (metarl.models.tiny)")
    return trace


def toy_traces(tok: Any, n_traces: int, n_episodes: int, seed: int = 0) -> list[Trace]:
    """Digit-string traces: a 6-digit prompt, ``n_episodes`` episodes of 2-4 characters, gold digit 3..7."""
    gen = torch.Generator().manual_seed(seed)
    alphabet = "0123456789 "

    def text(k: int) -> str:
        return "".join(alphabet[int(i)] for i in torch.randint(len(alphabet), (k,), generator=gen))

    traces = []
    for _ in range(n_traces):
        prompt = text(6)
        parts = [text(int(torch.randint(2, 5, (1,), generator=gen))) for _ in range(n_episodes)]
        traces.append(char_trace(tok, prompt, parts, answer=str(int(torch.randint(3, 8, (1,), generator=gen)))))
    return traces


def low_digit_grader(prediction: str, answer: str, prompt: str) -> bool:
    """Toy grader: correct when the prediction starts with a digit <= the gold digit."""
    return prediction[:1].isdigit() and int(prediction[0]) <= int(answer)


def exact_success(prover: ProverConfig, model: Any, tok: Any, traces: Sequence[Trace],
                  grader: Grader) -> list[list[float]]:
    """Exact J for every prefix (j = −1 .. n−1) of every trace: the probability mass of forced answers
    whose first line (``extract_raw``, as ``MCProgress(extract="raw")``) the grader accepts."""
    out = []
    for trace in traces:
        tt = trace_tokens(trace, tok)

        def correct(text: str, trace: Trace = trace) -> bool:
            pred = extract_raw(text)
            return pred is not None and bool(grader(pred, str(trace.answer), trace.prompt))

        out.append([success_probability(model, tok, tt.context(k), prover, correct) for k in tt.prefix_lengths()])
    return out


def binomial_mean_abs_deviation(p: float, m: int) -> float:
    """E|Ĵ − p| for Ĵ = Binomial(m, p) / m, computed exactly."""
    from scipy.stats import binom

    k = np.arange(m + 1)
    return float(np.sum(binom.pmf(k, m, p) * np.abs(k / m - p)))


def mc_draws(model: Any, tok: Any, traces: Sequence[Trace], grader: Grader, m: int, repeats: int,
             s: ExactSettings) -> np.ndarray:
    """Ĵ of every prefix for ``repeats`` independent seeds: shape (repeats, prefixes)."""
    draws = []
    engine = Engine(HFBackend(model, tok, batch_size=8192), s.prover())
    for r in range(repeats):
        mc = MCProgress(m=m, extract="raw", seed=s.seed * 1_000_003 + 1000 * r + m)
        rates = mc.success_rates(traces, engine, grader)
        draws.append([j for js in rates for j in js])
    return np.asarray(draws, dtype=float)


def error_row(exact: np.ndarray, draws: np.ndarray, m: int) -> dict[str, Any]:
    """Error statistics of Monte Carlo draws ``(repeats, prefixes)`` against the exact J ``(prefixes,)``.

    ``bias_z``: the pooled mean error over its standard error; ``bias_chi2_p``: the p-value of
    Σ_prefix z², z = (mean of the prefix's R draws − J) / (SE/√R), against χ²(prefixes), which also
    catches biases of opposite sign on different prefixes. Both are ~N(0,1) / ~U(0,1) for an unbiased Ĵ.
    """
    from scipy.stats import chi2

    err = draws - exact[None, :]
    se_true = np.sqrt(exact * (1 - exact) / m)
    se_hat = np.sqrt(draws * (1 - draws) / m)  # what MCProgress reports as J_se
    expected = np.array([binomial_mean_abs_deviation(float(p), m) for p in exact])
    bias = float(err.mean())
    bias_se = math.sqrt(float(np.mean(se_true ** 2)) / err.size)  # SE of the mean of all (prefix, seed) errors
    # per prefix: the mean of its R draws is Binomial(R·m, J)/(R·m); sum of squared z-scores ~ χ²(prefixes)
    z = err.mean(axis=0) / np.maximum(se_true / math.sqrt(draws.shape[0]), 1e-12)
    chi2_p = float(chi2.sf(float(np.sum(z ** 2)), df=exact.size))
    return {"m": m, "mean_abs_error": float(np.abs(err).mean()), "mean_se": float(se_true.mean()),
            "coverage_2se": float(np.mean(np.abs(err) <= 2 * se_hat + 1e-12)), "n_prefixes": int(exact.size),
            "repeats": int(draws.shape[0]), "mean_se_hat": float(se_hat.mean()),
            "expected_abs_error": float(expected.mean()), "error_ratio": float(np.abs(err).mean() / expected.mean()),
            "coverage_2se_true": float(np.mean(np.abs(err) <= 2 * se_true[None, :] + 1e-12)),
            "bias": bias, "bias_z": bias / bias_se if bias_se > 0 else math.nan, "bias_chi2_p": chi2_p}


def mc_vs_exact(model: Any, tok: Any, traces: Sequence[Trace], grader: Grader, s: ExactSettings) -> dict[str, Any]:
    """Part 1: one row of `error_row` per m, the exact J of every prefix and the per-draw errors."""
    exact = np.asarray([j for js in exact_success(s.prover(), model, tok, traces, grader) for j in js])
    rows, draws_by_m = [], {}
    for m in s.ms:
        draws = mc_draws(model, tok, traces, grader, m, s.repeats, s)
        draws_by_m[m] = draws
        rows.append(error_row(exact, draws, m))
    return {"settings": asdict(s), "rows": rows, "exact_J": exact.tolist(),
            "draws": {str(m): d.tolist() for m, d in draws_by_m.items()}}


# --------------------------------------------------------------------------------------------------
# Part 2: likelihood progress against Monte Carlo progress
# --------------------------------------------------------------------------------------------------


def spearman(x: Sequence[float], y: Sequence[float]) -> dict[str, Any]:
    """Spearman rank correlation ``{"n", "spearman", "p", "reason"}``; NaN with a reason when undefined."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = int(x.size)
    reason = None
    if n < 3:
        reason = f"only {n} pairs (needs >= 3)"
    elif np.ptp(x) == 0:
        reason = "likelihood side has no spread (all values equal)"
    elif np.ptp(y) == 0:
        reason = "MC side has no spread (all values equal)"
    if reason is not None:
        return {"n": n, "spearman": math.nan, "p": math.nan, "reason": reason}
    res = spearmanr(x, y)
    return {"n": n, "spearman": float(res.statistic), "p": float(res.pvalue), "reason": None}


def likelihood_vs_mc(traces: Sequence[Trace], model: Any, tok: Any, grader: Grader,
                     extract_answer: Callable[[str], str | None], suffix: str, s: LikelihoodSettings,
                     stop_strings: Sequence[str] | None = None) -> dict[str, Any]:
    """Part 2: score ``traces`` with both estimators and correlate their per-episode progress and levels."""
    prover = ProverConfig(suffix=suffix, answer_tokens=s.mc_max_answer_tokens, answer_stop=tuple(stop_strings or ()),
                          temperature=s.mc_temperature)
    lp = LikelihoodProgress(answer_template=s.answer_template, scale=s.likelihood_scale, mode=s.likelihood_mode)
    mc = MCProgress(m=s.mc_m, extract="context", seed=s.seed)
    t0 = time.perf_counter()
    levels_l = lp.log_likelihoods(traces, model, tok, prover)
    t1 = time.perf_counter()
    levels_j = mc.success_rates(traces, Engine(HFBackend(model, tok), prover), grader, extract_answer)
    t2 = time.perf_counter()
    episodes = episode_rows(traces, levels_l, levels_j)
    present = {e["kind"] for e in episodes}
    kinds = [k for k in EPISODE_KINDS if k in present] + sorted(present - set(EPISODE_KINDS))
    pooled = spearman([e["delta_L"] for e in episodes], [e["delta_J"] for e in episodes])
    level = spearman([v for ls in levels_l for v in ls], [v for js in levels_j for v in js])
    per_kind = {k: spearman([e["delta_L"] for e in episodes if e["kind"] == k],
                            [e["delta_J"] for e in episodes if e["kind"] == k]) for k in kinds}
    return {"settings": {**asdict(s), "suffix": suffix, "stop_strings": list(stop_strings or [])},
            "n_traces": len(traces), "n_episodes": len(episodes),
            "spearman_delta": pooled["spearman"], "spearman_delta_p": pooled["p"],
            "spearman_delta_reason": pooled["reason"],
            "spearman_level": level["spearman"], "spearman_level_p": level["p"],
            "spearman_level_reason": level["reason"],
            "n_levels": level["n"], "per_kind": per_kind,
            "mc_delta_zero_fraction": float(np.mean([e["delta_J"] == 0 for e in episodes])) if episodes else math.nan,
            "outcome_accuracy": float(np.mean([t.outcome or 0.0 for t in traces])) if traces else math.nan,
            "likelihood_seconds": round(t1 - t0, 3), "mc_seconds": round(t2 - t1, 3), "episodes": episodes}


def episode_rows(traces: Sequence[Trace], levels_l: Sequence[Sequence[float]],
                 levels_j: Sequence[Sequence[float]]) -> list[dict[str, Any]]:
    """One row per episode: kind, L and Ĵ before and after it, and both ΔI."""
    rows = []
    for t, (trace, ls, js) in enumerate(zip(traces, levels_l, levels_j)):
        for j, ep in enumerate(trace.episodes):
            rows.append({"trace": t, "episode": j, "kind": ep.kind, "L_prev": ls[j], "L": ls[j + 1],
                         "delta_L": ls[j + 1] - ls[j], "J_prev": js[j], "J": js[j + 1], "delta_J": js[j + 1] - js[j],
                         "outcome": trace.outcome})
    return rows


def policy_traces(s: LikelihoodSettings):
    """``(plan, model, tokenizer, traces)``: held-out traces of the tiny policy (``model=tiny``), sampled at
    ``s.policy_temperature`` with cap ``s.cap``, segmented and graded by the task's scorer."""
    from compare_learning import _compose, _load

    from metarl.eval.heldout import evaluate_policy

    cfg = _compose("train", ["model=tiny", "threads=1", f"budget.cap={s.cap}", f"task.n_test={s.problems}",
                             f"seed={s.seed}"])
    plan, model, tok = _load(cfg, "tiny")
    rows = plan.test_rows[:s.problems]
    if len(rows) < s.problems:
        raise ValueError(f"the task has {len(rows)} held-out problems, fewer than --problems {s.problems}")
    res = evaluate_policy(HFBackend(model, tok), rows, cap=s.cap, scorer=plan.scorer, samples=s.samples,
                          temperature=s.policy_temperature, seed=s.seed, return_traces=True)
    return plan, model, tok, res["traces"]


# --------------------------------------------------------------------------------------------------
# Outputs: CSVs and plots
# --------------------------------------------------------------------------------------------------


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows of dicts as CSV (the keys of the first row are the header)."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else [])
        w.writeheader()
        w.writerows(rows)


def plot_error_vs_m(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Mean |Ĵ − J| and the exact expected |Ĵ − J| against m (log-log) with a c/sqrt(m) reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ms = np.array([r["m"] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    ax.plot(ms, [r["mean_abs_error"] for r in rows], "o-", label="measured mean |Ĵ − J|")
    ax.plot(ms, [r["expected_abs_error"] for r in rows], "s--", label="exact binomial E|Ĵ − J|")
    c = rows[0]["expected_abs_error"] * math.sqrt(ms[0])
    grid = np.geomspace(ms.min(), ms.max(), 50)
    ax.plot(grid, c / np.sqrt(grid), ":", color="gray", label="∝ 1/sqrt(m)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(ms, [str(int(m)) for m in ms])
    ax.set_xlabel("m (forced answers per prefix)")
    ax.set_ylabel("|Ĵ − J|")
    ax.set_title(f"MC against exact J ({rows[0]['n_prefixes']} prefixes x {rows[0]['repeats']} seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_delta_scatter(result: dict[str, Any], path: Path) -> None:
    """Per-episode likelihood ΔI against MC ΔI, coloured by episode kind, Spearman ρ in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = result["episodes"]
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for kind in dict.fromkeys(e["kind"] for e in eps):
        sel = [e for e in eps if e["kind"] == kind]
        ax.scatter([e["delta_L"] for e in sel], [e["delta_J"] for e in sel], s=10, alpha=0.4, label=kind)
    m = result["settings"]["mc_m"]
    ax.set_xlabel("likelihood ΔI = L_j − L_{j−1} (log p of a*)")
    ax.set_ylabel(f"MC ΔI = Ĵ_j − Ĵ_{{j−1}} (m={m})")
    rho = result["spearman_delta"]
    ax.set_title(f"Spearman ρ = {rho:.3f} over {result['n_episodes']} episodes" if math.isfinite(rho)
                 else f"Spearman ρ undefined: {result['spearman_delta_reason']}")
    if eps:
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------


def run_mc_vs_exact(s: ExactSettings, out: Path) -> tuple[dict[str, Any], list[list[str]]]:
    """Part 1 with its CSVs and plot; returns the JSON section (without the raw draws) and its figures."""
    model, tok = toy_model()
    traces = toy_traces(tok, s.traces, s.episodes, seed=s.seed)
    res = mc_vs_exact(model, tok, traces, low_digit_grader, s)
    write_csv(out / "estimators_mc_vs_exact.csv", res["rows"])
    exact = res["exact_J"]
    write_csv(out / "estimators_mc_vs_exact_draws.csv",
              [{"m": int(m), "seed": r, "prefix": i, "J_exact": exact[i], "J_hat": j}
               for m, draws in res.pop("draws").items() for r, row in enumerate(draws) for i, j in enumerate(row)])
    plot_error_vs_m(res["rows"], out / "estimators_mc_error.png")
    return res, [["Monte Carlo Ĵ against exact J: mean |error| vs m", "estimators_mc_error.png",
                  "estimators_mc_vs_exact.csv"]]


def run_likelihood_vs_mc(s: LikelihoodSettings, out: Path) -> tuple[dict[str, Any], list[list[str]]]:
    """Part 2 with its CSV and plot; returns the JSON section (without per-episode rows) and its figures."""
    t0 = time.perf_counter()
    plan, model, tok, traces = policy_traces(s)
    gen_s = time.perf_counter() - t0
    res = likelihood_vs_mc(traces, model, tok, plan.scorer.grader, plan.scorer.extract_answer, plan.prover.suffix, s,
                           stop_strings=plan.prover.answer_stop)
    res["generation_seconds"] = round(gen_s, 3)
    write_csv(out / "estimators_likelihood_vs_mc.csv", res["episodes"])
    plot_delta_scatter(res, out / "estimators_delta_scatter.png")
    res.pop("episodes")
    return res, [["Likelihood ΔI against Monte Carlo ΔI per episode", "estimators_delta_scatter.png",
                  "estimators_likelihood_vs_mc.csv"]]


def fmt(x: float | None, digits: int = 3) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def summary_text(result: dict[str, Any]) -> str:
    """A readable summary of both parts."""
    lines = []
    mx = result.get("mc_vs_exact")
    if mx:
        lines += ["MC Ĵ against exact J (toy model):",
                  f"  {'m':>4} {'mean|err|':>10} {'E|err|':>8} {'ratio':>6} {'true SE':>8} {'cov±2SE^':>9} "
                  f"{'cov±2SE':>8} {'bias':>8} {'bias z':>7} {'χ² p':>6}"]
        for r in mx["rows"]:
            lines.append(f"  {r['m']:>4} {fmt(r['mean_abs_error'], 4):>10} {fmt(r['expected_abs_error'], 4):>8} "
                         f"{fmt(r['error_ratio'], 2):>6} {fmt(r['mean_se'], 4):>8} {fmt(r['coverage_2se']):>9} "
                         f"{fmt(r['coverage_2se_true']):>8} {fmt(r['bias'], 4):>8} {fmt(r['bias_z'], 2):>7} "
                         f"{r['bias_chi2_p']:>6.2g}")
        r0 = mx["rows"][0]
        lines.append(f"  ({r0['n_prefixes']} prefixes x {r0['repeats']} seeds; exact J in "
                     f"[{min(mx['exact_J']):.3f}, {max(mx['exact_J']):.3f}]; cov±2SE^ uses the estimator's own "
                     "SE sqrt(Ĵ(1−Ĵ)/m), cov±2SE the true one)")
    lm = result.get("likelihood_vs_mc")
    if lm:
        lines += ["", f"Likelihood ΔI against MC ΔI ({lm['n_traces']} traces, {lm['n_episodes']} episodes, "
                      f"policy accuracy {fmt(lm['outcome_accuracy'])}, MC ΔI = 0 in "
                      f"{fmt(lm['mc_delta_zero_fraction'])} of episodes):",
                  f"  pooled ΔI: Spearman {fmt(lm['spearman_delta'])} (p = {lm['spearman_delta_p']:.2g})"
                  + (f" [{lm['spearman_delta_reason']}]" if lm["spearman_delta_reason"] else ""),
                  f"  levels L_j vs Ĵ_j ({lm['n_levels']} prefixes): Spearman {fmt(lm['spearman_level'])}"
                  + (f" [{lm['spearman_level_reason']}]" if lm["spearman_level_reason"] else "")]
        for k, v in lm["per_kind"].items():
            lines.append(f"  {k:>8}: n={v['n']:<4} Spearman {fmt(v['spearman'])}"
                         + (f" (p = {v['p']:.2g})" if v["reason"] is None else f" [{v['reason']}]"))
        lines.append(f"  seconds: generation {lm['generation_seconds']:.1f}, "
                     f"likelihood {lm['likelihood_seconds']:.1f}, "
                     f"MC {lm['mc_seconds']:.1f}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, ExactSettings, LikelihoodSettings]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="output directory (estimators.json, CSVs, PNGs)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke check (< 1 min): {QUICK_EXACT}, {QUICK_LIKELIHOOD}")
    p.add_argument("--parts", default="exact,likelihood", help="which parts to run (default exact,likelihood)")
    p.add_argument("--repeats", type=int, help="seeds per m in part 1 (default 40; quick 5)")
    p.add_argument("--problems", type=int, help="held-out problems in part 2 (default 100; quick 16)")
    p.add_argument("--samples", type=int, help="sampled traces per problem in part 2 (default 4; quick 1)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    ex = ExactSettings(**(QUICK_EXACT if a.quick else {}), seed=a.seed)
    lk = LikelihoodSettings(**(QUICK_LIKELIHOOD if a.quick else {}), seed=a.seed)
    for key, target in (("repeats", ex), ("problems", lk), ("samples", lk)):
        value = getattr(a, key)
        if value is not None:
            if value < 1:
                p.error(f"--{key}={value} must be >= 1")
            setattr(target, key, value)
    parts = {x.strip() for x in a.parts.split(",") if x.strip()}
    if not parts or parts - {"exact", "likelihood"}:
        p.error(f"--parts {a.parts!r}: use exact, likelihood or exact,likelihood")
    a.parts = parts
    return a, ex, lk


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    a, ex, lk = parse_args(argv)
    torch.set_num_threads(1)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from compare_learning import machine

    result: dict[str, Any] = {"command": "python " + " ".join(shlex.quote(x) for x in [
        "bench/estimators.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": bool(a.quick), "machine": {**machine(), "torch_threads": torch.get_num_threads()}, "seconds": {},
        "figures": []}
    if "exact" in a.parts:
        t0 = time.perf_counter()
        result["mc_vs_exact"], figs = run_mc_vs_exact(ex, out)
        result["seconds"]["mc_vs_exact"] = round(time.perf_counter() - t0, 1)
        result["figures"] += figs
    if "likelihood" in a.parts:
        t0 = time.perf_counter()
        result["likelihood_vs_mc"], figs = run_likelihood_vs_mc(lk, out)
        result["seconds"]["likelihood_vs_mc"] = round(time.perf_counter() - t0, 1)
        result["figures"] += figs
    (out / "estimators.json").write_text(json.dumps(result, indent=1))
    print(summary_text(result))
    print(f"\n[estimators] {sum(result['seconds'].values()):.0f} s; wrote {out / 'estimators.json'} and "
          f"{len(result['figures'])} figures", flush=True)
    return result


if __name__ == "__main__":
    main()
