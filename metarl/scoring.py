"""Segment traces and score every episode: the pipeline shared by ``metarl-score`` and the trainer.

``Scorer.score(traces)`` fills ``trace.episodes`` (segmenter), ``trace.outcome`` (graded final answer),
the configured rewards (episode- and trace-level) and the objective's totals::

    dense   = sum_i r~_i            with r~_i = sum_r weight_r * episode_i.rewards[r]
    total   = dense + alpha * outcome_term

where ``outcome_term`` is ``trace.outcome`` or a named trace reward (e.g. ``lcpo_exact``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from metarl.rewards import Reward, apply_reward
from metarl.segmenters import segment
from metarl.types import Trace


@dataclass
class Objective:
    """How episode rewards and the outcome combine (BRIEF.md section 3).

    alpha: weight of the outcome term. gamma: discount of the episode reward-to-go.
    outcome_reward: trace reward used as the outcome term (None: the graded final answer).
    dense: names of the episode rewards summed into r~ (None: every episode-level reward).
    normalize / scale_rewards / baseline: credit assignment options (see ``metarl.credit``).
    """

    alpha: float = 1.0
    gamma: float = 1.0
    outcome_reward: str | None = None
    dense: list[str] | None = None
    normalize: str = "separate"
    scale_rewards: str = "group"
    baseline: str = "group"


@dataclass
class Scorer:
    segmenter: Callable[..., Any]
    rewards: list[Reward]
    grader: Callable[..., bool]
    extract_answer: Callable[[str], str | None]
    parse_verdict: Callable[[str], bool | None]
    objective: Objective = field(default_factory=Objective)
    model: Any = None
    tokenizer: Any = None
    on_error: str = "zero"
    state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = {r.name for r in self.rewards}
        if self.objective.outcome_reward and self.objective.outcome_reward not in names:
            raise ValueError(f"objective.outcome_reward={self.objective.outcome_reward!r} is not among the "
                             f"configured rewards {sorted(names)}; add it to `rewards` or set it to null")
        for r in self.objective.dense or []:
            if r not in names:
                raise ValueError(f"objective.dense names {r!r}, which is not among the rewards {sorted(names)}")

    @property
    def dense_rewards(self) -> list[Reward]:
        chosen = self.objective.dense
        return [r for r in self.rewards if r.level == "episode" and (chosen is None or r.name in chosen)]

    def segment(self, trace: Trace) -> Trace:
        ids = trace.completion_ids if self.tokenizer is not None else None
        trace.episodes = segment(self.segmenter, trace.completion, token_ids=ids, tokenizer=self.tokenizer)
        return trace

    def context(self) -> dict[str, Any]:
        return {"grader": self.grader, "extract_answer": self.extract_answer, "parse_verdict": self.parse_verdict,
                "model": self.model, "tokenizer": self.tokenizer, "state": self.state}

    def score(self, traces: Sequence[Trace]) -> list[Trace]:
        traces = list(traces)
        if any(r.needs_model for r in self.rewards) and (self.model is None or self.tokenizer is None):
            bad = [r.name for r in self.rewards if r.needs_model]
            raise ValueError(f"rewards {bad} need a model: set `model` (e.g. model.name_or_path=...)")
        for t in traces:
            if not t.episodes:
                self.segment(t)
            if t.answer is not None and t.outcome is None:
                try:
                    t.outcome = float(bool(self.grader(self.extract_answer(t.completion), t.answer, t.prompt)))
                except Exception as e:  # graders are guarded; a custom one may still raise
                    t.outcome = 0.0
                    t.meta.setdefault("reward_errors", []).append(f"outcome: {type(e).__name__}: {e}"[:300])
        ctx = self.context()
        for reward in sorted(self.rewards, key=lambda r: r.level != "episode"):
            apply_reward(reward, traces, ctx, on_error=self.on_error)
        for t in traces:
            self.totals(t)
        return traces

    def episode_dense(self, trace: Trace) -> list[float]:
        """r~_i for every episode: the weighted sum of the dense rewards (missing or NaN count as 0)."""
        out = []
        for ep in trace.episodes:
            s = 0.0
            for r in self.dense_rewards:
                v = ep.rewards.get(r.name)
                if v is not None and math.isfinite(v):
                    s += r.weight * v
            out.append(s)
        return out

    def outcome_term(self, trace: Trace) -> float:
        name = self.objective.outcome_reward
        v = trace.rewards.get(name) if name else trace.outcome
        return float("nan") if v is None else float(v)

    def totals(self, trace: Trace) -> None:
        dense = sum(self.episode_dense(trace))
        trace.rewards["dense"] = dense
        out = self.outcome_term(trace)
        trace.rewards["total"] = dense + self.objective.alpha * (0.0 if math.isnan(out) else out)


def termination_values(trace: Trace) -> list[float]:
    """b_j = J_{j-1}: forced-answer success at the start of each episode (MRT termination baseline).

    Needs the Monte Carlo progress estimator's by-products (``meta['J_init']``, ``episode.info['J']``).
    """
    if "J_init" not in trace.meta:
        raise ValueError("the termination baseline needs Monte Carlo progress (mc_progress) among the rewards")
    values = [float(trace.meta["J_init"])]
    values += [float(ep.info["J"]) for ep in trace.episodes[:-1]]
    return values
