"""The task interface: problems with a programmatic verifier, a difficulty knob and disjoint splits.

A built-in task generates problems deterministically (``generate``), checks a predicted answer
without executing model text (``verify``), and reads the last answer stated in a piece of model
output (``extract_answer``). Completions use the tag format the tag segmenter reads::

    <attempt>3+9</attempt><verify>3+9=12!=20 incorrect</verify><revise>8+12</revise><verify>8+12=20 correct</verify>

The meta-prover of this format (``conf/prover/tags.yaml``, :data:`metarl.prover.TAG_PROVER`) forces an
answer by appending ``"<answer>"`` to a prefix and stops at ``"</answer>"``.

Train and test problems are disjoint by construction: every problem has a canonical key (the same
problem in any presentation order has the same key), and a stable hash of that key assigns it to
exactly one split (:func:`split_of`).
"""
from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

Split = Literal["train", "test"]
SPLITS: tuple[str, ...] = ("train", "test")

#: Tags whose content states an answer (generation episodes and the forced answer).
ANSWER_TAGS: tuple[str, ...] = ("attempt", "revise", "answer")
#: All tags of the built-in tag format.
FORMAT_TAGS: tuple[str, ...] = ("attempt", "verify", "revise", "answer")

_TAG = re.compile(r"<(/?)([A-Za-z_][A-Za-z0-9_]*)>")


def check_split(split: str) -> Split:
    """Return ``split`` if it is ``"train"`` or ``"test"``, else raise a ``ValueError`` saying so."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: built-in tasks have splits {list(SPLITS)}")
    return split  # type: ignore[return-value]


def stable_hash(key: str) -> int:
    """A 64-bit hash of ``key`` that is the same in every process (unlike Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")


SPLIT_RESOLUTION = 1_000_000
"""Keys are split by their hash modulo this: fractions closer than 1e-6 give the same split."""


def split_threshold(test_fraction: float) -> int:
    """The hash threshold of ``test_fraction``: a key is held out when ``stable_hash(key) % SPLIT_RESOLUTION`` is
    below it, so the held-out set of a fraction contains that of every fraction with a lower or equal threshold.

    >>> split_threshold(0.4), split_threshold(0.4 + 1e-9), split_threshold(0.2)
    (400000, 400000, 200000)
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise ValueError(f"test_fraction must lie in [0, 1], got {test_fraction}")
    return round(test_fraction * SPLIT_RESOLUTION)


def split_of(key: str, test_fraction: float) -> Split:
    """The split a problem with canonical ``key`` belongs to: ``"test"`` for a ``test_fraction`` of keys.

    >>> split_of("1,2,3|5", 0.0), split_of("1,2,3|5", 1.0)
    ('train', 'test')
    """
    return "test" if (stable_hash(key) % SPLIT_RESOLUTION) < split_threshold(test_fraction) else "train"


def tagged_blocks(text: str, tags: Sequence[str] = FORMAT_TAGS) -> list[tuple[str | None, str]]:
    """Split tag-format text into ``(tag, content)`` blocks, in order.

    A block runs from ``<tag>`` to ``</tag>``, the next opening tag, or the end of the text (so an
    unfinished block at the end of a truncated stream is kept). Text before the first opening tag
    gets tag ``None`` unless it is closed by ``</tag>``, in which case it is that tag's content
    (a forced answer such as ``"8+12</answer>"`` read on its own). Text between blocks is dropped.

    >>> tagged_blocks("<attempt>3+9</attempt><verify>3+9=12!=20 incorrect</verify><revise>8+1")
    [('attempt', '3+9'), ('verify', '3+9=12!=20 incorrect'), ('revise', '8+1')]
    >>> tagged_blocks("8+12</answer>")
    [('answer', '8+12')]
    """
    known = set(tags)
    blocks: list[tuple[str | None, str]] = []
    current: str | None = None
    leading = True
    pos = 0
    buf: list[str] = []
    for m in _TAG.finditer(text):
        closing, name = m.group(1) == "/", m.group(2)
        if name not in known:
            continue
        buf.append(text[pos : m.start()])
        pos = m.end()
        content = "".join(buf)
        buf = []
        if closing:
            if leading and current is None:
                blocks.append((name, content))
            elif current is not None:
                blocks.append((current, content))
            current = None
        else:
            if current is not None:
                blocks.append((current, content))
            elif leading and content.strip():
                blocks.append((None, content))
            current = name
        leading = False
    rest = "".join(buf) + text[pos:]
    if current is not None:
        blocks.append((current, rest))
    elif leading:
        blocks.append((None, rest))
    return blocks


class Task(ABC):
    """A reasoning task with a programmatic verifier.

    Subclasses set ``name`` and implement ``generate``, ``verify`` and ``extract_answer``.
    ``generate`` returns dicts with at least ``prompt``, ``answer`` (a string) and ``id``;
    ``verify`` must be safe on arbitrary model text (never ``eval``) and bounded in time.
    """

    name: str = "task"
    #: The words a verify episode uses for its verdict (the verdict parser reads the last one).
    verdict_words: tuple[str, str] = ("correct", "incorrect")

    @abstractmethod
    def generate(self, split: Split = "train", n: int = 100, seed: int = 0,
                 difficulty: int | None = None) -> list[dict[str, Any]]:
        """``n`` problems of ``split``, deterministic given ``seed`` and ``difficulty``."""

    @abstractmethod
    def verify(self, prediction: str | None, answer: str, prompt: str = "") -> bool:
        """True iff ``prediction`` is a correct answer to the problem in ``prompt`` (gold ``answer``)."""

    @abstractmethod
    def extract_answer(self, text: str) -> str | None:
        """The last answer stated in ``text`` (one episode or a whole completion), or None."""

    def exact_success(self, prompt: Any, prefix: str, rule: str = "believed") -> float | None:
        """Exact J of ``prefix``: the probability that an ideal meta-prover, forced to answer right after
        ``prompt + prefix``, answers correctly, computed from the state the prefix reveals (no sampling, no
        model). ``prefix`` is a prefix of a completion (``""`` for J_{-1}, the prompt alone). ``rule`` names
        the ideal meta-prover (what it answers from that state); a task documents the rules it knows
        (the subset-sum task: ``"believed"`` and ``"last"``) and raises ``ValueError`` for another.

        A task whose state is programmatic (the answers tried, the verdicts given, the candidates left)
        overrides this; the ``exact_progress`` reward (:class:`metarl.rewards.exact.ExactProgress`, an
        oracle) calls it on every episode boundary. The default returns None: exact J is not available for
        this task, and ``exact_progress`` refuses it at configuration time.

        >>> class Echo(Task):
        ...     def generate(self, split="train", n=100, seed=0, difficulty=None): return []
        ...     def verify(self, prediction, answer, prompt=""): return prediction == answer
        ...     def extract_answer(self, text): return text
        >>> Echo().exact_success("Say 1.", "") is None
        True
        """
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
