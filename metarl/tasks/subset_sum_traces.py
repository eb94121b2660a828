"""Synthetic attempt / verify / revise traces for subset sum, written by a noisy solver.

The traces teach a small model the tag format and a habit of checking its own work::

    <attempt>3+9</attempt><verify>3+9=12!=20 incorrect</verify><revise>8+12</revise><verify>8+12=20 correct</verify>

The solver guesses (a correct expression with probability ``p_correct``, otherwise a wrong one it has not
tried), verifies by computing the sum and comparing it with the target — with an arithmetic slip of
probability ``p_slip`` that flips the verdict — and after an "incorrect" verdict revises with
probability ``p_continue``, up to ``max_attempts`` attempts. Wrong first attempts followed by revisions
are common, so more attempts help; verifying (one sum) is easier than finding (a search over subsets).

:meth:`NoisySolver.forced_answer_example` cuts a trace at an episode boundary (or inside an episode) and
writes what the meta-prover's forced answer should be: the candidate the prefix last verified as correct, else the
pending unverified attempt, else a fresh guess among the candidates not yet rejected.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from metarl.prover import TAG_PROVER
from metarl.tasks.base import tagged_blocks
from metarl.tasks.subset_sum import Level, format_expression, parse_expression


#: Forced-answer rules of :meth:`NoisySolver.forced_answer`.
FORCED_RULES = ("believed", "last")
#: Which episodes :meth:`NoisySolver.forced_answer_example` may cut inside (``p_mid``): any, or verify blocks only.
MID_BLOCKS = ("any", "verify")


def candidates(numbers: list[int], lv: Level) -> list[list[int]]:
    """Every expression shape the level allows: ordered subsets (in prompt order) of ``min_terms..max_terms``
    numbers, first term added, the others with any of the level's operators."""
    signs = [1] + ([-1] if "-" in lv.ops else [])
    if "+" not in lv.ops:
        signs = [-1]
    out: list[list[int]] = []
    for k in range(lv.min_terms, lv.max_terms + 1):
        for idx in itertools.combinations(range(len(numbers)), k):
            for rest in itertools.product(signs, repeat=k - 1):
                out.append([numbers[idx[0]]] + [s * numbers[i] for s, i in zip(rest, idx[1:])])
    return out


def _slipped(value: int, rng: random.Random) -> int:
    """A sum stated with an arithmetic slip: off by 1 or 2, still positive."""
    return value + rng.choice([d for d in (-2, -1, 1, 2) if value + d > 0])


def attempt_block(terms: list[int], first: bool) -> str:
    """``<attempt>3+9</attempt>`` (first attempt) or ``<revise>3+9</revise>``."""
    tag = "attempt" if first else "revise"
    return f"<{tag}>{format_expression(terms)}</{tag}>"


def verify_block(terms: list[int], stated_value: int, target: int) -> str:
    """``<verify>3+9=12!=20 incorrect</verify>`` or ``<verify>8+12=20 correct</verify>``: the verdict follows
    from the *stated* value (a slip states a wrong value)."""
    expr = format_expression(terms)
    if stated_value == target:
        return f"<verify>{expr}={stated_value} correct</verify>"
    return f"<verify>{expr}={stated_value}!={target} incorrect</verify>"


@dataclass(frozen=True)
class SolverConfig:
    """How the noisy solver behaves (part of the warm-start recipe)."""

    p_correct: float = 0.3
    p_slip: float = 0.1
    p_continue: float = 0.85
    max_attempts: int = 4

    def __post_init__(self) -> None:
        for k in ("p_correct", "p_slip", "p_continue"):
            v = getattr(self, k)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"SolverConfig.{k} must lie in [0, 1], got {v}")
        if self.max_attempts < 1:
            raise ValueError(f"SolverConfig.max_attempts must be >= 1, got {self.max_attempts}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SolverRound:
    """One attempt and its verification: the expression tried, whether it is correct, the value the
    verification states and the verdict that follows."""

    terms: list[int]
    correct: bool
    stated_value: int | None = None
    verdict: bool | None = None


@dataclass
class SolverTrace:
    """A synthetic completion and the rounds it was made of."""

    prompt: str
    completion: str
    rounds: list[SolverRound] = field(default_factory=list)


class NoisySolver:
    """Writes attempt / verify / revise traces for subset-sum problems (see the module docstring)."""

    def __init__(self, level: Level, config: SolverConfig | None = None) -> None:
        self.level = level
        self.config = config or SolverConfig()

    def _guess(self, rng: random.Random, pool: list[list[int]], target: int) -> list[int] | None:
        right = [c for c in pool if sum(c) == target]
        wrong = [c for c in pool if sum(c) != target]
        if right and (not wrong or rng.random() < self.config.p_correct):
            return rng.choice(right)
        return rng.choice(wrong) if wrong else None

    def _stated_value(self, rng: random.Random, terms: list[int], target: int) -> int:
        value = sum(terms)
        if rng.random() >= self.config.p_slip:
            return value
        if value != target:
            return target  # a slip that makes a wrong attempt look right
        return _slipped(value, rng)  # and a right one look wrong

    def trace(self, problem: dict[str, Any], rng: random.Random) -> SolverTrace:
        """One synthetic completion for ``problem`` (a dict from ``SubsetSumTask.generate``)."""
        numbers, target = list(problem["numbers"]), int(problem["target"])
        pool = candidates(numbers, self.level)
        rounds: list[SolverRound] = []
        parts: list[str] = []
        for i in range(self.config.max_attempts):
            terms = self._guess(rng, pool, target)
            if terms is None:
                break
            pool = [c for c in pool if c != terms]
            stated = self._stated_value(rng, terms, target)
            rnd = SolverRound(terms, sum(terms) == target, stated, stated == target)
            rounds.append(rnd)
            parts += [attempt_block(terms, first=i == 0), verify_block(terms, stated, target)]
            if rnd.verdict or rng.random() >= self.config.p_continue:
                break
        return SolverTrace(problem["prompt"], "".join(parts), rounds)

    def forced_answer(self, prefix: str, problem: dict[str, Any], rng: random.Random, rule: str = "believed") -> str:
        """What the meta-prover should answer after ``prefix``: the last candidate verified correct, else a
        pending unverified attempt, else a fresh guess among candidates the prefix has not rejected
        (``rule="believed"``); with ``rule="last"``, the last candidate stated, whatever its verdict (a fresh
        guess before any)."""
        if rule not in FORCED_RULES:
            raise ValueError(f"forced-answer rule {rule!r}: use one of {', '.join(FORCED_RULES)}")
        numbers, target = list(problem["numbers"]), int(problem["target"])
        rejected: set[str] = set()
        believed: str | None = None
        pending: str | None = None
        last: str | None = None
        for tag, content in tagged_blocks(prefix):
            if tag in ("attempt", "revise"):
                pending = last = "".join(content.split())
            elif tag == "verify" and pending is not None:
                if content.rstrip().endswith("incorrect"):
                    rejected.add(pending)
                else:
                    believed = pending
                pending = None
        if rule == "last" and last is not None:
            return last
        if believed is not None:
            return believed
        if pending is not None:
            return pending
        pool = [c for c in candidates(numbers, self.level) if format_expression(c) not in rejected]
        guess = self._guess(rng, pool, target) if pool else None
        return format_expression(guess) if guess else format_expression(candidates(numbers, self.level)[0])

    def rejected_right_example(self, problem: dict[str, Any], rng: random.Random) -> dict[str, str]:
        """A forced-answer example right after a slip that rejected a *right* candidate, answering that candidate
        (the ``"last"`` rule; the ``"believed"`` rule would not answer it): 0 to ``max_attempts − 1`` wrong
        candidates rejected rightly, then a right one whose verification states its sum off by 1 or 2. The
        solver's own traces hold this case in p_correct·p_slip of their rounds only, while a policy that verifies
        worse than the solver rejects right candidates far more often, and its forced answer must still restate
        them for Monte Carlo progress not to punish verification (docs/results_mrt_setting.md).

        >>> from metarl.tasks.subset_sum import SubsetSumTask
        >>> task = SubsetSumTask(difficulty=2)
        >>> p = task.generate("train", 1, seed=0)[0]
        >>> e = NoisySolver(task.level()).rejected_right_example(p, random.Random(0))
        >>> answer = e["completion"].removesuffix("</answer>")
        >>> sum(parse_expression(answer)) == p["target"]
        True
        >>> last_verify = e["prompt"].removesuffix("<answer>").rsplit("<verify>", 1)[1]
        >>> last_verify.startswith(answer + "="), last_verify.endswith(" incorrect</verify>")
        (True, True)
        """
        numbers, target = list(problem["numbers"]), int(problem["target"])
        pool = candidates(numbers, self.level)
        right = [c for c in pool if sum(c) == target]
        wrong = [c for c in pool if sum(c) != target]
        if not right:
            raise ValueError(f"problem {problem.get('prompt')!r} has no solution among the level's expressions")
        k = min(rng.randrange(self.config.max_attempts), len(wrong))
        parts: list[str] = []
        for i, terms in enumerate(rng.sample(wrong, k)):
            parts += [attempt_block(terms, first=i == 0), verify_block(terms, sum(terms), target)]
        terms = rng.choice(right)
        stated = _slipped(target, rng)
        parts += [attempt_block(terms, first=k == 0), verify_block(terms, stated, target)]
        return {"prompt": problem["prompt"] + "".join(parts) + TAG_PROVER.suffix,
                "completion": format_expression(terms) + TAG_PROVER.answer_stop[0]}

    def forced_answer_example(self, trace: SolverTrace, problem: dict[str, Any], rng: random.Random,
                              p_final: float | None = None, rule: str = "believed",
                              p_mid: float = 0.0, mid_blocks: str = "any") -> dict[str, str]:
        """A prompt/completion pair teaching the forced answer: the prompt is the problem, a prefix of
        ``trace`` cut at an episode boundary and the tag format's termination suffix (``"<answer>"``,
        :data:`metarl.prover.TAG_PROVER`); the completion is the answer (:meth:`forced_answer` with ``rule``)
        and ``"</answer>"`` (so SFT's completion-only loss trains the answer alone).

        The cut is uniform over the boundaries (``p_final=None``), or the end of the whole trace with
        probability ``p_final`` and otherwise uniform over the other boundaries: the whole trace is the
        prefix that the meta-prover's last value Ĵ_last is measured on.

        With probability ``p_mid`` (drawn only when ``p_mid > 0``, so the default leaves ``rng``'s stream as it
        was) the cut is instead uniform over the positions strictly inside an episode (a block), as a cap cuts a
        stream; the answer is then :meth:`forced_answer` on the prefix up to that episode's start (to its end when
        only its closing tag is cut), i.e. a cut inside a verify block answers the candidate it verifies, and a
        cut inside an attempt's expression ignores the unfinished candidate. ``mid_blocks="verify"`` cuts inside
        verify blocks only (where a cap cutting a verification leaves the candidate it verifies as the answer,
        which the "last" rule restates: no conflict with copying the last candidate)."""
        if mid_blocks not in MID_BLOCKS:
            raise ValueError(f"mid_blocks {mid_blocks!r}: use one of {', '.join(MID_BLOCKS)}")
        ends = [0]
        for r in range(len(trace.rounds)):
            a = len(attempt_block(trace.rounds[r].terms, first=r == 0))
            ends.append(ends[-1] + a)
            ends.append(trace.completion.index("</verify>", ends[-1]) + len("</verify>"))
        blocks = list(zip(ends, ends[1:]))  # attempt, verify, attempt, verify, ...
        if mid_blocks == "verify":
            blocks = blocks[1::2]
        inside = [i for a, b in blocks for i in range(a + 1, b)]
        if p_mid > 0 and inside and rng.random() < p_mid:
            cut = rng.choice(inside)
            start, end = max(e for e in ends if e < cut), min(e for e in ends if e > cut)
            closing = trace.completion.rindex("</", start, end)
            if cut > closing:  # only the closing tag is unfinished: the block's content is complete
                start = end
        elif p_final is None:
            cut = start = rng.choice(ends)
        else:
            cut = start = ends[-1] if rng.random() < p_final else rng.choice(ends[:-1])
        prefix = trace.completion[:cut]
        answer = self.forced_answer(trace.completion[:start], problem, rng, rule=rule)
        assert parse_expression(answer) is not None
        return {"prompt": trace.prompt + prefix + TAG_PROVER.suffix, "completion": answer + TAG_PROVER.answer_stop[0]}
