"""Small typed records shared by every part of metarl: a `Trace` and its `Episode`s.

The episodes of a trace partition its thinking exactly: no gap, no overlap, and
``"".join(e.text for e in trace.episodes) == trace.thinking``. The thinking is the whole completion,
except for R1-style traces (``think_end``, see :class:`metarl.prover.ProverConfig`), whose **answer
region** after the thought (``trace.answer_start`` on) is never an episode. Character spans index into
``trace.completion``; token spans (when a tokenizer was given) index into ``trace.completion_ids``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

EpisodeKind = Literal["attempt", "verify", "revise", "other"]
EPISODE_KINDS: tuple[str, ...] = ("attempt", "verify", "revise", "other")


@dataclass
class Episode:
    """A contiguous span of a completion.

    ``start``/``end`` are character offsets into the completion (end exclusive);
    ``token_start``/``token_end`` are token offsets into the completion ids, or None when the
    trace was segmented without a tokenizer. ``rewards`` maps estimator name -> reward.
    """

    kind: str
    start: int
    end: int
    text: str
    token_start: int | None = None
    token_end: int | None = None
    rewards: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind, "start": self.start, "end": self.end, "text": self.text}
        if self.token_start is not None:
            d["token_start"], d["token_end"] = self.token_start, self.token_end
        d["rewards"] = dict(self.rewards)
        if self.info:
            d["info"] = dict(self.info)
        return d


@dataclass
class Trace:
    """One prompt x, its completion y, the gold answer a* and an optional length target N.

    ``prompt_ids``/``completion_ids`` are the policy's token ids when known (training, generation);
    model-based estimators tokenize ``prompt``/``completion`` otherwise. ``outcome`` is the graded
    final answer (1.0 correct, 0.0 not); ``rewards`` holds trace-level rewards by name; ``meta``
    holds estimator by-products such as ``J_init`` (forced-answer success with an empty prefix).
    ``answer_start`` / ``answer_token_start``: where the answer region begins (character offset into
    ``completion``, token offset into ``completion_ids``); None when the whole completion is thinking.
    """

    prompt: str
    completion: str
    answer: str | None = None
    target_tokens: int | None = None
    completion_ids: list[int] | None = None
    prompt_ids: list[int] | None = None
    episodes: list[Episode] = field(default_factory=list)
    outcome: float | None = None
    rewards: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    answer_start: int | None = None
    answer_token_start: int | None = None

    @property
    def num_tokens(self) -> int | None:
        return None if self.completion_ids is None else len(self.completion_ids)

    @property
    def thinking(self) -> str:
        """The part of the completion the episodes partition (all of it without an answer region)."""
        return self.completion if self.answer_start is None else self.completion[: self.answer_start]

    @property
    def num_thinking_tokens(self) -> int | None:
        """Token count of the thinking (None without completion ids)."""
        if self.completion_ids is None:
            return None
        return len(self.completion_ids) if self.answer_token_start is None else self.answer_token_start

    def check(self, tokens: bool = True) -> None:
        """Raise ``ValueError`` unless the episodes partition the thinking (and, with ``tokens`` and token
        spans, its token ids)."""
        check_partition(self.thinking, self.episodes, self.num_thinking_tokens if tokens else None)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["episodes"] = [e.to_dict() for e in self.episodes]
        for k in ("completion_ids", "prompt_ids", "answer_start", "answer_token_start"):
            if d[k] is None:
                del d[k]
        return d


def check_partition(text: str, episodes: list[Episode], num_tokens: int | None = None) -> None:
    """Raise ``ValueError`` unless ``episodes`` partition ``text`` (and ``num_tokens`` tokens).

    >>> check_partition("ab", [Episode("other", 0, 1, "a"), Episode("other", 1, 2, "b")])
    >>> check_partition("", [Episode("other", 0, 0, "")])
    >>> check_partition("ab", [Episode("other", 0, 1, "a")])
    Traceback (most recent call last):
    ...
    ValueError: episodes end at char 1, completion has 2 chars
    """
    if not episodes:
        raise ValueError("no episodes: a completion has at least one episode (one empty episode if it is empty)")
    if text and any(e.end == e.start for e in episodes):
        raise ValueError("empty episode in a non-empty completion")
    pos = 0
    for i, e in enumerate(episodes):
        if e.start != pos:
            raise ValueError(f"episode {i} starts at char {e.start}, expected {pos}")
        if e.end < e.start:
            raise ValueError(f"episode {i} has end {e.end} < start {e.start}")
        if text[e.start : e.end] != e.text:
            raise ValueError(f"episode {i} text does not match completion[{e.start}:{e.end}]")
        if e.kind not in EPISODE_KINDS:
            raise ValueError(f"episode {i} has unknown kind {e.kind!r}; expected one of {EPISODE_KINDS}")
        pos = e.end
    if pos != len(text):
        raise ValueError(f"episodes end at char {pos}, completion has {len(text)} chars")
    if num_tokens is not None and episodes:
        tpos = 0
        for i, e in enumerate(episodes):
            if e.token_start != tpos or e.token_end is None or e.token_end < e.token_start:
                raise ValueError(f"episode {i} token span [{e.token_start}, {e.token_end}) does not continue at {tpos}")
            tpos = e.token_end
        if tpos != num_tokens:
            raise ValueError(f"episodes end at token {tpos}, completion has {num_tokens} tokens")
