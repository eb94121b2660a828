"""Signed subset sum (Countdown with + and −): reach a target from a few numbers.

A problem lists distinct numbers and a target, e.g. ``"Numbers: 3 8 5 12 9. Target: 20.\\n"``; an answer
is an expression that adds and subtracts some of the numbers, each at most once (``"8+12"``). Finding
an answer is a search over subsets; checking one is a sum and a comparison. That asymmetry between
generation and verification is what makes several attempts with self-verification pay off.

``difficulty`` selects a :class:`Level` (how many numbers, how large, how many terms the gold answer
has, which operators). The verifier parses the expression with a bounded hand-written parser (no
``eval``): at most :data:`MAX_EXPR_CHARS` characters, :data:`MAX_TERMS` terms and
:data:`MAX_DIGITS` digits per number.
"""
from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metarl.prover import THINK_END, extract_boxed
from metarl.tasks.base import ANSWER_TAGS, Split, Task, check_split, split_of, tagged_blocks

MAX_EXPR_CHARS = 256
MAX_TERMS = 16
MAX_DIGITS = 6

_NUMBERS = re.compile(r"Numbers:[ \t]*((?:\d{1,6}[ \t]*){1,64})\.")
_TARGET = re.compile(r"Target:[ \t]*(-?\d{1,7})[ \t]*\.")
_EXPR_RUN = re.compile(r"[+\-]?\s*\d+(?:\s*[+\-]\s*\d+)*")
_ROUND = re.compile(r"<(attempt|revise)>[^<]*</\1><verify>[^<]*</verify>")
_VERDICT = re.compile(r"\b(correct|incorrect)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Level:
    """One difficulty setting: ``n_numbers`` distinct numbers from ``1..max_value``; the gold answer
    uses ``min_terms..max_terms`` of them joined by operators from ``ops`` (the first term is added)."""

    n_numbers: int
    max_value: int
    min_terms: int
    max_terms: int
    ops: str = "+"

    def __post_init__(self) -> None:
        if not 2 <= self.min_terms <= self.max_terms <= self.n_numbers:
            raise ValueError(f"need 2 <= min_terms <= max_terms <= n_numbers, got {self}")
        if self.max_value < self.n_numbers:
            raise ValueError(f"max_value {self.max_value} is too small for {self.n_numbers} distinct numbers")
        if not self.ops or set(self.ops) - {"+", "-"}:
            raise ValueError(f"ops must be made of '+' and '-', got {self.ops!r}")


#: Difficulty levels. Level 2 is what the tiny warm-started policy is trained on. Level 3 keeps level 2's
#: arithmetic (two one-digit terms) but lists five numbers, so a search may try ten pairs instead of six: the
#: long-stream setting of the learning comparison (``conf/setting/compare_long.yaml``).
LEVELS: dict[int, Level] = {
    1: Level(3, 9, 2, 2, "+"),
    2: Level(4, 9, 2, 2, "+"),
    3: Level(5, 9, 2, 2, "+"),
    4: Level(5, 20, 2, 3, "+"),
    5: Level(6, 50, 2, 3, "+-"),
    6: Level(7, 99, 3, 4, "+-"),
}


def parse_expression(text: str | None) -> list[int] | None:
    """The signed terms of a ``+``/``-`` expression over non-negative integers, or None if it is not one.

    Whitespace is ignored; a leading sign is allowed; ``"−"`` (U+2212) reads as ``"-"``. Inputs longer than
    :data:`MAX_EXPR_CHARS`, with more than :data:`MAX_TERMS` terms or numbers of more than
    :data:`MAX_DIGITS` digits are rejected (None), so parsing is bounded on any input.

    >>> parse_expression("8 + 12 - 3")
    [8, 12, -3]
    >>> parse_expression("-3+23"), parse_expression("8*2"), parse_expression("8++2")
    ([-3, 23], None, None)
    """
    if not isinstance(text, str) or len(text) > MAX_EXPR_CHARS:
        return None
    s = "".join(text.replace("\u2212", "-").split())
    if not s:
        return None
    terms: list[int] = []
    i, n = 0, len(s)
    sign = 1
    if s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        i = 1
    while True:
        j = i
        while j < n and s[j].isdigit() and s[j].isascii():
            j += 1
        if j == i or j - i > MAX_DIGITS:
            return None
        terms.append(sign * int(s[i:j]))
        if len(terms) > MAX_TERMS:
            return None
        if j == n:
            return terms
        if s[j] not in "+-":
            return None
        sign = -1 if s[j] == "-" else 1
        i = j + 1


def parse_problem(prompt: Any) -> tuple[list[int], int] | None:
    """``(numbers, target)`` from a prompt containing ``"Numbers: 3 8 5. Target: 11."`` (the two fields in
    either order; the prompt may also be a list of chat messages), or None.

    >>> parse_problem("Think for 64 tokens.\\nNumbers: 3 8 5. Target: 11.\\n")
    ([3, 8, 5], 11)
    """
    prompt = _text_of(prompt)
    numbers, target = _NUMBERS.search(prompt), _TARGET.search(prompt)
    if numbers is None or target is None:
        return None
    return [int(t) for t in numbers.group(1).split()], int(target.group(1))


def _text_of(prompt: Any) -> str:
    """A prompt as text: a string as it is, chat messages (``[{"role", "content"}, ...]``) joined."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, (list, tuple)):
        return "\n".join(m.get("content", "") if isinstance(m, Mapping) else str(m) for m in prompt)
    return "" if prompt is None else str(prompt)


def format_prompt(numbers: list[int], target: int) -> str:
    """The prompt of a problem: ``"Numbers: 3 8 5 12 9. Target: 20.\\n"`` (short: every character is a token
    for the tiny policy)."""
    return f"Numbers: {' '.join(map(str, numbers))}. Target: {target}.\n"


def format_expression(terms: list[int]) -> str:
    """``[8, 12, -3]`` -> ``"8+12-3"``."""
    out = str(terms[0])
    for t in terms[1:]:
        out += f"-{-t}" if t < 0 else f"+{t}"
    return out


def is_solution(terms: list[int], numbers: list[int], target: int) -> bool:
    """True iff the signed ``terms`` use each of ``numbers`` at most as often as it is listed and sum to ``target``."""
    if not terms or sum(terms) != target:
        return False
    available = Counter(numbers)
    used = Counter(abs(t) for t in terms)
    return all(available[v] >= c for v, c in used.items())


def _expression_in(content: str) -> str | None:
    """The expression a block states: the last ``+``/``-`` run before the first ``=`` (whitespace removed)."""
    head = content.split("=", 1)[0]
    if len(head) > 4 * MAX_EXPR_CHARS:
        head = head[-4 * MAX_EXPR_CHARS :]
    runs = _EXPR_RUN.findall(head)
    if not runs:
        return None
    return "".join(runs[-1].split())


def _terms_key(expr: str | None) -> tuple[int, ...] | None:
    """The signed terms of ``expr``, sorted: expressions that differ only in the order of terms share a key."""
    terms = parse_expression(expr)
    return None if terms is None else tuple(sorted(terms))


@dataclass(frozen=True)
class PrefixState:
    """What a prefix of a completion has established, as the forced-answer rule reads it.

    ``believed``: the last expression a verification called correct; ``pending``: an expression stated after
    the last verdict and not verified yet; ``rejected``: the expressions a verification called incorrect, as
    sorted signed terms (:func:`_terms_key`); ``format``: ``"tags"``, ``"r1"`` or ``"none"`` (nothing read);
    ``last``: the last expression stated, whatever its verdict.
    """

    believed: str | None = None
    pending: str | None = None
    rejected: frozenset[tuple[int, ...]] = frozenset()
    format: str = "none"
    #: the last expression the prefix stated, whatever its verdict (the ``"last"`` rule's answer)
    last: str | None = None

    @property
    def choice(self) -> str | None:
        """The answer the prefix names (believed, else pending), or None: the forced answer is a fresh guess."""
        return self.believed if self.believed is not None else self.pending


#: Forced-answer rules of :meth:`SubsetSumTask.exact_success` (as ``NoisySolver.forced_answer``'s).
EXACT_RULES = ("believed", "last")


def prefix_state(prefix: str) -> PrefixState:
    """Read the state a completion prefix reveals (the rule of ``NoisySolver.forced_answer``).

    Tag format: an ``<attempt>`` / ``<revise>`` block makes its expression (as :meth:`SubsetSumTask.extract_answer`
    reads it) pending; a ``<verify>`` block after a pending expression states a verdict (the last of the words
    "correct" / "incorrect"): "correct" makes it the belief, "incorrect" rejects it; either way it is no longer
    pending. A generation block without an expression and a verify block without a verdict (or with nothing to
    verify) reveal nothing and are skipped, as is text outside the tags. A prefix with no tag block is read in
    the R1 format instead (:func:`metarl.tasks.subset_sum_r1.thinking_state`: "Let me try E." / "so E works." /
    "so E does not work"); a prefix that reveals nothing in either gives the empty state.

    >>> prefix_state("<attempt>3+9</attempt><verify>3+9=12!=20 incorrect</verify><revise>8+12</revise>")
    PrefixState(believed=None, pending='8+12', rejected=frozenset({(3, 9)}), format='tags', last='8+12')
    >>> prefix_state("<attempt>8+12</attempt><verify>8+12=20 correct</verify>").choice
    '8+12'
    >>> prefix_state("<attempt>oops</attempt><verify>no verdict</verify>")
    PrefixState(believed=None, pending=None, rejected=frozenset(), format='none', last=None)
    """
    believed: str | None = None
    pending: str | None = None
    last: str | None = None
    rejected: set[tuple[int, ...]] = set()
    read = False
    for tag, content in tagged_blocks(prefix):
        if tag in ("attempt", "revise"):
            expr = _expression_in(content)
            if expr is not None and parse_expression(expr) is not None:
                pending = last = expr
                read = True
        elif tag == "verify" and pending is not None:
            verdict = SubsetSumTask.verdict(content)
            if verdict is None:
                continue
            if verdict:
                believed = pending
            else:
                rejected.add(_terms_key(pending))  # type: ignore[arg-type]
            pending = None
    if read:
        return PrefixState(believed, pending, frozenset(rejected), "tags", last)
    from metarl.tasks.subset_sum_r1 import thinking_state  # the R1 module builds on this one

    r1 = thinking_state(prefix)
    keys = {k for k in map(_terms_key, r1.rejected) if k is not None}
    if r1.believed is None and r1.pending is None and not keys:
        return PrefixState()
    return PrefixState(r1.believed, r1.pending, frozenset(keys), "r1",
                       r1.pending if r1.pending is not None else r1.believed)


class SubsetSumTask(Task):
    """Reach a target by adding and subtracting some of the given numbers (each used at most once).

    ``difficulty`` (a key of ``levels``, default :data:`LEVELS`) is the default level for ``generate``;
    ``test_fraction`` of all problems (by a stable hash of the sorted numbers and the target) form the
    held-out split.
    """

    name = "subset_sum"

    def __init__(self, difficulty: int | Level = 2, test_fraction: float = 0.2,
                 levels: Mapping[int, Level] | None = None) -> None:
        self.levels: dict[int, Level] = dict(levels or LEVELS)
        self.difficulty = difficulty
        self.level(difficulty)
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
        self.test_fraction = test_fraction

    def level(self, difficulty: int | Level | None = None) -> Level:
        """The :class:`Level` for ``difficulty`` (a level number, a :class:`Level`, or None for the default)."""
        d = self.difficulty if difficulty is None else difficulty
        if isinstance(d, Level):
            return d
        if d not in self.levels:
            raise ValueError(f"unknown difficulty {d!r} for {self.name}: choose one of {sorted(self.levels)}")
        return self.levels[d]

    @staticmethod
    def problem_key(numbers: list[int], target: int) -> str:
        """Canonical key of a problem: the same numbers in any order with the same target share it."""
        return ",".join(map(str, sorted(numbers))) + f"|{target}"

    def split_of(self, numbers: list[int], target: int) -> Split:
        """The split (``"train"`` or ``"test"``) a problem belongs to."""
        return split_of(self.problem_key(numbers, target), self.test_fraction)

    def _sample(self, rng: random.Random, lv: Level) -> tuple[list[int], list[int], int]:
        """One random problem: ``(numbers, gold signed terms, target)``."""
        while True:
            numbers = rng.sample(range(1, lv.max_value + 1), lv.n_numbers)
            k = rng.randint(lv.min_terms, lv.max_terms)
            idx = sorted(rng.sample(range(lv.n_numbers), k))
            signs = [1] + [1 if rng.choice(lv.ops) == "+" else -1 for _ in range(k - 1)]
            terms = [s * numbers[i] for s, i in zip(signs, idx)]
            target = sum(terms)
            if target > 0 and target not in numbers:  # a listed target would make the problem trivial
                return numbers, terms, target

    def generate(self, split: Split = "train", n: int = 100, seed: int = 0,
                 difficulty: int | Level | None = None, unique: bool = True,
                 allow_fewer: bool = False) -> list[dict[str, Any]]:
        """``n`` problems of ``split``: dicts with ``prompt``, ``answer`` (a gold expression), ``id``,
        ``numbers``, ``target`` and ``difficulty``. Deterministic given ``(split, n, seed, difficulty)``;
        with ``unique`` no problem repeats within the call. If the level has fewer than ``n`` distinct
        problems in the split, a ``ValueError`` says so, or with ``allow_fewer`` all of them are returned."""
        check_split(split)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        d = self.difficulty if difficulty is None else difficulty
        lv = self.level(d)
        rng = random.Random(f"{self.name}|{split}|{seed}|{lv}")
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        misses = 0  # consecutive draws that gave no new problem of this split
        while len(out) < n:
            if misses > 20_000:
                if allow_fewer:
                    break
                raise ValueError(
                    f"{self.name} difficulty {d} has too few distinct {split} problems for n={n} "
                    f"(found {len(out)}); lower n, pass allow_fewer=True or unique=False, or raise the difficulty"
                )
            numbers, terms, target = self._sample(rng, lv)
            key = self.problem_key(numbers, target)
            if self.split_of(numbers, target) != split or (unique and key in seen):
                misses += 1
                continue
            misses = 0
            seen.add(key)
            out.append({
                "id": f"{self.name}/d{d}/{key}" + ("" if unique else f"#{len(out)}"),
                "prompt": format_prompt(numbers, target),
                "answer": format_expression(terms),
                "numbers": numbers,
                "target": target,
                "difficulty": d if isinstance(d, int) else repr(d),
            })
        return out

    def verify(self, prediction: str | None, answer: str, prompt: Any = "") -> bool:
        """True iff ``prediction`` is a ``+``/``-`` expression over the prompt's numbers (each used at most
        once) whose value is the target. The prompt is required: several expressions can be correct, and
        only the prompt says which numbers may be used."""
        problem = parse_problem(prompt)
        if problem is None:
            raise ValueError(
                f"{self.name}.verify needs the problem prompt ('Numbers: ... Target: ...') to know which "
                f"numbers may be used; got prompt={_text_of(prompt)[:80]!r}. Pass the prompt to the grader."
            )
        terms = parse_expression(prediction)
        return terms is not None and is_solution(terms, *problem)

    def extract_answer(self, text: str) -> str | None:
        """The answer ``text`` states.

        - R1 format: the expression in the last ``\\boxed{}``; else, after a ``</think>``, the answer region
          (the text after the last ``</think>``) read as below, so a try inside the thought is not an answer.
        - Tag format: the last expression stated in an ``<attempt>``, ``<revise>`` or ``<answer>`` block (the
          part before any ``=``); text without tags is read as one block. Verify blocks state no answer.

        >>> SubsetSumTask().extract_answer("<attempt>3+9</attempt><verify>3+9=12!=20 incorrect</verify>")
        '3+9'
        >>> SubsetSumTask().extract_answer("<verify>3+9=12!=20 incorrect</verify>") is None
        True
        >>> SubsetSumTask().extract_answer("<think>Let me try 3+9.\\n\\n3+9=12.</think>\\n\\n\\\\boxed{8 + 12}")
        '8+12'
        """
        if text is None:
            return None
        boxed = extract_boxed(text)
        if boxed is not None:
            return _expression_in(boxed)
        if THINK_END in text:
            text = text.rpartition(THINK_END)[2]
        found: str | None = None
        for tag, content in tagged_blocks(text):
            if tag is None or tag in ANSWER_TAGS:
                expr = _expression_in(content)
                if expr is not None:
                    found = expr
        return found

    def exact_success(self, prompt: Any, prefix: str, rule: str = "believed") -> float | None:
        """Exact J of ``prefix``: the probability that the ideal meta-prover's forced answer is correct.

        ``rule="last"``: the meta-prover answers the last expression the prefix stated, whatever its verdict
        (the rule the tiny warm start's forced answers are taught, ``TinyRecipe.forced_rule``), and guesses as
        below only before any; the default ``"believed"`` is the rule described next.

        The ideal meta-prover follows the forced-answer rule the warm start is taught
        (``NoisySolver.forced_answer``) on the state :func:`prefix_state` reads: it answers the expression
        the prefix last verified as correct, else the pending unverified one (J is 1 or 0: that answer graded
        by :meth:`verify`), else a guess among the candidates of the task's level
        (``metarl.tasks.subset_sum_traces.candidates``: ordered subsets of the prompt's numbers with the
        level's operators) that no "incorrect" verdict has ruled out (a candidate is ruled out by a rejected
        expression with the same signed terms in any order). The guess is **uniform**, so J is the share of
        correct candidates among those left; if every candidate was ruled out it answers the first one.
        A prefix that reveals no parsable state (empty, malformed) gets the uniform guess over all candidates.

        This differs from the noisy solver's own fresh guess, which picks a correct candidate with
        probability ``p_correct`` whenever both correct and wrong ones are left (its J would be ``p_correct``
        there, not the share): exact J measures what the prefix has established, not how good a guesser is.

        >>> task = SubsetSumTask(difficulty=2)
        >>> prompt = "Numbers: 3 8 5 12. Target: 20.\\n"
        >>> task.exact_success(prompt, ""), task.exact_success(prompt, "<attempt>8+12</attempt>")
        (0.16666666666666666, 1.0)
        >>> task.exact_success(prompt, "<attempt>3+5</attempt><verify>3+5=8!=20 incorrect</verify>")
        0.2
        >>> task.exact_success(prompt, "<attempt>3+5</attempt><verify>3+5=8!=20 incorrect</verify>", rule="last")
        0.0
        """
        from metarl.tasks.subset_sum_traces import candidates  # that module builds on this one

        problem = parse_problem(prompt)
        if problem is None:
            raise ValueError(f"{self.name}.exact_success needs the problem prompt ('Numbers: ... Target: ...'); "
                             f"got prompt={_text_of(prompt)[:80]!r}")
        if rule not in EXACT_RULES:
            raise ValueError(f"exact_success rule {rule!r}: use one of {', '.join(EXACT_RULES)}")
        state = prefix_state(prefix)
        choice = state.last if rule == "last" and state.last is not None else state.choice
        if choice is not None:
            return float(self.verify(choice, "", prompt))
        every = candidates(problem[0], self.level())
        if not every:
            return 0.0
        pool = [c for c in every if tuple(sorted(c)) not in state.rejected] or every[:1]
        return sum(self.verify(format_expression(c), "", prompt) for c in pool) / len(pool)

    @staticmethod
    def verdict(content: str) -> bool | None:
        """The verdict a verify block states: the last of the words "correct" / "incorrect" (None if neither).

        >>> SubsetSumTask.verdict("3+9=12!=20 incorrect"), SubsetSumTask.verdict("8+12=20 correct")
        (False, True)
        """
        words = _VERDICT.findall(content)
        return None if not words else words[-1].lower() == "correct"

    def follows_format(self, completion: str) -> bool:
        """True iff ``completion`` is ``<attempt>E</attempt><verify>V</verify>`` followed by zero or more
        ``<revise>E</revise><verify>V</verify>`` rounds and nothing else, every E an expression and every V
        stating a verdict."""
        if len(_ROUND.sub("", completion)) or not completion.startswith("<attempt>"):
            return False
        blocks = tagged_blocks(completion)
        for i, (tag, content) in enumerate(blocks):
            if i % 2 == 1:
                if tag != "verify" or self.verdict(content) is None:
                    return False
            elif tag != ("attempt" if i == 0 else "revise") or parse_expression(content) is None:
                return False
        return True

    def verification_checks(self, completion: str, prompt: str) -> list[tuple[bool | None, bool]]:
        """``(stated verdict, truth)`` for every verify block that follows an attempt or revision:
        the truth is whether that most recent attempt's expression solves the problem."""
        checks: list[tuple[bool | None, bool]] = []
        last: str | None = None
        have_attempt = False
        for tag, content in tagged_blocks(completion):
            if tag in ("attempt", "revise"):
                last, have_attempt = _expression_in(content), True
            elif tag == "verify" and have_attempt:
                checks.append((self.verdict(content), self.verify(last, "", prompt)))
        return checks
