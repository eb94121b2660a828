"""Run test-time strategies at a list of token budgets: sample, grade, select, one row per result.

``evaluate_strategies`` draws the samples of each distinct :class:`~metarl.eval.sampling.Generation`
once per budget (seeded by ``(seed, budget, generation name)``, so a budget's samples do not depend on
which other budgets or strategies ran), grades every sample's extracted answer, lets each strategy
select, and returns

* ``rows``: one per question × reported strategy × budget, the ``eval/results.jsonl`` schema read by
  ``analysis``: ``question_id``, ``strategy``, ``budget``, ``correct`` (0/1 or a fraction), ``tokens``
  (mean thinking tokens **per sample**), ``total_tokens`` (``samples_used`` × ``tokens``: what the
  answer consumed), ``samples_used``, ``n``/``c`` (samples drawn / correct), ``generation``,
  ``selected`` (voting / Best-of-N);
* ``samples``: one per sample (``eval/samples.jsonl``): question id, generation, budget, sample index,
  completion, extracted answer, correct, tokens (thinking), total_tokens, forced, rounds, verifier scores.

Step-level search strategies (``strategy.searches``: beam search, lookahead, DVTS in
:mod:`metarl.eval.search`) generate their own paths through the sampler's engine, seeded by
``(seed, budget, strategy name)``. Their rows have ``total_tokens`` = every token the policy generated
for the search (pruned branches and lookahead rollouts included), ``tokens`` = mean thinking tokens of
the finished paths, ``samples_used`` = the width N, ``n`` / ``c`` = finished paths / correct ones, and
``answer_tokens``, ``scorer_tokens``, ``scorer_faults``, ``steps``, ``params``; their finished paths are
sample records (``generation`` = the strategy name, ``step_scores``). A row whose answer reads the gold
answer (pass@k for k > 1, a search scored by μ's J) has ``oracle: true``.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from metarl.eval.sampling import Generation, Sample, Sampler
from metarl.eval.strategies import GradedSample, Question, Strategy
from metarl.scoring import grade_completion

Extract = Callable[[str], "str | None"]
Grade = Callable[..., bool]
PromptFor = Callable[[Question, int], Any]


def derive_seed(seed: int, budget: int, generation: str) -> int:
    """A seed for one (seed, budget, generation) cell, the same in every process."""
    h = hashlib.sha256(f"{seed}|{budget}|{generation}".encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


@dataclass
class Evaluation:
    """Result rows (``results.jsonl``) and sample records (``samples.jsonl``) of one evaluation."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)


def sample_and_grade(questions: Sequence[Question], sampler: Sampler, budget: int, n: int, generation: Generation,
                     *, seed: int, extract: Extract, grade: Grade,
                     prompt_for: PromptFor | None = None) -> list[list[GradedSample]]:
    """``n`` graded samples per question at ``budget``; checks the sampler kept every sample within it."""
    prompts = [prompt_for(q, budget) if prompt_for else q.prompt for q in questions]
    raw = sampler(prompts, budget, n, generation, derive_seed(seed, budget, generation.name))
    if len(raw) != len(questions) or any(len(r) != n for r in raw):
        raise ValueError(f"sampler returned {[len(r) for r in raw][:8]} samples for {len(questions)} questions; "
                         f"expected {n} per question")
    out = []
    for q, samples in zip(questions, raw):
        graded = []
        for i, s in enumerate(samples):
            if not isinstance(s, Sample):
                raise TypeError(f"sampler returned {type(s).__name__}; it must return metarl.eval.sampling.Sample")
            if s.thinking_tokens > budget:
                raise ValueError(f"sampler broke the budget: question {q.id!r} sample {i} has {s.thinking_tokens} "
                                 f"thinking tokens at budget {budget} ({generation.name})")
            g = grade_completion(grade, extract, s.completion, q.answer, q.prompt_text)  # as training grades
            graded.append(GradedSample(i, s.completion, g.prediction, g.outcome == 1.0, s.thinking_tokens, s.tokens,
                                       s.forced, s.rounds))
        out.append(graded)
    return out


def sample_records(question: Question, samples: Sequence[GradedSample], budget: int, generation: str,
                   **extra: Any) -> list[dict[str, Any]]:
    """``samples.jsonl`` records of one question's samples."""
    return [{"question_id": question.id, "generation": generation, "budget": budget, "sample": s.index,
             "answer": question.answer, "completion": s.completion, "extracted": s.answer, "correct": int(s.correct),
             "tokens": s.thinking_tokens, "total_tokens": s.tokens, "forced": s.forced, "rounds": s.rounds,
             "scores": dict(s.scores), **extra} for s in samples]


def evaluate_strategies(questions: Sequence[Question], strategies: Sequence[Strategy], budgets: Sequence[int],
                        sampler: Sampler, *, n: int, extract: Extract, grade: Grade, seed: int = 0,
                        prompt_for: PromptFor | None = None,
                        progress: Callable[[str], None] | None = None) -> Evaluation:
    """Every strategy at every budget on every question (see module doc for the rows and records)."""
    if not questions or not strategies or not budgets:
        raise ValueError("evaluate_strategies needs questions, strategies and budgets (got an empty list)")
    if n < 1:
        raise ValueError(f"n must be >= 1 samples per question, got {n}")
    gens: dict[Generation, list[Strategy]] = {}
    searches = [s for s in strategies if getattr(s, "searches", False)]
    for s in strategies:
        if not getattr(s, "searches", False):
            gens.setdefault(s.generation, []).append(s)
    ev = Evaluation()
    for budget in budgets:
        for gen, strats in gens.items():
            graded = sample_and_grade(questions, sampler, budget, n, gen, seed=seed, extract=extract, grade=grade,
                                      prompt_for=prompt_for)
            for q, samples in zip(questions, graded):
                mean_tokens = sum(s.thinking_tokens for s in samples) / len(samples)
                c = sum(s.correct for s in samples)
                for strat in strats:
                    for o in strat.select(q, samples):
                        row = {"question_id": q.id, "strategy": o.strategy, "budget": budget,
                               "correct": float(o.correct), "tokens": mean_tokens,
                               "total_tokens": o.samples_used * mean_tokens, "samples_used": o.samples_used,
                               "n": len(samples), "c": c, "generation": gen.name, "phase": "eval", "seed": seed}
                        if o.selected is not None:
                            row["selected"] = o.selected
                        if o.oracle:
                            row["oracle"] = True
                        ev.rows.append(row)
                ev.samples += sample_records(q, samples, budget, gen.name, seed=seed)
            if progress:
                acc = sum(s.correct for ss in graded for s in ss) / max(1, sum(len(ss) for ss in graded))
                progress(f"budget {budget}, {gen.name}: {len(questions)} questions x {n} samples, "
                         f"sample accuracy {acc:.3f}")
        for strat in searches:
            _search_rows(ev, strat, questions, sampler, budget, seed=seed, extract=extract, grade=grade,
                         prompt_for=prompt_for)
            if progress:
                got = ev.rows[-len(questions):]
                progress(f"budget {budget}, {strat.name}: accuracy {sum(r['correct'] for r in got) / len(got):.3f}, "
                         f"{sum(r['total_tokens'] for r in got) / len(got):.0f} generated tokens per question")
    return ev


def _search_rows(ev: Evaluation, strat: Strategy, questions: Sequence[Question], sampler: Sampler, budget: int, *,
                 seed: int, extract: Extract, grade: Grade, prompt_for: PromptFor | None) -> None:
    """Run one step-level search at ``budget``; append its rows and its finished paths as sample records."""
    outs = strat.search(questions, sampler, budget, seed=derive_seed(seed, budget, strat.generation.name),
                        extract=extract, grade=grade, prompt_for=prompt_for)
    for q, out in zip(questions, outs):
        o = out.outcome
        thinking = [p.stream.thinking for p in out.pool]
        row = {"question_id": q.id, "strategy": o.strategy, "budget": budget, "correct": float(o.correct),
               "tokens": sum(thinking) / len(thinking) if thinking else 0.0, "total_tokens": out.tokens,
               "samples_used": o.samples_used, "n": len(out.pool), "c": sum(out.correct),
               "generation": strat.generation.name, "phase": "eval", "seed": seed,
               "answer_tokens": out.answer_tokens, "scorer_tokens": out.scorer_tokens,
               "scorer_faults": out.scorer_faults, "steps": out.steps, "params": strat.params()}
        if o.selected is not None:
            row["selected"] = o.selected
        if o.oracle:
            row["oracle"] = True
        ev.rows.append(row)
        for i, (p, ans, ok) in enumerate(zip(out.pool, out.answers, out.correct)):
            ev.samples.append({"question_id": q.id, "generation": strat.generation.name, "budget": budget, "sample": i,
                               "answer": q.answer, "completion": p.stream.text, "extracted": ans, "correct": int(ok),
                               "tokens": p.stream.thinking, "total_tokens": len(p.stream.ids),
                               "forced": p.stream.forced, "rounds": 0, "scores": {strat.scorer.name: p.value},
                               "step_scores": list(p.scores), "seed": seed})
