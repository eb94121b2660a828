"""Step-level search over partial solutions (Snell et al. 2024; Hugging Face search-and-learn).

Strategies ``beam_search``, ``lookahead`` and ``dvts`` grow a tree of partial streams one **step** at a
time, score every new step with a step scorer (:mod:`metarl.eval.step_scorers`) and keep the best.
With width N (``n``) and beam M (``beam_width``, M divides N):

* **beam search**: the first step samples N candidates; every later step gives each of the N/M kept
  paths M children (N candidates again); the N/M candidates with the best path score are kept;
* **lookahead** (k = ``lookahead`` ≥ 1): beam search in which a candidate's step score is the scorer's
  score of a rollout of k further steps from it (greedy by default, ``lookahead_temperature``); the
  rollout is discarded, only the candidate's own step is kept;
* **DVTS** (diverse verifier tree search): N/M independent subtrees; each samples M first steps, keeps
  its single best candidate and gives it M children per step — N/M greedy searches that cannot
  collapse onto one prefix.

All three are one algorithm: per question, G groups keeping K paths each (beam: G = 1, K = N/M; DVTS:
G = N/M, K = 1). Step t of every group of every question is **one** :meth:`metarl.engine.Engine.expand`
call (plus one per lookahead step), so the search is batched over questions. For a candidate c with
step scores s_1..s_t its path score is v(c) = aggregate(s_1..s_t) (``last`` / ``min`` / ``product``).
A candidate that is done (ended with EOS, closed its thought, reached the budget) joins the question's
pool of finished paths; among the others each group keeps its K best by v (ties: generation order; a
NaN score — a scorer fault under ``on_error=nan`` — is never kept). The search stops when no group has
a path left, or after ``max_steps`` steps (the kept paths then join the pool). Finished paths are ended
by :meth:`~metarl.engine.Engine.finish` (the answer after a closed thought, the suffix and a forced
answer after a cut); the final answer is chosen over the pool by v: ``weighted`` (v summed per distinct
answer, ``metrics.weighted_best_of_n``), ``best`` (``metrics.best_of_n``) or ``majority``.

**Steps**: ``step=episodes`` — a step is one episode, generated up to the next ``stop`` string
(``</attempt>``, ``</verify>``, ``</revise>`` for the tag format; ``"\\n\\n"`` for paragraph steps);
``step=segmenter`` — a step is one piece of ``segmenter`` (any metarl segmenter): the step is generated
(with the ``stop`` strings, if any) and cut after the first piece that ends past the parent; the ids
after the cut are discarded. Either way a step has at most ``step_tokens`` tokens.

**Budget and compute** (the accounting of every metarl-eval strategy): the budget B bounds the thinking
tokens of every path (the engine's cap rule: a path cut at B gets a forced answer), and a budget smaller
than one step (B < ``step_tokens``) is a configuration error. ``total_tokens`` of a result row counts
**every token the policy generated for the search** — each candidate's step, kept or pruned, the ids a
segmenter cut discarded, every lookahead rollout step — the counterpart of best-of-N's n × tokens per
sample. ``answer_tokens`` (answers and forced answers of finished paths) and ``scorer_tokens`` (tokens a
scorer generates itself: Monte Carlo forced answers, verification probes) are reported apart, as every
strategy's forced answers and verifier compute are.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from metarl.eval.sampling import Generation
from metarl.eval.step_scorers import (
    AGGREGATES,
    SELF_VERIFY_STEP,
    aggregate,
    build_step_scorer,
    is_oracle,
)
from metarl.eval.strategies import Outcome, Question, Strategy
from metarl.metrics import best_of_n, majority_vote, weighted_best_of_n
from metarl.registry import ConfigError
from metarl.rewards import apply_reward
from metarl.scoring import grade_completion
from metarl.types import Trace

DEFAULT_STOP = ("</attempt>", "</verify>", "</revise>")
"""Episode stop strings of the tag format (the built-in task), as the training rollouts use."""
SELECTS = ("weighted", "best", "majority")
STEPS = ("episodes", "segmenter")
ON_ERROR = ("zero", "nan")


@dataclass
class Path:
    """A partial solution: its stream, step scores, question and group (subtree)."""

    stream: Any  # metarl.engine.Stream
    scores: list[float]
    question: int
    group: int
    value: float = math.nan


@dataclass
class SearchOutput:
    """What one search gives for a question: the result row fields and the finished paths."""

    outcome: Outcome
    pool: list[Path]
    answers: list[str | None]
    correct: list[bool]
    tokens: int = 0
    answer_tokens: int = 0
    scorer_tokens: float = 0.0
    scorer_faults: int = 0
    steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _seed(seed: int | None, step: int, phase: int) -> int | None:
    """A distinct, reproducible seed per backend call of one search (phase: 0 expand, 1.. lookahead, -1 finish)."""
    return None if seed is None else (int(seed) * 1_000_003 + 131 * step + phase + 1) & 0x7FFFFFFF


class StepSearch(Strategy):
    """Beam search / lookahead / DVTS (see the module docstring); ``kind`` is ``beam`` or ``dvts``.

    Args: n (N, null: metarl-eval's n), beam_width (M), lookahead (k), scorer (a step scorer: a ``_target_``
    mapping or an object, :func:`~metarl.eval.step_scorers.build_step_scorer`; default the policy's own
    verdict), aggregate, select, step, stop, segmenter (a segmenter ``_target_`` mapping, with
    ``step="segmenter"``), step_tokens, max_steps, lookahead_temperature, on_error (``zero``: a faulty step
    score counts 0; ``nan``: that path is excluded), name.

    Built from config, a search takes the options of the ``search`` section (``section``); beam search and
    DVTS leave out its ``lookahead``, which only :class:`Lookahead` reads.
    """

    searches = True
    kind = "beam"
    default_name = "beam_search"
    section = "search"
    section_skip = ("lookahead",)

    def __init__(self, n: int | None = None, beam_width: int = 4, lookahead: int = 0, scorer: Any = SELF_VERIFY_STEP,
                 aggregate: str = "last", select: str = "weighted", step: str = "episodes",
                 stop: Sequence[str] | None = DEFAULT_STOP, segmenter: Any = None, step_tokens: int = 48,
                 max_steps: int | None = None, lookahead_temperature: float = 0.0, on_error: str = "zero",
                 name: str | None = None) -> None:
        self.name = name or self.default_name
        key = self.name
        for k, v in (("beam_width", beam_width), ("step_tokens", step_tokens)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{key}: {k}={v!r} must be a positive integer (search.{k})")
        for k, v in (("lookahead", lookahead),):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{key}: {k}={v!r} must be a whole number >= 0 (search.{k})")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(f"{key}: n={n!r} must be a positive integer or null (search.n)")
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
            raise ConfigError(f"{key}: max_steps={max_steps!r} must be a positive integer or null (search.max_steps)")
        for k, v, allowed in (("aggregate", aggregate, AGGREGATES), ("select", select, SELECTS),
                              ("step", step, STEPS), ("on_error", on_error, ON_ERROR)):
            if v not in allowed:
                raise ConfigError(f"{key}: {k}={v!r}; use one of {', '.join(allowed)} (search.{k})")
        if not float(lookahead_temperature) >= 0:
            raise ConfigError(f"{key}: lookahead_temperature={lookahead_temperature!r} must be >= 0")
        self.stop = tuple(stop or ())
        self.segmenter = None
        if step == "segmenter":
            if segmenter is None:
                raise ConfigError(f"{key}: step=segmenter needs search.segmenter, a segmenter mapping such as "
                                  "'{_target_: metarl.segmenters.ParagraphSegmenter}' (the built-ins: "
                                  "conf/segmenter/)")
            from metarl.registry import instantiate_callable

            try:
                self.segmenter = instantiate_callable(segmenter, "segmenter", "search.segmenter")
            except ConfigError as e:
                raise ConfigError(f"{key}: {e}") from None
            if not callable(self.segmenter):
                raise ConfigError(f"{key}: search.segmenter built {self.segmenter!r}, which is not a segmenter "
                                  "seg(text) -> pieces")
        elif not self.stop:
            raise ConfigError(f"{key}: step=episodes needs search.stop strings that end a step (e.g. "
                              "['</attempt>', '</verify>', '</revise>'] or ['\\n\\n']), or step=segmenter")
        self.n, self.beam_width, self.lookahead = n, int(beam_width), int(lookahead)
        self.aggregate, self.select_by, self.step = aggregate, select, step
        self.step_tokens, self.max_steps = int(step_tokens), max_steps
        self.lookahead_temperature, self.on_error = float(lookahead_temperature), on_error
        self.scorer = build_step_scorer(scorer, key=f"{key}: search.scorer")
        self.generation = Generation(self.name)
        if self.n is not None:
            self._check_width(self.n)

    # ------------------------------------------------------------------ configuration
    def _check_width(self, n: int) -> None:
        if self.beam_width > n or n % self.beam_width:
            raise ConfigError(f"{self.name}: beam_width={self.beam_width} must divide n={n} (search.beam_width, "
                              f"search.n): beam search keeps N/M paths, DVTS runs N/M subtrees")

    def check(self, n: int) -> None:
        if self.n is None:
            self.n = int(n)
        self._check_width(self.n)

    def check_budgets(self, budgets: Sequence[int]) -> None:
        """A budget smaller than one step cannot hold a single step: a configuration error."""
        small = sorted(b for b in budgets if b < self.step_tokens)
        if small:
            raise ConfigError(f"{self.name}: budgets {small} are smaller than one search step (step_tokens="
                              f"{self.step_tokens}); raise the budgets or lower search.step_tokens")

    @property
    def oracle(self) -> bool:
        return is_oracle(self.scorer)

    def params(self) -> dict[str, Any]:
        """The hyper-parameters a result row records (what compute-optimal selection chooses among)."""
        return {"kind": self.kind, "n": self.n, "beam_width": self.beam_width, "lookahead": self.lookahead,
                "scorer": self.scorer.name, "aggregate": self.aggregate, "select": self.select_by,
                "step": self.step, "step_tokens": self.step_tokens}

    def select(self, question: Question, samples: Sequence[Any]) -> list[Outcome]:
        raise TypeError(f"{self.name} generates its own paths: run it with evaluate_strategies (search), "
                        "not on parallel samples")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, n={self.n}, beam_width={self.beam_width}, k={self.lookahead})"

    # ------------------------------------------------------------------ the search
    def _layout(self) -> tuple[int, int, int]:
        """(groups per question G, paths kept per group K, first-step candidates per group)."""
        n, m = int(self.n), self.beam_width
        return (1, n // m, n) if self.kind == "beam" else (n // m, 1, m)

    def _cut(self, engine: Any, parent_len: int, child: Any) -> None:
        """``step=segmenter``: cut the child after the first segmenter piece that ends past the parent."""
        from metarl.segmenters import segment

        if self.segmenter is None or len(child.ids) <= parent_len + 1:
            return
        episodes = segment(self.segmenter, child.text, token_ids=child.ids, tokenizer=engine.tokenizer)
        for e in episodes[:-1]:
            if parent_len < e.token_end < len(child.ids):
                child.truncate(e.token_end, engine.backend.eos_ids)
                child.text = engine.decode(child.ids)
                return

    def _grow(self, engine: Any, parents: list[Any], n: int, budget: int, sampling: Any, seed: int | None,
              spent: list[int], owner: list[int]) -> list[list[Any]]:
        """One step for every parent (n children each); every generated id is added to ``spent`` of its question."""
        children = engine.expand(parents, n, budget, sampling, stop=self.stop, step_tokens=self.step_tokens, seed=seed)
        for parent, kids, q in zip(parents, children, owner):
            for c in kids:
                spent[q] += len(c.ids) - len(parent.ids)
                self._cut(engine, len(parent.ids), c)
        return children

    def _score(self, engine: Any, streams: list[Any], owner: list[int], questions: Sequence[Question],
               grade: Callable[..., bool], extract: Callable[[str], str | None],
               scorer_tokens: list[float], faults: list[int]) -> list[float]:
        if not streams:
            return []
        traces = [Trace(prompt=questions[q].prompt_text, completion=s.text, answer=questions[q].answer,
                        completion_ids=list(s.ids), prompt_ids=list(s.prompt_ids)) for s, q in zip(streams, owner)]
        context = {"engine": engine, "model": getattr(engine.backend, "model", None), "tokenizer": engine.tokenizer,
                   "prover": engine.prover, "grader": grade, "extract_answer": extract}
        apply_reward(self.scorer, traces, context, on_error=self.on_error)
        out = []
        for t, q in zip(traces, owner):
            scorer_tokens[q] += float(t.meta.get("scorer_tokens", 0))
            faults[q] += sum(t.meta.get("reward_faults", {}).values())
            out.append(float(t.rewards.get(self.scorer.name, math.nan)))
        return out

    def _lookahead(self, engine: Any, children: list[Any], owner: list[int], budget: int, step: int,
                   seed: int | None, spent: list[int]) -> list[Any]:
        """k-step rollouts of the children that are not done (the children themselves otherwise)."""
        from metarl.engine import Sampling

        rolls = list(children)
        if not self.lookahead:
            return rolls
        sampling = Sampling(self.lookahead_temperature)
        for j in range(self.lookahead):
            live = [i for i, r in enumerate(rolls) if not r.done]
            if not live:
                break
            grown = self._grow(engine, [rolls[i] for i in live], 1, budget, sampling, _seed(seed, step, 1 + j),
                               spent, [owner[i] for i in live])
            for i, (c,) in zip(live, grown):
                rolls[i] = c
        return rolls

    def search(self, questions: Sequence[Question], sampler: Any, budget: int, *, seed: int | None,
               extract: Callable[[str], str | None], grade: Callable[..., bool],
               prompt_for: Callable[[Question, int], Any] | None = None) -> list[SearchOutput]:
        """Search every question at ``budget`` (batched over questions); one :class:`SearchOutput` each."""
        from metarl.engine.streams import Stream

        engine, sampling = getattr(sampler, "engine", None), getattr(sampler, "sampling", None)
        if engine is None or sampling is None:
            raise TypeError(f"{self.name} needs a sampler with the generation engine (metarl.eval.sampling."
                            f"PolicySampler), got {type(sampler).__name__}")
        if self.n is None:
            raise ConfigError(f"{self.name}: n is not set (search.n, or metarl-eval's n)")
        self.check_budgets([budget])
        nq = len(questions)
        groups, keep, first = self._layout()
        spent, scorer_tokens, faults, steps = [0] * nq, [0.0] * nq, [0] * nq, [0] * nq
        prompts = sampler.prompt_ids([prompt_for(q, budget) if prompt_for else q.prompt for q in questions])
        frontier = [Path(Stream(list(p)), [], qi, g) for qi, p in enumerate(prompts) for g in range(groups)]
        pool: list[list[Path]] = [[] for _ in questions]
        t = 0
        while frontier:
            if self.max_steps is not None and t >= self.max_steps:
                for p in frontier:
                    pool[p.question].append(p)
                break
            owner = [p.question for p in frontier]
            kids = self._grow(engine, [p.stream for p in frontier], first if t == 0 else self.beam_width, budget,
                              sampling, _seed(seed, t, 0), spent, owner)
            cands = [Path(c, list(p.scores), p.question, p.group) for p, cs in zip(frontier, kids) for c in cs]
            rolls = self._lookahead(engine, [c.stream for c in cands], [c.question for c in cands], budget, t, seed,
                                    spent)
            scores = self._score(engine, rolls, [c.question for c in cands], questions, grade, extract,
                                 scorer_tokens, faults)
            by_group: dict[tuple[int, int], list[Path]] = {}
            for c, s in zip(cands, scores):
                c.scores.append(s)
                c.value = aggregate(c.scores, self.aggregate)
                steps[c.question] = t + 1
                if c.stream.done:
                    pool[c.question].append(c)
                else:
                    by_group.setdefault((c.question, c.group), []).append(c)
            frontier = []
            for members in by_group.values():
                ranked = sorted((c for c in members if not math.isnan(c.value)), key=lambda c: -c.value)
                frontier += ranked[:keep]
            frontier.sort(key=lambda p: (p.question, p.group))
            t += 1
        finished = [p.stream for ps in pool for p in ps]
        engine.finish(finished, sampling, _seed(seed, t, -1))
        return [self._result(questions[qi], pool[qi], extract, grade, spent[qi], scorer_tokens[qi], faults[qi],
                             steps[qi]) for qi in range(nq)]

    def _result(self, q: Question, pool: list[Path], extract: Callable[[str], str | None], grade: Callable[..., bool],
                spent: int, scorer_tokens: float, faults: int, steps: int) -> SearchOutput:
        grades = [grade_completion(grade, extract, p.stream.text, q.answer, q.prompt_text) for p in pool]
        answers = [g.prediction for g in grades]
        correct = [g.outcome == 1.0 for g in grades]
        usable = [i for i, p in enumerate(pool) if not math.isnan(p.value)]
        ans = [answers[i] for i in usable]
        vals = [pool[i].value for i in usable]
        if self.select_by == "weighted":
            chosen = weighted_best_of_n(ans, vals)
        elif self.select_by == "best":
            chosen = best_of_n(ans, vals)
        else:
            chosen = majority_vote(ans)
        ok = float(correct[answers.index(chosen)]) if chosen is not None else 0.0
        answer_tokens = sum(sum(p.stream.mask[p.stream.thinking:]) for p in pool)
        outcome = Outcome(self.name, ok, int(self.n), chosen, oracle=self.oracle)
        return SearchOutput(outcome, pool, answers, correct, spent, answer_tokens, scorer_tokens, faults, steps)


class BeamSearch(StepSearch):
    """Beam search: width N, beam M, keep the N/M best candidates per step (``lookahead`` = 0 by default)."""

    kind = "beam"
    default_name = "beam_search"


class Lookahead(StepSearch):
    """Lookahead search: beam search whose step scores come from k-step rollouts (k = ``lookahead`` ≥ 1)."""

    kind = "beam"
    default_name = "lookahead"
    section_skip = ()

    def __init__(self, lookahead: int = 1, **kwargs: Any) -> None:
        if isinstance(lookahead, bool) or not isinstance(lookahead, int) or lookahead < 1:
            raise ConfigError(f"{kwargs.get('name') or self.default_name}: lookahead={lookahead!r} must be a "
                              "positive integer (search.lookahead: steps rolled out to score a step)")
        super().__init__(lookahead=lookahead, **kwargs)


class DVTS(StepSearch):
    """Diverse verifier tree search: N/M independent subtrees, each keeping its best path (M children per step)."""

    kind = "dvts"
    default_name = "dvts"
