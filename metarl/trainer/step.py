"""One metarl training step, top to bottom, over public data (docs/method.md §3–§5).

::

    rows (prompt, answer, ...) ──Rollout.generate──▶ streams          the engine: the one generation path
    rows + streams ──traces_of──▶ traces ──Scorer.score──▶ scored     segment, grade, episode/trace rewards
    scored traces ──make_batch──▶ Batch                               credit steps, groups, μ's values
    Batch ──advantages──▶ (B, T) per-token advantages                 metarl.credit.build_advantages
    Batch ──step_metrics──▶ the metarl/* numbers of metrics.jsonl
    TRL's loss (grpo, dapo, dr_grpo, ...; clipping, KL) consumes the advantages unchanged.

With dense credit off (no episode reward in the objective and the group baseline) :func:`dense_credit` is
False and TRL's own group-normalised advantage of the outcome term is used: the step is TRL GRPO exactly.
:class:`metarl.trainer.grpo.MetaRLTrainer` calls these functions from TRL's step; nothing here knows TRL.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from metarl.calibration import j_values
from metarl.credit import STOP_KIND, build_advantages, split_stop_tokens
from metarl.engine import Stream
from metarl.eval.heldout import behaviour
from metarl.scoring import Objective, Scorer
from metarl.types import Trace


@dataclass(frozen=True)
class Credit:
    """What credit assignment reads of one scored trace, one entry per **credit step**: its episodes, then a
    stop step (the trailing end-of-sequence / padding ids, :func:`metarl.credit.split_stop_tokens`) or the
    answer region after an R1-style thought. Neither of the last two is an episode: each earns no dense reward
    and is credited with what follows it, the outcome term.

    spans: token spans ``[start, end)`` into the completion ids; kinds: episode kinds (``"stop"`` for the last
    step when there is one); dense: r~ of each step (0.0 for the stop step); outcome_term: the objective's
    outcome term (NaN where ungraded); values: the termination baseline's b_j = Ĵ_{j−1} at the start of every
    step (μ's values: Ĵ_{−1} before the first episode, Ĵ after the last for the stop step), None without them.
    """

    spans: list[tuple[int, int]]
    kinds: list[str]
    dense: list[float]
    outcome_term: float
    values: list[float] | None = None


@dataclass
class Batch:
    """A scored training batch, whole (every process's traces, in order): ``traces`` (segmented, graded,
    rewarded), ``groups`` (the GRPO group of each: its prompt) and ``credit`` (:class:`Credit` of each)."""

    traces: list[Trace]
    groups: list[int]
    credit: list[Credit]


def dense_credit(objective: Objective, scorer: Scorer) -> bool:
    """Whether the step replaces TRL's advantage: an episode reward in the objective, or a termination baseline."""
    return bool(scorer.dense_rewards) or objective.termination_baseline


def traces_of(rows: Sequence[dict[str, Any]], streams: Sequence[Stream], prompts: Sequence[str],
              answer_column: str = "answer") -> list[Trace]:
    """The trace of each stream: its row's prompt text, gold answer and length target; the row itself (every
    column) in ``meta["input"]``, as a TRL reward function receives it (:mod:`metarl.rewards.trl_functions`)."""
    if not len(rows) == len(streams) == len(prompts):
        raise ValueError(f"{len(rows)} rows, {len(streams)} streams and {len(prompts)} prompts: one each per completion")
    traces = []
    for row, stream, prompt in zip(rows, streams, prompts):
        t = Trace.from_stream(stream, prompt, row.get(answer_column), row.get("target_tokens"))
        t.meta["input"] = {k: v for k, v in row.items() if k not in ("completion", "completion_ids")}
        traces.append(t)
    return traces


def credit_of(trace: Trace, scorer: Scorer, stop_ids: frozenset[int]) -> Credit:
    """The :class:`Credit` of a scored trace (``stop_ids``: the token ids that end a completion)."""
    eps = trace.episodes
    spans = [(e.token_start, e.token_end) for e in eps]
    ids = trace.completion_ids or []
    if trace.answer_token_start is not None and trace.answer_token_start < len(ids):
        steps = [*spans, (trace.answer_token_start, len(ids))]
    else:
        steps = split_stop_tokens(spans, ids, stop_ids)
    stop = len(steps) > len(spans)
    dense = scorer.episode_dense(trace)
    values = None
    if scorer.objective.termination_baseline:
        js = j_values(trace)
        if js is None:
            raise ValueError("the termination baseline needs μ's value before every episode: add the Monte Carlo "
                             "progress estimator (rewards=[mc_progress]) or the exact oracle (exact_progress)")
        values = js[: len(eps) + (1 if stop else 0)]  # b_j = J_{j-1}; the stop step's is J after the last episode
    return Credit(spans=steps, kinds=[e.kind for e in eps] + ([STOP_KIND] if stop else []),
                  dense=[*dense, 0.0] if dense and stop else dense, outcome_term=scorer.outcome_term(trace),
                  values=values)


def make_batch(traces: Sequence[Trace], scorer: Scorer, stop_ids: frozenset[int], num_generations: int) -> Batch:
    """The batch of scored ``traces``, consecutive runs of ``num_generations`` sharing a prompt (TRL's order)."""
    traces = list(traces)
    return Batch(traces, [i // num_generations for i in range(len(traces))],
                 [credit_of(t, scorer, stop_ids) for t in traces])


def advantages(batch: Batch, objective: Objective, width: int) -> torch.Tensor:
    """The (B, width) per-token advantages of the whole batch (:func:`metarl.credit.build_advantages`, group
    statistics over every process's traces); ``width`` at least the longest credit span."""
    c = batch.credit
    width = max([width, *(x.spans[-1][1] or 0 for x in c if x.spans)])
    return build_advantages(
        [x.dense for x in c], [x.outcome_term for x in c], [x.spans for x in c], batch.groups, width,
        alpha=objective.alpha, gamma=objective.gamma, normalize=objective.normalize,
        scale_rewards=objective.scale_rewards, baseline=objective.baseline, episode_kinds=[x.kinds for x in c],
        credit=objective.credit,
        termination_values=([[objective.alpha * b for b in x.values] for x in c]  # type: ignore[union-attr]
                            if objective.termination_baseline else None))


def step_metrics(batch: Batch, scorer: Scorer, cap: int | None = None) -> dict[str, float]:
    """The ``metarl/*`` numbers of one step: outcome accuracy, episodes and thinking tokens per trace (against the
    cap), the share of forced answers, verification accuracy and revisions after an "incorrect" verdict
    (:func:`metarl.eval.heldout.behaviour`, as held-out evaluation counts them), isolated faults, and the mean of
    every trace reward and episode reward (also per episode kind)."""
    traces = batch.traces
    if not traces:
        return {}
    m: dict[str, float] = {}
    n = len(traces)
    outcomes = [t.outcome for t in traces if t.outcome is not None]
    if outcomes:
        m["metarl/outcome_accuracy"] = sum(outcomes) / len(outcomes)
    m["metarl/episodes_per_trace"] = sum(len(t.episodes) for t in traces) / n
    toks = [t.thinking_tokens if t.thinking_tokens is not None else t.num_tokens for t in traces]
    toks = [x for x in toks if x is not None]
    if toks:
        m["metarl/tokens/mean"] = sum(toks) / len(toks)
        if cap:
            m["metarl/tokens/mean_over_cap"] = sum(toks) / len(toks) / cap
            m["metarl/tokens/cap_fraction"] = sum(x >= cap for x in toks) / len(toks)
            m["metarl/tokens/max"] = float(max(toks))
    m["metarl/forced_fraction"] = sum(t.forced for t in traces) / n
    acts = [behaviour(t, scorer) for t in traces]
    verdicts, refuted = sum(b["verdicts"] for b in acts), sum(b["refuted"] for b in acts)
    if verdicts:
        m["metarl/verification_accuracy"] = sum(b["right_verdicts"] for b in acts) / verdicts
    if refuted:
        m["metarl/revise_after_refuted"] = sum(b["revised"] for b in acts) / refuted
    # faults of estimators and segmenters on single samples (isolated: 0 or NaN reward; see metarl.rewards)
    m["metarl/reward_errors"] = float(sum(len(t.meta.get("reward_errors", [])) for t in traces))
    for kind in ("timeouts", "nonfinite", "segment"):
        name = "segment_fallbacks" if kind == "segment" else f"reward_{kind}"
        m[f"metarl/{name}"] = float(sum(t.meta.get("reward_faults", {}).get(kind, 0) for t in traces))
    for key, vals in _finite(((k, v) for t in traces for k, v in t.rewards.items())).items():
        m[f"metarl/reward/{key}"] = sum(vals) / len(vals)
    per_episode = _finite(((key, v) for t in traces for e in t.episodes for k, v in e.rewards.items()
                           for key in (k, f"{k}/{e.kind}")))
    for key, vals in per_episode.items():
        mean = sum(vals) / len(vals)
        m[f"metarl/episode_reward/{key}"] = mean
        if "/" not in key and len(vals) > 1:
            m[f"metarl/episode_reward/{key}/std"] = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    return m


def _finite(items: Any) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for k, v in items:
        if v is not None and math.isfinite(v):
            out[k].append(v)
    return out


def rollout_records(traces: Sequence[Trace], step: int, limit: int) -> list[dict[str, Any]]:
    """``rollouts.jsonl`` lines of a step's first ``limit`` traces (token ids and the input row left out)."""
    records = []
    for t in traces[:limit]:
        r = {"step": step, **t.to_dict()}
        r.pop("prompt_ids", None)
        r.pop("completion_ids", None)
        r["meta"].pop("input", None)
        records.append(r)
    return records
