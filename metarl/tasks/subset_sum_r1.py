"""R1-style ``<think>`` traces for subset sum, written by the noisy solver, for the SmolLM2 reasoner.

The tag format of :mod:`metarl.tasks.subset_sum_traces` teaches the tiny policy; this module writes the
same solver's decisions the way DeepSeek-R1-style models think, so that a pretrained chat model can be
warm-started into a small reasoner (:mod:`metarl.models.reasoner`) on which MRT's keyword segmenter and
meta-prover work as they do on R1 models::

    <think>
    I need some of the numbers 3, 8, 5, 12, 9 that add up to 20. Let me try 3+9.

    3+9=12.

    12 is not 20, so 3+9 does not work.

    Wait, that does not work. Let me try 8+12.

    8+12=20.

    20 is the target, so 8+12 works.
    </think>

    The numbers 8 and 12 add up to 20.

    \\boxed{8+12}

**Episodes.** Every round is three paragraphs (try, computed sum, verdict) and every round after the first
opens with one of MRT's keywords (``Wait``, ``But wait``, ``Alternatively``; a double-check of a candidate
that looked right opens with ``But let me double-check``). :class:`~metarl.segmenters.MRTSegmenter` drops a
keyword paragraph that lies at most ``min_gap=2`` paragraphs after the previous boundary, so three paragraphs
per round is the least that makes the next keyword register: with its defaults the segmenter cuts the
thinking into exactly one episode per round (tested). The answer after ``</think>`` is not an episode.

**Decisions.** The solver is :class:`~metarl.tasks.subset_sum_traces.NoisySolver` (its guesses, its slips
and its give-up rule, same :class:`~metarl.tasks.subset_sum_traces.SolverConfig`); this module adds one
decision MRT's traces show and the tag format has no room for: after a verdict "works", with probability
``p_double_check`` the solver checks the candidate again (an independent sum, which may slip too). A
double-check that disagrees rejects the candidate and the search goes on (a slip caught, or a right answer
talked out of), so the belief, and with it the meta-prover's success probability J, can rise and fall
along a trace.

**Forced answers.** MRT's meta-prover appends :data:`metarl.prover.R1_TERMINATION_SUFFIX` (which closes the
thought and ends in ``"1. **"``) to an intermediate prefix of the thinking. :meth:`R1Solver.forced_answer_example`
writes what should follow: a short line and ``\\boxed{candidate}``, the candidate chosen as
``NoisySolver.forced_answer`` does (the last candidate believed correct, else the pending unverified try, else
a fresh guess among the candidates not rejected). :func:`thinking_state` reads that state back from the text,
so a forced answer can be checked against the prefix it follows.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any

from metarl.tasks.subset_sum import Level, format_expression, parse_expression
from metarl.tasks.subset_sum_traces import NoisySolver, SolverConfig, SolverRound, candidates

THINK_START = "<think>\n"
THINK_END = "</think>"
#: Between the last thinking paragraph and the answer (R1's layout; also what MRT's meta-prover appends to
#: the full thought, ``"\n</think>"``, is the start of it).
ANSWER_SEPARATOR = "\n" + THINK_END + "\n\n"
PARAGRAPH = "\n\n"

#: Openings of a new try after a rejected candidate: each starts with one of MRT's keywords.
REFLECTIONS: tuple[str, ...] = (
    "Wait, that does not work.",
    "Wait, maybe other numbers work.",
    "But wait, I can pick other numbers.",
    "Alternatively, I can use other numbers.",
)
DOUBLE_CHECK = "But let me double-check {expr}."

_EXPR = r"([+\-]?\d{1,6}(?:[+\-]\d{1,6}){0,15})"
_TRY = re.compile(r"Let me try " + _EXPR + r"\.")
_CHECK_OPEN = re.compile(r"But let me double-check " + _EXPR + r"\.")
_WORKS = re.compile(r"so " + _EXPR + r" works\.")
_FAILS = re.compile(r"so " + _EXPR + r" does not work")


@dataclass
class R1Round(SolverRound):
    """A :class:`SolverRound` (expression, truth, stated sum, verdict) that is either a ``try`` of a new
    candidate or a ``double_check`` of the candidate the previous round found to work."""

    kind: str = "try"


@dataclass
class R1Trace:
    """One synthetic R1-style completion: ``completion == THINK_START + thinking + ANSWER_SEPARATOR + answer``.

    ``paragraph_starts`` are the character offsets (in ``completion``) of the thinking paragraphs;
    ``episode_starts`` those of the rounds (every third paragraph), where MRT's segmenter starts episodes.
    """

    prompt: str
    thinking: str
    answer: str
    final: str
    rounds: list[R1Round] = field(default_factory=list)
    paragraph_starts: list[int] = field(default_factory=list)
    episode_starts: list[int] = field(default_factory=list)

    @property
    def completion(self) -> str:
        return THINK_START + self.thinking + ANSWER_SEPARATOR + self.answer

    @property
    def thought(self) -> str:
        """The completion up to the end of the thinking, ``"<think>\\n" + thinking`` (no ``</think>``)."""
        return THINK_START + self.thinking


@dataclass
class ThinkingState:
    """What a thinking prefix has established: candidates rejected, the one believed correct (the last
    "works" verdict not overturned since), and a try not yet verified."""

    rejected: list[str] = field(default_factory=list)
    believed: str | None = None
    pending: str | None = None

    def choice(self) -> str | None:
        """The candidate the meta-prover should answer with, if the prefix names one (believed, else pending)."""
        return self.believed if self.believed is not None else self.pending


def thinking_state(text: str) -> ThinkingState:
    """Read a (prefix of a) thinking written in this module's style, paragraph by paragraph.

    ``"Let me try E."`` makes E pending; ``"But let me double-check E."`` makes E pending again (its belief
    is suspended until the verdict); ``"so E works."`` makes E the belief; ``"so E does not work"`` rejects E
    and drops the belief if it was E. Text in any other style gives an empty state.
    """
    state = ThinkingState()
    for para in text.split(PARAGRAPH):
        for m in _TRY.finditer(para):
            state.pending = m.group(1)
        for m in _CHECK_OPEN.finditer(para):
            state.pending = m.group(1)
            if state.believed == m.group(1):
                state.believed = None
        for m in _WORKS.finditer(para):
            state.believed, state.pending = m.group(1), None
        for m in _FAILS.finditer(para):
            expr = m.group(1)
            if expr not in state.rejected:
                state.rejected.append(expr)
            if state.believed == expr:
                state.believed = None
            state.pending = None
    return state


def _list_numbers(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers))


def _answer_sentence(terms: list[int], target: int) -> str:
    """``"The numbers 8 and 12 add up to 20."`` (sums) or ``"8+12-3 makes 20."`` (with subtraction)."""
    if all(t > 0 for t in terms):
        names = [str(t) for t in terms]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"The numbers {listed} add up to {target}."
    return f"{format_expression(terms)} makes {target}."


def verdict_paragraph(expr: str, stated: int, target: int, double_check: bool = False) -> str:
    """``"20 is the target, so 8+12 works."`` or ``"12 is not 20, so 3+9 does not work."`` (the verdict
    follows from the *stated* sum; after a double-check: ``"Yes, ..."`` / ``"... does not work after all."``)."""
    if stated == target:
        return ("Yes, " if double_check else "") + f"{stated} is the target, so {expr} works."
    return f"{stated} is not {target}, so {expr} does not work" + (" after all." if double_check else ".")


class R1Solver(NoisySolver):
    """The noisy solver writing R1-style thinking (see the module docstring).

    ``p_double_check``: probability of checking a candidate again after the verdict "works" (each
    candidate is double-checked at most once). The budget ``config.max_attempts`` counts tries only.
    """

    def __init__(self, level: Level, config: SolverConfig | None = None, p_double_check: float = 0.0) -> None:
        super().__init__(level, config)
        if not 0.0 <= p_double_check <= 1.0:
            raise ValueError(f"p_double_check must lie in [0, 1], got {p_double_check}")
        self.p_double_check = p_double_check

    # ------------------------------------------------------------------ traces

    def rounds(self, problem: dict[str, Any], rng: random.Random) -> list[R1Round]:
        """The solver's decisions for ``problem``: tries (NoisySolver's guesses and slips) and double-checks."""
        numbers, target = list(problem["numbers"]), int(problem["target"])
        pool = candidates(numbers, self.level)
        out: list[R1Round] = []
        tries = 0
        while tries < self.config.max_attempts:
            terms = self._guess(rng, pool, target)
            if terms is None:
                break
            tries += 1
            pool = [c for c in pool if c != terms]
            stated = self._stated_value(rng, terms, target)
            out.append(R1Round(terms, sum(terms) == target, stated, stated == target, "try"))
            if stated == target:
                if rng.random() >= self.p_double_check:
                    break
                again = self._stated_value(rng, terms, target)
                out.append(R1Round(terms, sum(terms) == target, again, again == target, "double_check"))
                if again == target:
                    break
            elif rng.random() >= self.config.p_continue:
                break
        return out

    def trace(self, problem: dict[str, Any], rng: random.Random) -> R1Trace:  # type: ignore[override]
        """One synthetic R1-style completion for ``problem`` (a dict from ``SubsetSumTask.generate``)."""
        numbers, target = list(problem["numbers"]), int(problem["target"])
        rounds = self.rounds(problem, rng)
        paragraphs: list[str] = []
        episode_paragraphs: list[int] = []
        for i, r in enumerate(rounds):
            expr = format_expression(r.terms)
            episode_paragraphs.append(len(paragraphs))
            if r.kind == "double_check":
                opening = DOUBLE_CHECK.format(expr=expr)
            elif i == 0:
                opening = f"I need some of the numbers {_list_numbers(numbers)} that add up to {target}. Let me try {expr}."
            else:
                opening = f"{rng.choice(REFLECTIONS)} Let me try {expr}."
            paragraphs += [opening, f"{expr}={r.stated_value}.",
                           verdict_paragraph(expr, int(r.stated_value), target, r.kind == "double_check")]
        thinking = PARAGRAPH.join(paragraphs)
        state = thinking_state(thinking)
        final, guessed = self._final_choice(state, problem, rng)
        terms = parse_expression(final)
        assert terms is not None
        if guessed:
            answer = f"I did not find a sure answer, so my best guess is {final}."
        else:
            answer = _answer_sentence(terms, target)
        answer += PARAGRAPH + f"\\boxed{{{final}}}"
        starts, pos = [], len(THINK_START)
        for p in paragraphs:
            starts.append(pos)
            pos += len(p) + len(PARAGRAPH)
        return R1Trace(problem["prompt"], thinking, answer, final, rounds, starts,
                       [starts[i] for i in episode_paragraphs])

    def _final_choice(self, state: ThinkingState, problem: dict[str, Any],
                      rng: random.Random) -> tuple[str, bool]:
        """(candidate, whether it is a fresh guess): the state's choice, else a guess among the candidates
        the state has not rejected (NoisySolver.forced_answer's rule)."""
        choice = state.choice()
        if choice is not None:
            return choice, False
        numbers, target = list(problem["numbers"]), int(problem["target"])
        every = candidates(numbers, self.level)
        pool = [c for c in every if format_expression(c) not in set(state.rejected)]
        guess = self._guess(rng, pool, target) if pool else None
        return format_expression(guess if guess else every[0]), True

    # ------------------------------------------------------------------ forced answers

    def forced_answer(self, prefix: str, problem: dict[str, Any], rng: random.Random) -> str:
        """The candidate the meta-prover should answer with after the thinking ``prefix``: the last one
        believed correct, else the pending try, else a fresh guess among the candidates not rejected."""
        return self._final_choice(thinking_state(prefix), problem, rng)[0]

    def forced_answer_text(self, prefix: str, problem: dict[str, Any], rng: random.Random) -> str:
        """What follows :data:`~metarl.prover.R1_TERMINATION_SUFFIX` (which ends in ``"1. **"``): one short
        line naming where the candidate comes from, then ``\\boxed{candidate}`` (about 15-25 SmolLM2 tokens)."""
        state = thinking_state(prefix)
        final, guessed = self._final_choice(state, problem, rng)
        if guessed:
            head = f"Best guess:** {final}."
        elif state.believed is not None:
            head = f"Use the checked answer:** {final} works."
        else:
            head = f"Use the last try:** {final}."
        return head + PARAGRAPH + f"\\boxed{{{final}}}"

    def prefixes(self, trace: R1Trace, episode_only: bool = False) -> list[str]:
        """Thinking prefixes a forced answer may follow: ``""`` (nothing generated yet), ``"<think>\\n"``, the
        completion up to every episode start after the first (MRT's intermediate prefixes, which end with the
        ``"\\n\\n"`` separator) and, unless ``episode_only``, up to every other paragraph start and the whole
        thought followed by ``"\\n\\n"`` (where a length cap may cut a stream)."""
        starts = trace.episode_starts if episode_only else trace.paragraph_starts
        out = ["", THINK_START, *(trace.completion[:s] for s in starts[1:])]
        if not episode_only:
            out.append(trace.thought + PARAGRAPH)
        return out

    def forced_answer_example(self, trace: R1Trace, problem: dict[str, Any], rng: random.Random,  # type: ignore[override]
                              suffix: str | None = None, p_any_paragraph: float = 0.25) -> dict[str, str]:
        """A forced-answer example for SFT: ``{"prompt", "prefix", "suffix", "completion"}``.

        ``prompt`` is the problem (the caller wraps it in a chat template); ``prefix`` is one of
        :meth:`prefixes` (episode starts only, except with probability ``p_any_paragraph``); ``suffix`` is the
        termination suffix (default MRT's :data:`~metarl.prover.R1_TERMINATION_SUFFIX`); ``completion`` is
        :meth:`forced_answer_text` for that prefix. The full thought needs no such example: the whole trace
        already teaches what follows ``"\\n</think>"``.
        """
        if suffix is None:
            from metarl.prover import R1_TERMINATION_SUFFIX as suffix  # noqa: N811
        prefix = rng.choice(self.prefixes(trace, episode_only=rng.random() >= p_any_paragraph))
        return {"prompt": trace.prompt, "prefix": prefix, "suffix": suffix,
                "completion": self.forced_answer_text(prefix, problem, rng)}


def follows_r1_format(completion: str) -> bool:
    """True iff ``completion`` is ``<think>`` … ``</think>`` (each exactly once, in that order, the thought
    non-empty) followed by an answer holding a ``\\boxed{}`` whose content is a ``+``/``-`` expression."""
    from metarl.prover import extract_boxed

    s = completion.lstrip()
    if not s.startswith("<think>") or s.count("<think>") != 1 or s.count(THINK_END) != 1:
        return False
    thought, answer = s[len("<think>"):].split(THINK_END, 1)
    return bool(thought.strip()) and parse_expression(extract_boxed(answer)) is not None


def boxed_answer(text: str) -> str | None:
    """The last ``\\boxed{}`` content of ``text`` (MRT grades a forced answer by the last ``\\boxed{}`` of its
    context: pass prompt + prefix + answer to do as MRT does; this module's prefixes hold no ``\\boxed{}``)."""
    from metarl.prover import extract_boxed

    return extract_boxed(text)
