"""Segment traces and score every episode: the pipeline shared by ``metarl-score`` and the trainer.

``Scorer.score(traces)`` fills ``trace.episodes`` (segmenter), ``trace.outcome`` (graded final answer),
the configured rewards (episode- and trace-level) and the objective's totals::

    dense   = sum_i r~_i            with r~_i = sum_r weight_r * episode_i.rewards[r]
    total   = dense + alpha * outcome_term

where ``outcome_term`` is ``trace.outcome`` or a named trace reward (e.g. ``lcpo_exact``).

Model output is untrusted: segmentation of one trace is bounded in time (``segment_timeout``) and in
episodes (``max_episodes_per_trace``: the tail beyond the limit is merged into the last episode, so the
partition still holds); a segmenter that raises or overruns on one trace leaves that trace as a single
episode, recorded in ``trace.meta["reward_errors"]`` / ``["reward_faults"]``. If the segmenter raises on
every trace of a batch, scoring stops with a message naming it (a bug, not a bad sample).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from metarl.engine import Engine
from metarl.grading.deadline import GradingTimeout, run_with_time_limit
from metarl.prover import as_prover
from metarl.registry import ConfigError
from metarl.rewards import Reward, RewardError, apply_reward, check_needs, note_fault
from metarl.segmenters import _context_for, answer_boundary, build_segmenter, normalize_pieces, segment
from metarl.types import Episode, Trace

from metarl.credit import TERMINATION_BASELINES, check_options  # noqa: E402  (one check of the credit options)


@dataclass
class Objective:
    """How episode rewards and the outcome combine (docs/method.md §3, §4).

    alpha: weight of the outcome term. gamma: discount of the episode reward-to-go.
    outcome_reward: trace reward used as the outcome term (None: the graded final answer).
    dense: names of the episode rewards summed into r~ (None: every episode-level reward).
    normalize / scale_rewards / baseline / credit: credit assignment options (see ``metarl.credit``; checked
    there, by ``metarl.credit.check_options``).
    """

    alpha: float = 1.0
    gamma: float = 1.0
    outcome_reward: str | None = None
    dense: list[str] | None = None
    normalize: str = "separate"
    scale_rewards: str = "group"
    baseline: str = "group"
    credit: str = "sum"

    @property
    def termination_baseline(self) -> bool:
        """Whether the baseline is a termination baseline (needs J_{j-1} from the Monte Carlo progress estimator)."""
        return self.baseline in TERMINATION_BASELINES

    def __post_init__(self) -> None:
        for key in ("alpha", "gamma"):
            value = getattr(self, key)
            try:
                number = float(value)
            except (TypeError, ValueError):
                number = math.nan
            if isinstance(value, bool) or not math.isfinite(number):
                raise ConfigError(f"objective.{key}={value!r} must be a finite number, e.g. objective.{key}=1.0")
            setattr(self, key, number)
        try:
            check_options(normalize=self.normalize, scale_rewards=self.scale_rewards, baseline=self.baseline,
                          credit=self.credit, alpha=self.alpha, gamma=self.gamma, where="objective.")
        except ValueError as e:
            raise ConfigError(str(e)) from None
        for key in ("outcome_reward",):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                raise ConfigError(f"objective.{key}={getattr(self, key)!r} must be a reward name or null")
        if self.dense is not None and (isinstance(self.dense, str) or
                                       not all(isinstance(d, str) for d in self.dense)):
            raise ConfigError(f"objective.dense={self.dense!r} must be a list of reward names (or null: all "
                              f"episode rewards), e.g. objective.dense=[verification_correctness]")


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
    prover: Any = None
    backend: Any = None
    on_error: str = "zero"
    state: dict[str, Any] = field(default_factory=dict)
    max_episodes_per_trace: int | None = 1024
    segment_timeout: float | None = 30.0
    on_ungraded: str = "zero"
    """A trace whose grader cannot tell whether its answer is right (:meth:`metarl.grading.Grader.judge`): outcome
    0.0 (``zero``: a training signal) or None (``null``: ``metarl-score`` refuses to guess); the reason is in
    ``meta["ungraded"]`` either way."""

    def __post_init__(self) -> None:
        if self.on_ungraded not in ("zero", "null"):
            raise ConfigError(f"on_ungraded={self.on_ungraded!r}: use zero or null")
        if self.on_error not in ("zero", "nan"):
            raise ConfigError(f"on_reward_error={self.on_error!r}: use zero (a failed sample gets reward 0) or nan "
                              f"(it is excluded)")
        limit = self.max_episodes_per_trace
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ConfigError(f"max_episodes_per_trace={limit!r} must be a positive integer or null (no limit)")
        if self.segment_timeout is not None and not float(self.segment_timeout) > 0:
            raise ConfigError(f"segment_timeout={self.segment_timeout!r} must be a positive number of seconds or "
                              f"null (no limit)")
        self.prover = as_prover(self.prover)
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

    def segment(self, trace: Trace, isolate: bool = True) -> Trace:
        """Fill ``trace.episodes`` (and, with the meta-prover's ``think_end``, the answer region: episodes
        cover the thinking only; see :meth:`metarl.prover.ProverConfig.answer_start`). With ``isolate`` a
        segmenter that raises or runs past ``segment_timeout`` leaves the thinking as one ``other`` episode
        (recorded as a fault on the trace) instead of raising."""
        ids = trace.completion_ids if self.tokenizer is not None else None
        seg = self.segmenter if self.max_episodes_per_trace is None else \
            EpisodeLimit(self.segmenter, self.max_episodes_per_trace)
        trace.answer_start = trace.answer_token_start = None
        cut = self.prover.answer_start(trace.completion)
        if cut is not None:
            try:
                trace.answer_start, trace.answer_token_start = answer_boundary(trace.completion, cut, ids,
                                                                               self.tokenizer)
            except ValueError:  # ids that do not decode to the text: segment() below names the problem
                trace.answer_start = cut
        thinking = trace.thinking
        if ids is not None and trace.answer_token_start is not None:
            ids = ids[: trace.answer_token_start]

        def run() -> list[Episode]:
            return segment(seg, thinking, token_ids=ids, tokenizer=self.tokenizer)

        try:
            trace.episodes = run_with_time_limit(run, self.segment_timeout)
        except ConfigError:
            raise
        except Exception as e:
            if not isolate:
                raise
            trace.meta["segment_fault"] = "timeout" if isinstance(e, GradingTimeout) else "error"
            note_fault(trace, "segmenter", "segment", f"{type(e).__name__}: {e}")
            trace.episodes = [self._whole(trace)]
            return trace
        if isinstance(seg, EpisodeLimit) and seg.merged:
            trace.meta["episodes_merged"] = seg.merged
        return trace

    def _whole(self, trace: Trace) -> Episode:
        """The whole thinking as one episode (the fallback when segmentation fails)."""
        text = trace.thinking
        ep = Episode("other", 0, len(text), text, info={"segment_failed": True})
        if self.tokenizer is not None:
            n = trace.num_thinking_tokens
            if n is None:
                try:
                    n = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
                except Exception:  # text no tokenizer accepts (lone surrogates): no token span
                    return ep
            ep.token_start, ep.token_end = 0, n
        return ep

    def context(self, model: Any = None, backend: Any = None) -> dict[str, Any]:
        """What rewards can ask for by name; ``model`` / ``backend`` of one call override the scorer's own (a
        trainer passes the policy of this step without changing the scorer). ``state`` is the run's one state
        dict, kept across calls (rewards may remember things in it)."""
        backend = self.backend if backend is None else backend
        return {"grader": self.grader, "extract_answer": self.extract_answer, "parse_verdict": self.parse_verdict,
                "model": self.model if model is None else model, "tokenizer": self.tokenizer, "prover": self.prover,
                "state": self.state,
                "engine": None if backend is None else Engine(backend, self.prover)}

    def score(self, traces: Sequence[Trace], *, model: Any = None, backend: Any = None,
              state: dict[str, Any] | None = None) -> list[Trace]:
        """Segment, grade and reward ``traces`` in place (and return them). ``model`` / ``backend`` / ``state``:
        this call's policy, generation backend and run state (e.g. ``global_step``), instead of the scorer's."""
        traces = list(traces)
        self.state.update(state or {})  # this call's entries (e.g. global_step) into the run's state
        ctx = self.context(model, backend)
        check_needs(self.rewards, ctx)
        todo = [t for t in traces if not t.episodes]
        for t in todo:
            self.segment(t)
        if len(todo) > 1 and all(t.meta.get("segment_fault") == "error" for t in todo):
            name = getattr(self.segmenter, "__name__", None) or type(self.segmenter).__name__
            raise RewardError(f"segmenter {name!r} raised on every one of the {len(todo)} traces of this batch: "
                              f"{todo[0].meta['reward_errors'][0]}; fix the segmenter (a custom one must return "
                              f"pieces that partition the completion) or choose another with segmenter=...")
        for t in traces:
            if t.answer is not None and t.outcome is None:
                t.outcome = self.grade(t)
        for reward in sorted(self.rewards, key=lambda r: r.level != "episode"):
            apply_reward(reward, traces, ctx, on_error=self.on_error)
        for t in traces:
            self.totals(t)
        return traces

    def grade(self, trace: Trace) -> float | None:
        """The outcome of ``trace`` (:func:`grade_completion`: 1.0 or 0.0); where the grader cannot tell
        (``judge`` gives None) the reason goes to ``meta["ungraded"]`` and the outcome is 0.0 or None
        (:attr:`on_ungraded`); a grader that raises gives 0.0, its error in ``meta["reward_errors"]``."""
        g = grade_completion(self.grader, self.extract_answer, trace.completion, trace.answer, trace.prompt)
        if g.error is not None:
            trace.meta.setdefault("reward_errors", []).append(f"outcome: {g.error}"[:300])
            return 0.0
        if g.outcome is None:
            trace.meta["ungraded"] = g.why
            return None if self.on_ungraded == "null" else 0.0
        return g.outcome

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


class EpisodeLimit:
    """Wraps a segmenter: at most ``limit`` episodes, the rest of the text merged into the last one.

    Bounds the work per trace (token mapping and every episode reward) on pathological output such as
    a megabyte of ``<attempt>`` tags. ``merged`` is how many episodes the last call folded away.
    """

    def __init__(self, segmenter: Any, limit: int) -> None:
        segmenter = segmenter if callable(segmenter) else build_segmenter(segmenter)
        self.segmenter, self.limit, self.merged = segmenter, limit, 0
        self.__name__ = getattr(segmenter, "__name__", None) or type(segmenter).__name__

    def __call__(self, text: str, **context: Any) -> list[Episode]:
        episodes = normalize_pieces(text, self.segmenter(text, **_context_for(self.segmenter, context)),
                                    self.__name__)
        self.merged = max(0, len(episodes) - self.limit)
        if not self.merged:
            return episodes
        head, tail = episodes[: self.limit - 1], episodes[self.limit - 1:]
        first = tail[0]
        last = Episode(first.kind, first.start, tail[-1].end, text[first.start: tail[-1].end],
                       info={**first.info, "merged_episodes": len(tail)})
        return [*head, last]


@dataclass(frozen=True)
class Grade:
    """One completion graded: ``prediction`` (the answer extractor's reading), ``outcome`` (1.0 / 0.0; None where
    the grader cannot tell, ``why`` saying why), ``error`` (the grader or extractor raised: outcome 0.0)."""

    prediction: str | None
    outcome: float | None
    why: str | None = None
    error: str | None = None


def grade_completion(grader: Callable[..., Any], extract_answer: Callable[[str], str | None], completion: str,
                     answer: Any, prompt: str = "") -> Grade:
    """The one outcome grading of metarl (training, held-out evaluation, ``metarl-score`` and ``metarl-eval``):
    the grader on the extractor's reading of ``completion`` against the gold ``answer``. A grader with a
    ``judge`` method (:class:`metarl.grading.Grader`) may say it cannot tell; a plain ``grader(prediction,
    answer, prompt) -> bool`` always decides.

    >>> grade_completion(lambda p, a, q="": p == a, lambda t: t.split()[-1], "so 4", "4")
    Grade(prediction='4', outcome=1.0, why=None, error=None)
    """
    prediction = None
    try:
        prediction = extract_answer(completion)
        judge = getattr(grader, "judge", None)
        if judge is None:
            return Grade(prediction, float(bool(grader(prediction, answer, prompt))))
        verdict, why = judge(prediction, answer, prompt)
    except Exception as e:  # graders are guarded; a custom one may still raise
        return Grade(prediction, 0.0, error=f"{type(e).__name__}: {e}")
    return Grade(prediction, None if verdict is None else float(verdict), why if verdict is None else None)
