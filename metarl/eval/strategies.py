"""Test-time strategies (Snell et al.; s1): how ``n`` samples of a question become a graded result.

Every strategy has a :class:`~metarl.eval.sampling.Generation` (how its samples are drawn; strategies
with equal generations share one set of samples per budget) and ``select(question, samples)``, which
returns one :class:`Outcome` per reported strategy name. A strategy is a ``_target_`` mapping built with
:func:`metarl.registry.instantiate_callable`; the built-ins are the files of the config group
``conf/strategies/`` (named by file, reported by the names below):

* ``pass_at_k`` (:class:`PassAtK`): unbiased pass@k ``1 − C(n−c, k)/C(n, k)`` for each k, reported as
  ``pass@1``, ``pass@4``, …;
* ``majority`` (:class:`MajorityVote`): majority vote over the samples' extracted answers (ties: the answer
  seen first);
* ``best_of_n`` (:class:`BestOfN`): the answer of the sample with the highest verifier score;
* ``weighted_best_of_n`` (:class:`WeightedBestOfN`): verifier scores summed per distinct answer, the heaviest
  answer wins;
* ``revisions`` (:class:`SequentialRevisions`): sequential revisions — after a stream stops, the task's
  revision cue (``<revise>``) is appended and it continues, ``rounds`` times, all rounds within the budget;
  the final answer is the last one stated; reported: the mean correctness of the ``n`` chains;
* ``budget_forcing`` (:class:`BudgetForcing`): s1 — when the stream stops before the budget its end becomes
  ``continuation`` ("Wait") and it continues; at the budget an answer is forced; reported like ``revisions``;
* ``beam_search``, ``lookahead``, ``dvts`` (:mod:`metarl.eval.search`): step-level search scored by a step scorer
  (:mod:`metarl.eval.search`); they generate their own paths (``searches = True``) instead of selecting
  among parallel samples.

``best_of_n`` / ``weighted_best_of_n`` with ``ks`` also report Best-of-k (``<name>@k``): the rule's
expected correctness on a random k-subset of the n samples.

Tokens: the budget bounds the thinking tokens of **each sample**. ``Outcome.samples_used`` says how
many samples the strategy's answer consumes (k for pass@k, n for voting and Best-of-N, 1 for a chain),
so total tokens = samples_used × mean tokens per sample.

Options: a strategy class with a ``section`` (``pass_at_k``, ``best_of_n``, ``revisions``,
``budget_forcing``, ``search``) takes the keyword arguments of that config section (:func:`build_strategies`
``sections``) unless its own spec sets them, so ``pass_at_k.k=[1,2,8]`` configures every PassAtK.

A custom strategy is a :class:`Strategy` subclass (``{_target_: my_pkg.mod.MyStrategy}``) or a plain
function ``fn(question, samples) -> float | bool`` (correctness from parallel samples) marked
``_partial_: true`` (``{_target_: my_pkg.mod.fn, _partial_: true}``).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metarl.eval.sampling import PARALLEL, UNLIMITED_ROUNDS, Generation
from metarl.eval.answer_scorers import build_verifier, verifier_name
from metarl.metrics import best_of_n, majority_vote, pass_at_k, weighted_best_of_n
from metarl.registry import ConfigError, instantiate_callable, plain, target_of


@dataclass(frozen=True)
class Question:
    """A held-out question: id, prompt (text or chat messages), gold answer, optional extra fields."""

    id: str
    prompt: Any
    answer: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def prompt_text(self) -> str:
        """The prompt as one string (chat messages joined), as graders and verifiers read it."""
        if isinstance(self.prompt, str):
            return self.prompt
        return "\n".join(str(m.get("content", "")) for m in self.prompt)


@dataclass
class GradedSample:
    """A sample with its extracted answer and correctness; ``scores`` caches verifier scores by name."""

    index: int
    completion: str
    answer: str | None
    correct: bool
    thinking_tokens: int
    tokens: int
    forced: bool = False
    rounds: int = 0
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """One result of a strategy on one question: correctness in [0, 1] (a fraction for pass@k and
    chains), how many samples the answer consumes, the selected answer when there is one; ``oracle``:
    the result reads the gold answer (pass@k for k > 1, a search scored by μ's J), so it bounds what a
    deployable strategy can do and compute-optimal selection leaves it out."""

    strategy: str
    correct: float
    samples_used: int
    selected: str | None = None
    oracle: bool = False


def verifier_scores(verifier: Callable[..., float], question: Question,
                    samples: Sequence[GradedSample]) -> list[float]:
    """``verifier(prompt, completion, answer)`` for every sample, computed once and cached on the sample."""
    name = verifier_name(verifier)
    out = []
    for s in samples:
        if name not in s.scores:
            v = float(verifier(question.prompt, s.completion, s.answer))
            if not math.isfinite(v):
                raise ValueError(f"verifier {name!r} returned {v} for question {question.id!r} sample {s.index}; "
                                 "scores must be finite numbers")
            s.scores[name] = v
        out.append(s.scores[name])
    return out


def _correct_of(samples: Sequence[GradedSample], selected: str | None) -> float:
    """Correctness of a selected answer: that of the first sample stating exactly that text."""
    if selected is None:
        return 0.0
    answers = [s.answer for s in samples]
    return float(samples[answers.index(selected)].correct)


class Strategy(ABC):
    """A test-time strategy: ``generation`` says how samples are drawn, ``select`` grades them."""

    name: str = "strategy"
    generation: Generation = PARALLEL
    section: str | None = None
    """The config section whose options this strategy takes (see :func:`build_strategies`)."""
    section_skip: tuple[str, ...] = ()
    """Keys of that section this strategy does not take."""

    def names(self) -> list[str]:
        """The strategy names this strategy reports (one result row each per question and budget)."""
        return [self.name]

    def check(self, n: int) -> None:
        """Raise ``ConfigError`` if the strategy cannot run with ``n`` samples per question."""

    @abstractmethod
    def select(self, question: Question, samples: Sequence[GradedSample]) -> list[Outcome]:
        """One :class:`Outcome` per name in :meth:`names`."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.generation})"


class PassAtK(Strategy):
    """Unbiased pass@k from ``n`` samples for every k in ``k`` (Chen et al. 2021), via ``metrics.pass_at_k``."""

    section = "pass_at_k"

    def __init__(self, k: Sequence[int] | int = (1,), name: str = "pass@k") -> None:
        ks = [k] if isinstance(k, int) else list(k)
        if not ks or any(isinstance(x, bool) or int(x) != x or x < 1 for x in ks):
            raise ConfigError(f"pass_at_k: k must be a list of positive integers (pass_at_k.k), got {k!r}")
        self.k = sorted({int(x) for x in ks})
        self.name = name

    def names(self) -> list[str]:
        return [f"pass@{k}" for k in self.k]

    def check(self, n: int) -> None:
        bad = [k for k in self.k if k > n]
        if bad:
            raise ConfigError(f"pass_at_k: k={bad} exceeds n={n} samples per question; raise n or drop those k "
                              "(pass_at_k.k)")

    def select(self, question: Question, samples: Sequence[GradedSample]) -> list[Outcome]:
        n, c = len(samples), sum(s.correct for s in samples)
        return [Outcome(f"pass@{k}", pass_at_k(n, c, k), k, oracle=k > 1) for k in self.k]


class MajorityVote(Strategy):
    """Majority vote over the extracted answers (``metrics.majority_vote``; unanswered samples do not vote)."""

    def __init__(self, name: str = "majority") -> None:
        self.name = name

    def select(self, question: Question, samples: Sequence[GradedSample]) -> list[Outcome]:
        chosen = majority_vote([s.answer for s in samples])
        return [Outcome(self.name, _correct_of(samples, chosen), len(samples), chosen)]


SUBSETS = 256
"""Best-of-k from n samples: every k-subset when there are at most this many, else this many random ones."""


def subset_mean(n: int, k: int, value: Callable[[Sequence[int]], float], key: str) -> float:
    """Mean of ``value(subset)`` over the k-subsets of ``range(n)``: all C(n, k) of them when C(n, k) <=
    :data:`SUBSETS`, else :data:`SUBSETS` uniform random subsets drawn with a generator seeded by ``key``
    (the question id, so the estimate does not depend on other questions)."""
    import itertools
    import random

    if math.comb(n, k) <= SUBSETS:
        subsets: Sequence[Sequence[int]] = list(itertools.combinations(range(n), k))
    else:
        rng = random.Random(f"subsets|{key}|{n}|{k}")
        subsets = [sorted(rng.sample(range(n), k)) for _ in range(SUBSETS)]
    return sum(value(s) for s in subsets) / len(subsets)


class BestOfN(Strategy):
    """The answer of the highest-scoring sample under ``verifier`` (``metrics.best_of_n``).

    ``ks``: also report Best-of-k for each k < n as ``<name>@k`` — the expected correctness of the rule on
    a random k-subset of the n samples (:func:`subset_mean`), consuming k samples: Best-of-N at a fraction
    of the compute, without drawing new samples (the compute-optimal baseline's curve).
    """

    rule = staticmethod(best_of_n)
    section = "best_of_n"

    def __init__(self, verifier: Any = None, name: str = "best_of_n", ks: Sequence[int] | None = None) -> None:
        self.verifier = build_verifier(verifier, key="best_of_n.verifier")
        self.name = name
        ks = list(ks or [])
        if any(isinstance(k, bool) or int(k) != k or k < 1 for k in ks):
            raise ConfigError(f"{name}: ks must be a list of positive integers (best_of_n.ks), got {ks!r}")
        self.ks = sorted({int(k) for k in ks})
        self._n: int | None = None

    def check(self, n: int) -> None:
        bad = [k for k in self.ks if k > n]
        if bad:
            raise ConfigError(f"{self.name}: ks={bad} exceed n={n} samples per question (best_of_n.ks)")
        self._n = n

    def names(self) -> list[str]:
        return [f"{self.name}@{k}" for k in self.ks if self._n is None or k < self._n] + [self.name]

    def select(self, question: Question, samples: Sequence[GradedSample]) -> list[Outcome]:
        scores = verifier_scores(self.verifier, question, samples)
        answers = [s.answer for s in samples]

        def correct(idx: Sequence[int]) -> float:
            sub = [samples[i] for i in idx]
            return _correct_of(sub, self.rule([answers[i] for i in idx], [scores[i] for i in idx]))

        n = len(samples)
        out = [Outcome(f"{self.name}@{k}", subset_mean(n, k, correct, question.id), k) for k in self.ks if k < n]
        chosen = self.rule(answers, scores)
        return out + [Outcome(self.name, _correct_of(samples, chosen), n, chosen)]


class WeightedBestOfN(BestOfN):
    """Verifier scores summed per distinct answer; the heaviest answer wins (``metrics.weighted_best_of_n``)."""

    rule = staticmethod(weighted_best_of_n)

    def __init__(self, verifier: Any = None, name: str = "weighted_best_of_n",
                 ks: Sequence[int] | None = None) -> None:
        super().__init__(verifier, name, ks)


class _Chains(Strategy):
    """Each sample is one chain whose final (last stated) answer is graded; reports the mean over chains."""

    def select(self, question: Question, samples: Sequence[GradedSample]) -> list[Outcome]:
        if not samples:
            return [Outcome(self.name, 0.0, 1)]
        return [Outcome(self.name, sum(s.correct for s in samples) / len(samples), 1)]


class SequentialRevisions(_Chains):
    """Snell et al.'s sequential revisions: ``rounds`` times, append ``cue`` after the stream stops and
    continue; the budget covers all rounds; the final answer is the last one stated."""

    section = "revisions"

    def __init__(self, rounds: int = 2, cue: str = "<revise>", name: str = "revisions") -> None:
        if isinstance(rounds, bool) or int(rounds) != rounds or rounds < 1:
            raise ConfigError(f"revisions.rounds must be a positive integer, got {rounds!r}")
        if not cue:
            raise ConfigError("revisions.cue is empty; set the revision cue, e.g. '<revise>'")
        self.name, self.rounds, self.cue = name, int(rounds), cue
        self.generation = Generation(name, continuation=cue, max_rounds=int(rounds))


class BudgetForcing(_Chains):
    """s1 budget forcing: a stream that stops before the budget has its end replaced by ``continuation``
    and continues (at most ``max_continuations`` times; None: while the budget lasts); at the budget
    an answer is forced with the termination suffix."""

    section = "budget_forcing"

    def __init__(self, continuation: str = "Wait", max_continuations: int | None = None,
                 name: str = "budget_forcing") -> None:
        if not continuation:
            raise ConfigError("budget_forcing.continuation is empty; use e.g. 'Wait' (or '<revise>' for tags)")
        if max_continuations is not None and (int(max_continuations) != max_continuations or max_continuations < 1):
            raise ConfigError(f"budget_forcing.max_continuations must be a positive integer or null, "
                              f"got {max_continuations!r}")
        self.name, self.continuation = name, continuation
        rounds = UNLIMITED_ROUNDS if max_continuations is None else int(max_continuations)
        self.generation = Generation(name, continuation=continuation, max_rounds=rounds)


class FunctionStrategy(Strategy):
    """A plain function ``fn(question, samples) -> float | bool`` over parallel samples, as a strategy."""

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        self.fn = fn
        self.name = name or getattr(getattr(fn, "func", fn), "__name__", "custom")

    def select(self, question: Question, samples: Sequence[GradedSample]) -> list[Outcome]:
        v = self.fn(question, samples)
        if isinstance(v, list):
            return v
        v = float(v)
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"strategy {self.name!r} returned {v} for question {question.id!r}; "
                             "return a correctness in [0, 1]")
        return [Outcome(self.name, v, len(samples))]


def build_strategy(spec: Any, sections: Mapping[str, Mapping[str, Any]] | None = None,
                   key: str = "strategy") -> Strategy:
    """A strategy from a ``_target_`` mapping, a :class:`Strategy` or a function ``fn(question, samples)``.

    When the target is a Strategy class with a ``section``, ``sections[section]`` supplies the keyword
    arguments the spec does not give (the config sections ``pass_at_k``, ``best_of_n``, ``revisions``,
    ``budget_forcing``, ``search``). A function named by a mapping says ``_partial_: true``. Errors are
    :class:`~metarl.registry.ConfigError` naming ``key``.

    >>> build_strategy({"_target_": "metarl.eval.strategies.PassAtK"}, {"pass_at_k": {"k": [1, 4]}}).names()
    ['pass@1', 'pass@4']
    >>> build_strategy("majority", key="strategies.mine")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    metarl.registry.ConfigError: strategies.mine='majority': a strategy is a mapping with `_target_` ...
    """
    if isinstance(spec, Strategy):
        return spec
    spec = plain(spec)
    if callable(spec) and not isinstance(spec, str | Mapping):
        return FunctionStrategy(spec)
    if isinstance(spec, Mapping):
        cls = target_of(spec)
        section = getattr(cls, "section", None) if isinstance(cls, type) and issubclass(cls, Strategy) else None
        if section and sections and sections.get(section):
            skip = set(cls.section_skip)
            spec = {**{k: v for k, v in dict(sections[section]).items() if k not in skip}, **dict(spec)}
    elif not isinstance(spec, str):
        raise ConfigError(f"{key}: cannot build a strategy from {spec!r}; give a mapping with `_target_`")
    obj = instantiate_callable(spec, "strategy", key)
    if isinstance(obj, Strategy):
        return obj
    if callable(obj):
        return FunctionStrategy(obj)
    raise ConfigError(f"{key}: {spec.get('_target_')} built {obj!r}, which is neither a Strategy nor a function "
                      "(a function strategy's config says `_partial_: true`)")


def build_strategies(specs: Mapping[str, Any] | Sequence[Any], n: int,
                     sections: Mapping[str, Mapping[str, Any]] | None = None) -> list[Strategy]:
    """Build every strategy, check it can run with ``n`` samples, and check reported names are unique.

    ``specs``: the config's ``strategies`` mapping (name -> ``_target_`` spec, the multi-select group
    ``conf/strategies/``; errors name ``strategies.<name>``), or a list of specs, Strategy objects and
    functions (Python callers). ``sections``: the option sections of :func:`build_strategy`.
    """
    specs = plain(specs)
    if isinstance(specs, Mapping):
        items = [(f"strategies.{name}", spec) for name, spec in specs.items() if spec is not None]
    elif isinstance(specs, str) or not isinstance(specs, Sequence):
        items = []
    else:
        items = [(f"strategies[{i}]", spec) for i, spec in enumerate(specs)]
    if not items:
        raise ConfigError(f"strategies must name at least one strategy (a mapping name -> spec, e.g. "
                          f"strategies=[pass_at_k,majority] from conf/strategies/, or a list of specs), got {specs!r}")
    out = [build_strategy(s, sections, key) for key, s in items]
    seen: dict[str, Strategy] = {}
    gens: dict[str, Generation] = {}
    for s in out:
        s.check(n)
        for name in s.names():
            if name in seen:
                raise ConfigError(f"two strategies report {name!r} ({seen[name]!r} and {s!r}); give one a `name`")
            seen[name] = s
        g = s.generation
        if g.name in gens and gens[g.name] != g:
            raise ConfigError(f"two strategies draw samples named {g.name!r} differently ({gens[g.name]} vs {g}); "
                              "give one a different `name`")
        gens[g.name] = g
    return out


def bind_verifiers(strategies: Sequence[Strategy], model, tokenizer) -> None:
    """Give the policy to every strategy verifier (and search step scorer) that asks for it (has
    ``bind(model, tokenizer)``); a process reward model loads here, before any generation."""
    for s in strategies:
        for obj in (getattr(s, "verifier", None), getattr(getattr(s, "scorer", None), "fn", None)):
            bind = getattr(obj, "bind", None)
            if callable(bind):
                bind(model, tokenizer)
