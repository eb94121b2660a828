"""Segmenters: cut a completion into episodes that partition it exactly.

A **segmenter** is any callable ``seg(text) -> pieces``. The pieces may be

- :class:`~metarl.types.Episode` objects (``kind``, ``start``, ``end``; ``text`` is filled in),
- ``(start, end)`` or ``(start, end, kind)`` tuples of character offsets (end exclusive),
- ``(piece_text, kind)`` pairs, or plain strings, whose concatenation is ``text``,

in order, covering the text without gap or overlap; a missing kind is ``"other"`` and
zero-length pieces are dropped. A segmenter that needs more than the text names it as a
keyword argument and :func:`segment` passes it (found by signature): ``tokenizer``,
``token_ids`` (the completion ids) and ``skip_special_tokens``. A custom segmenter is a few
lines in the user's own module, named by dotted path (``conf/segmenter/custom.yaml``; docs/plugins.md)::

    def sentences(text):                      # my_pkg/seg.py
        return [m.span() for m in re.finditer(r"[^.]*(?:\\.|$)", text) if m.end() > m.start()]

    metarl-score input=traces.jsonl segmenter=custom segmenter._target_=my_pkg.seg.sentences segmenter._partial_=true

Built-in segmenters (config group ``conf/segmenter/``, one file each): :class:`TagSegmenter` (``tags``),
:class:`MRTSegmenter` (``mrt``, the MRT paper's keyword rule), :class:`ParagraphSegmenter`
(``paragraphs``), :class:`TokenChunkSegmenter` (``tokens``) and :class:`RegexSegmenter`
(``regex``).

**Token spans.** :func:`segment` also maps the character spans to token spans of the
completion ids. Ids come from generation, so re-encoding the text need not reproduce them;
instead every character boundary ``c`` goes to the token boundary ``t(c) = max{t : L(t) <= c}``
with ``L(t) = len(tokenizer.decode(ids[:t], skip_special_tokens=...))`` (exact; found from local
decodes and verified with two full prefix decodes per boundary, binary search as fallback: see
:func:`char_to_token_boundaries`). So every token belongs to exactly one episode: the one
holding the token's *last* character. A token that straddles a boundary (``"▁Wait"``, whose
space ends the previous episode) goes to the later episode; tokens that decode to nothing
(special tokens skipped in the text, trailing EOS / pad, an incomplete UTF-8 byte) go to the
episode they follow, so trailing EOS / pad tokens belong to the last episode and leading ones
to the first. An episode gets an **empty token span** only when that is unavoidable: when no
token ends inside it because one token covers all of it and more (e.g. a one-character episode
inside a multi-character token); the partition of the ids still holds.

``skip_special_tokens``: the completion text is normally ``decode(ids, skip_special_tokens=True)``.
By default (``None``) :func:`segment` uses whichever of True / False reproduces ``text`` from
the ids, and raises when neither does (then the character offsets would not describe the ids).
"""
from __future__ import annotations

import bisect
import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, Union

from metarl.registry import ConfigError, instantiate_callable
from metarl.types import EPISODE_KINDS, Episode, check_partition

Piece = Union[Episode, tuple, str]

MRT_KEYWORDS: tuple[str, ...] = (
    "Wait",
    "But wait",
    "Alternatively",
    "Is there another way to think about this?",
    "But let me double-check",
    "But hold on",
)


class Segmenter(Protocol):
    """``seg(text) -> pieces``; may also accept ``tokenizer=``, ``token_ids=``, ``skip_special_tokens=``."""

    def __call__(self, text: str) -> Iterable[Piece]: ...


# ----------------------------------------------------------------------------------------------
# normalisation and token spans


def normalize_pieces(text: str, pieces: Iterable[Piece] | None, segmenter_name: str = "segmenter") -> list[Episode]:
    """Turn a segmenter's pieces into validated :class:`Episode` s that partition ``text``.

    Empty ``text`` gives exactly one empty episode ``Episode("other", 0, 0, "")``; for non-empty
    text zero-length pieces are dropped. Raises ``ValueError`` naming ``segmenter_name`` when the
    pieces are malformed or do not partition the text.

    >>> [(e.kind, e.text) for e in normalize_pieces("ab cd", [(0, 3, "attempt"), (3, 5)])]
    [('attempt', 'ab '), ('other', 'cd')]
    >>> [e.text for e in normalize_pieces("ab cd", ["ab ", "", "cd"])]
    ['ab ', 'cd']
    """
    who = f"segmenter {segmenter_name!r}"
    if pieces is None or isinstance(pieces, (str, bytes, Episode)):
        raise ValueError(f"{who} returned {type(pieces).__name__}; a segmenter must return a list of "
                         f"Episodes, (start, end[, kind]) tuples or strings")
    episodes: list[Episode] = []
    pos = 0
    for i, p in enumerate(pieces):
        start, end, kind, info = _piece_span(text, p, pos, i, who)
        pos = end
        if end == start and text:
            continue
        episodes.append(Episode(kind, start, end, text[start:end], info=info))
    if not text:
        if episodes and any(e.end != 0 for e in episodes):
            raise ValueError(f"{who} returned pieces beyond the end of an empty completion")
        return [Episode("other", 0, 0, "")]
    try:
        check_partition(text, episodes)
    except ValueError as e:
        raise ValueError(f"{who} returned pieces that do not partition the completion ({len(text)} chars): {e}. "
                         f"Pieces must be in order, contiguous, start at 0 and end at len(text); "
                         f"kinds must be one of {EPISODE_KINDS}") from None
    return episodes


def _piece_span(text: str, p: Any, pos: int, i: int, who: str) -> tuple[int, int, str, dict]:
    """(start, end, kind, info) of one piece; ``pos`` is where the previous piece ended."""
    kind: Any = "other"
    info: dict = {}
    if isinstance(p, Episode):
        start, end, kind, info = p.start, p.end, p.kind, dict(p.info)
        if p.text and 0 <= start <= end <= len(text) and text[start:end] != p.text:
            raise ValueError(f"{who}: piece {i} is an Episode whose text does not match completion[{start}:{end}]")
    elif isinstance(p, str) or (isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)):
        s, kind = (p, "other") if isinstance(p, str) else p
        start, end = pos, pos + len(s)
        if text[start:end] != s:
            raise ValueError(f"{who}: string piece {i} ({s[:30]!r}) is not the completion text at char {pos}; "
                             f"string pieces must concatenate to the completion")
    elif isinstance(p, (tuple, list)) and len(p) in (2, 3):
        start, end = p[0], p[1]
        if len(p) == 3:
            kind = p[2]
    else:
        raise ValueError(f"{who}: piece {i} is {p!r}; expected an Episode, a (start, end) or (start, end, kind) "
                         f"tuple, a (text, kind) pair or a string")
    for name, v in (("start", start), ("end", end)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise ValueError(f"{who}: piece {i} has non-integer {name} {v!r}; offsets are character indices")
    if kind not in EPISODE_KINDS:
        raise ValueError(f"{who}: piece {i} has kind {kind!r}; use one of {EPISODE_KINDS}")
    if start != pos or end < start or end > len(text):
        raise ValueError(f"{who}: piece {i} spans [{start}, {end}) but the previous piece ended at {pos} "
                         f"(completion has {len(text)} chars); pieces must be in order and contiguous")
    return start, end, kind, info


def segment(segmenter: Segmenter | Mapping[str, Any], text: str, token_ids: Sequence[int] | None = None,
            tokenizer: Any = None, *, skip_special_tokens: bool | None = None) -> list[Episode]:
    """Run ``segmenter`` on ``text`` and return validated episodes, with token spans when possible.

    ``segmenter`` is a callable or a spec for :func:`build_segmenter`. With ``token_ids`` and
    ``tokenizer`` the token spans partition ``range(len(token_ids))`` (see the module docstring for
    the boundary rule and ``skip_special_tokens``). With a ``tokenizer`` alone the spans index into
    ``tokenizer(text, add_special_tokens=False).input_ids`` (offsets mapping of a fast tokenizer;
    a slow one encodes and then decodes prefixes).
    """
    seg = segmenter if callable(segmenter) else build_segmenter(segmenter)
    name = getattr(seg, "__name__", None) or type(seg).__name__
    if token_ids is not None:
        if tokenizer is None:
            raise ValueError("segment(): token_ids were given without a tokenizer; pass tokenizer= to map "
                             "character boundaries to tokens, or drop token_ids")
        token_ids = [int(t) for t in token_ids]
        skip_special_tokens = _resolve_skip(text, token_ids, tokenizer, skip_special_tokens)
    context = {"tokenizer": tokenizer, "token_ids": token_ids,
               "skip_special_tokens": True if skip_special_tokens is None else skip_special_tokens}
    episodes = normalize_pieces(text, seg(text, **_context_for(seg, context)), name)
    if tokenizer is None:
        return episodes
    cuts = [e.start for e in episodes[1:]]
    if token_ids is not None:
        bounds = char_to_token_boundaries(text, cuts, token_ids, tokenizer, bool(skip_special_tokens))
        num_tokens = len(token_ids)
    else:
        bounds, num_tokens = _boundaries_by_offsets(text, cuts, tokenizer)
    edges = [0, *bounds, num_tokens]
    for e, a, b in zip(episodes, edges, edges[1:]):
        e.token_start, e.token_end = a, b
    check_partition(text, episodes, num_tokens)
    return episodes


def answer_boundary(text: str, cut: int, token_ids: Sequence[int] | None = None,
                    tokenizer: Any = None) -> tuple[int, int | None]:
    """Where the answer region starts, as ``(character, token)`` offsets, at a token boundary.

    ``cut`` is the character offset found in the text (e.g. the first ``</think>``). With ``token_ids``
    the token boundary is ``t(cut)`` of the module docstring's rule, so a token that straddles ``cut``
    (``".\\n</"``) begins the answer region, and the character offset moves back to where that token
    starts (``len(decode(ids[:t]))``); the thinking is then exactly ``decode(ids[:t])``. With a tokenizer
    alone the token boundary comes from the offsets of ``tokenizer(text)``; without one there is none.

    >>> answer_boundary("ab</think>c", 2)
    (2, None)
    """
    if token_ids is not None and tokenizer is not None:
        ids = [int(t) for t in token_ids]
        skip = _resolve_skip(text, ids, tokenizer, None)
        (t,) = char_to_token_boundaries(text, [cut], ids, tokenizer, skip)
        return len(tokenizer.decode(ids[:t], skip_special_tokens=skip)), t
    if tokenizer is not None:
        (t,), _ = _boundaries_by_offsets(text, [cut], tokenizer)
        return cut, t
    return cut, None


def _context_for(seg: Callable, context: Mapping[str, Any]) -> dict[str, Any]:
    """The context keywords ``seg``'s signature accepts (all of them for ``**kwargs``)."""
    try:
        params = inspect.signature(seg).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return dict(context)
    return {k: v for k, v in context.items()
            if k in params and params[k].kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)}


def _resolve_skip(text: str, ids: list[int], tokenizer: Any, skip: bool | None) -> bool:
    options = [True, False] if skip is None else [skip]
    for s in options:
        if tokenizer.decode(ids, skip_special_tokens=s) == text:
            return s
    decoded = tokenizer.decode(ids, skip_special_tokens=options[0])
    raise ValueError(
        f"segment(): the completion text ({len(text)} chars) is not tokenizer.decode(token_ids, "
        f"skip_special_tokens={skip if skip is not None else 'True/False'}) ({len(decoded)} chars, starts "
        f"{decoded[:40]!r}); pass the text decoded from these ids (do not strip or edit it), or the matching "
        f"skip_special_tokens")


def char_to_token_boundaries(text: str, cuts: Sequence[int], token_ids: Sequence[int], tokenizer: Any,
                             skip_special_tokens: bool = True, window: int = 8) -> list[int]:
    """Token boundary ``t(c) = max{t : L(t) <= c}``, ``L(t) = len(decode(ids[:t]))``, per increasing cut ``c``.

    Exact, and cheap for long completions: a guess is found from *local* decodes
    (``decode(ids[s:t])`` with ``window`` tokens of context before the previous boundary, whose
    ``L`` is known), then verified with two full prefix decodes, ``L(t) <= c < L(t+1)``; only when
    that fails (a decoder that is not local) does a binary search over full prefix decodes run
    (``O(log T)`` per cut). So the cost is ``O(#cuts)`` full decodes in practice, ``O(#cuts ·
    log T)`` at worst. The result is monotone and within ``[0, T]`` even if ``L`` is not monotone.
    """
    ids = list(token_ids)
    n_tok = len(ids)
    cache: dict[int, int] = {0: 0}

    def full(t: int) -> int:
        if t not in cache:
            cache[t] = len(tokenizer.decode(ids[:t], skip_special_tokens=skip_special_tokens))
        return cache[t]

    out: list[int] = []
    lo = 0
    for c in cuts:
        if c > full(lo):
            ctx = max(0, lo - window)
            base = full(lo) - len(tokenizer.decode(ids[ctx:lo], skip_special_tokens=skip_special_tokens))

            def local(t: int) -> int:
                return base + len(tokenizer.decode(ids[ctx:t], skip_special_tokens=skip_special_tokens))

            t = _last_at_most(local, lo, n_tok, c, step=c - full(lo))
            if not (t >= lo and full(t) <= c and (t == n_tok or full(t + 1) > c)):
                t = _last_at_most(full, lo, n_tok, c)
            lo = max(t, lo)
        out.append(lo)
    return out


def _last_at_most(f: Callable[[int], int], lo: int, hi: int, c: int, step: int | None = None) -> int:
    """Largest ``t`` in ``[lo, hi]`` with ``f(t) <= c`` at a crossing, given ``f(lo) <= c``.

    Binary search over ``[lo, hi]``; with ``step`` it first gallops from ``lo`` (``lo + step``,
    ``lo + 2·step``, ...) so that only a short range near ``lo`` is searched.
    """
    a, b = lo, hi + 1  # invariant: f(a) <= c (a == lo assumed), answer < b
    if step is not None:
        step = max(1, step)
        while a + step <= hi and f(a + step) <= c:
            a, step = a + step, step * 2
        b = min(hi + 1, a + step)
    while b - a > 1:
        m = (a + b) // 2
        if f(m) <= c:
            a = m
        else:
            b = m
    return a


def _boundaries_by_offsets(text: str, cuts: Sequence[int], tokenizer: Any) -> tuple[list[int], int]:
    """Token boundaries for char cuts when only the text is known: a token goes with its last char."""
    if getattr(tokenizer, "is_fast", False):
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        ends, running = [], 0
        for _, e in enc["offset_mapping"]:
            running = max(running, int(e))
            ends.append(running)
        return [bisect.bisect_right(ends, c) for c in cuts], len(ends)
    ids = tokenizer.encode(text, add_special_tokens=False)
    try:
        skip = _resolve_skip(text, ids, tokenizer, None)
    except ValueError:
        raise ValueError("segment(): this (slow) tokenizer does not reproduce the text from tokenizer.encode(text), "
                         "so token spans cannot be found from the text alone; pass the completion token_ids, or "
                         "use a fast tokenizer (offsets mapping)") from None
    return char_to_token_boundaries(text, cuts, ids, tokenizer, skip), len(ids)


def build_segmenter(spec: Any) -> Segmenter:
    """A segmenter from a config node (``_target_`` mapping, built by Hydra's ``instantiate``; a function
    segmenter says ``_partial_: true``) or a callable, which is returned as it is.

    >>> build_segmenter({"_target_": "metarl.segmenters.MRTSegmenter", "group_size": 2}).group_size
    2
    """
    seg = instantiate_callable(spec, "segmenter")
    if not callable(seg):
        raise ConfigError(f"segmenter: {spec!r} built {seg!r}, which is not callable; a segmenter is seg(text) -> "
                          f"pieces (a function segmenter's config says `_partial_: true`)")
    return seg


def _pieces_from_cuts(text: str, cuts: Iterable[int], kinds: Sequence[str] | None = None) -> list[tuple[int, int, str]]:
    """(start, end, kind) pieces from sorted interior cut positions (duplicates and ends dropped)."""
    edges = [0, *sorted({c for c in cuts if 0 < c < len(text)}), len(text)]
    return [(a, b, kinds[i] if kinds else "other") for i, (a, b) in enumerate(zip(edges, edges[1:]))]


def _check_kind(kind: str, what: str) -> str:
    if kind not in EPISODE_KINDS:
        raise ValueError(f"{what} {kind!r} is not an episode kind; use one of {EPISODE_KINDS}")
    return kind


# ----------------------------------------------------------------------------------------------
# built-in segmenters


class TagSegmenter:
    """Episodes from tags: ``<attempt>…</attempt><verify>…</verify><revise>…</revise>``.

    ``tags`` maps episode kind -> tag name (a list of names means kind == name). Rules, applied
    left to right; never raises:

    - a known opening tag ``<name>`` starts an episode of its kind, which runs through the first
      ``</name>`` that comes before the next known opening tag (any kind);
    - **unclosed**: if no such closing tag exists, the episode runs up to the next known opening
      tag, or to the end of the text (``info["closed"]`` is False);
    - **nested** tags are not supported: an inner known opening tag ends the outer episode (as if
      unclosed) and starts its own; the outer's later closing tag is then stray text;
    - whitespace right after a closing tag is attached to that episode; whitespace before the
      first tag belongs to the first episode;
    - other text outside tags is an ``"other"`` episode; unknown tags and stray closing tags are
      plain text. Tags match exactly (case-sensitive, no attributes or inner spaces).
    """

    def __init__(self, tags: Mapping[str, str] | Sequence[str] | None = None) -> None:
        if tags is None:
            tags = {"attempt": "attempt", "verify": "verify", "revise": "revise"}
        if isinstance(tags, str) or not isinstance(tags, (Mapping, Sequence)):
            raise ValueError(f"TagSegmenter tags must map kind -> tag name (or list tag names), got {tags!r}")
        mapping = dict(tags) if isinstance(tags, Mapping) else {t: t for t in tags}
        for kind, name in mapping.items():
            _check_kind(kind, "TagSegmenter: tag kind")
            if not isinstance(name, str) or not name or "<" in name or ">" in name or name.startswith("/"):
                raise ValueError(f"TagSegmenter: tag name {name!r} for kind {kind!r} must be a non-empty string "
                                 f"without '<', '>' or a leading '/'")
        if len(set(mapping.values())) != len(mapping):
            raise ValueError(f"TagSegmenter: two kinds share a tag name in {mapping}; give each kind its own tag")
        self.tags = mapping
        self._kind_of = {name: kind for kind, name in mapping.items()}
        alternatives = "|".join(re.escape(n) for n in sorted(self._kind_of, key=len, reverse=True))
        self._open = re.compile(f"<({alternatives})>")

    def __call__(self, text: str) -> list[Episode]:
        opens = list(self._open.finditer(text))
        pieces: list[Episode] = []
        pos = 0
        for i, m in enumerate(opens):
            if m.start() > pos:
                pieces.append(Episode("other", pos, m.start(), ""))
            name = m.group(1)
            next_open = opens[i + 1].start() if i + 1 < len(opens) else len(text)
            closing = f"</{name}>"
            close = text.find(closing, m.end(), next_open)
            if close >= 0:
                end = close + len(closing)
                while end < len(text) and text[end].isspace():
                    end += 1
            else:
                end = next_open
            pieces.append(Episode(self._kind_of[name], m.start(), end, "", info={"tag": name, "closed": close >= 0}))
            pos = end
        if pos < len(text):
            pieces.append(Episode("other", pos, len(text), ""))
        if len(pieces) > 1 and pieces[0].kind == "other" and text[: pieces[0].end].isspace():
            pieces[1].start = 0  # leading whitespace joins the first tagged episode
            pieces.pop(0)
        return pieces

    def __repr__(self) -> str:
        return f"TagSegmenter(tags={self.tags!r})"


class MRTSegmenter:
    """MRT's keyword segmentation ("break into meta steps", CMU-AIRe/MRT analysis notebook).

    Reproduces ``break_into_meta_steps`` + ``merge_meta_steps`` of the MRT analysis code:

    1. paragraphs are ``text.split("\\n\\n")`` (Python semantics: runs of 3+ newlines leave a
       paragraph starting with ``"\\n"``; 4 newlines make an empty paragraph, which still counts);
    2. a paragraph is a candidate boundary when it ``startswith`` one of ``keywords``: raw prefix
       match, case-sensitive, *no* whitespace stripping (``" Wait"`` or ``"\\nWait"`` is not a
       candidate) and no word-boundary check (``"Waiting"`` *is* a candidate, as in MRT);
    3. the start of the text is a boundary at paragraph 0; a candidate at paragraph ``i`` is dropped
       when ``i - prev <= min_gap`` (``prev`` = last *accepted* boundary; dropped candidates do
       not move it; MRT hard-codes 2), otherwise accepted;
    4. after ``max_episodes`` accepted boundaries scanning stops and the rest of the text is the
       last episode (so up to ``max_episodes + 1`` episodes; MRT's ``max_steps``);
    5. every ``group_size`` consecutive episodes are merged (the last group may be shorter).

    Separators: the ``"\\n\\n"`` before a boundary paragraph ends the previous episode, so every
    later episode starts exactly at its keyword; MRT drops them (``rstrip('\\n')`` and re-joins
    with ``"\\n\\n"``), but its prefixes for the meta-prover are ``"\\n\\n".join(steps[:j]) + "\\n\\n"``,
    i.e. the separator ends prefix ``j`` as here. ``episode.text.rstrip("\\n")`` equals MRT's meta
    step for ``group_size=1``. CRLF text: ``"\\r\\n\\r\\n"`` contains no ``"\\n\\n"``, so, as in MRT,
    it is not a paragraph break (normalise line endings first if the model writes CRLF).

    Kinds: the first episode is ``first_kind``; an episode starting at a keyword gets
    ``keyword_kinds[keyword]`` (default ``"other"``); a merged group takes its first member's kind.
    ``info["keyword"]`` records the keyword (None for the first episode). When several keywords
    match, the longest one names the episode.
    """

    def __init__(self, keywords: Sequence[str] = MRT_KEYWORDS, min_gap: int = 2, max_episodes: int = 99,
                 group_size: int = 1, first_kind: str = "attempt",
                 keyword_kinds: Mapping[str, str] | None = None) -> None:
        if isinstance(keywords, str) or not all(isinstance(k, str) and k for k in keywords):
            raise ValueError(f"MRTSegmenter keywords must be a list of non-empty strings, got {keywords!r}")
        for name, v, lo in (("min_gap", min_gap, 0), ("max_episodes", max_episodes, 0), ("group_size", group_size, 1)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"MRTSegmenter {name} must be an integer >= {lo}, got {v!r}")
        self.keywords = tuple(sorted(keywords, key=len, reverse=True))
        self.min_gap, self.max_episodes, self.group_size = min_gap, max_episodes, group_size
        self.first_kind = _check_kind(first_kind, "MRTSegmenter first_kind")
        self.keyword_kinds = dict(keyword_kinds or {})
        for kw, kind in self.keyword_kinds.items():
            if kw not in self.keywords:
                raise ValueError(f"MRTSegmenter keyword_kinds names {kw!r}, which is not one of keywords {list(keywords)}")
            _check_kind(kind, f"MRTSegmenter keyword_kinds[{kw!r}]")

    def boundaries(self, text: str) -> list[tuple[int, str]]:
        """Accepted boundaries as (char offset of the paragraph, keyword), before grouping."""
        starts = [0]
        j = text.find("\n\n")
        while j != -1:
            starts.append(j + 2)
            j = text.find("\n\n", j + 2)
        out: list[tuple[int, str]] = []
        prev = 0
        for i, start in enumerate(starts):
            if len(out) >= self.max_episodes:
                break
            kw = next((k for k in self.keywords if text.startswith(k, start)), None)
            if kw is None or i - prev <= self.min_gap:
                continue
            out.append((start, kw))
            prev = i
        return out

    def __call__(self, text: str) -> list[Episode]:
        heads = [(0, None), *self.boundaries(text)][:: self.group_size]
        ends = [s for s, _ in heads[1:]] + [len(text)]
        return [Episode(self.first_kind if kw is None else self.keyword_kinds.get(kw, "other"), s, e, "",
                        info={"keyword": kw}) for (s, kw), e in zip(heads, ends)]

    def __repr__(self) -> str:
        return (f"MRTSegmenter(min_gap={self.min_gap}, max_episodes={self.max_episodes}, "
                f"group_size={self.group_size}, first_kind={self.first_kind!r})")


class ParagraphSegmenter:
    """PRM-style steps: one episode per paragraph, paragraphs separated by ``sep`` (default ``"\\n\\n"``).

    Each step keeps the separator(s) that follow it: a run of separators (``"\\n\\n\\n\\n"``,
    i.e. empty paragraphs) stays with the preceding step, and separators at the very start
    belong to the first step. ``sep`` is literal: CRLF text ``"\\r\\n\\r\\n"`` is not split by the
    default; use ``sep="\\r\\n\\r\\n"``, or ``RegexSegmenter(r"(?:\\r?\\n){2,}", split="after")``.
    All episodes get ``kind``.
    """

    def __init__(self, sep: str = "\n\n", kind: str = "other") -> None:
        if not isinstance(sep, str) or not sep:
            raise ValueError(f"ParagraphSegmenter sep must be a non-empty string, got {sep!r}")
        self.sep, self.kind = sep, _check_kind(kind, "ParagraphSegmenter kind")

    def __call__(self, text: str) -> list[tuple[int, int, str]]:
        cuts, seen_content = [], False
        pos = 0
        for para in text.split(self.sep):
            if para and seen_content:
                cuts.append(pos)
            seen_content = seen_content or bool(para)
            pos += len(para) + len(self.sep)
        return [(a, b, self.kind) for a, b, _ in _pieces_from_cuts(text, cuts)]

    def __repr__(self) -> str:
        return f"ParagraphSegmenter(sep={self.sep!r})"


class TokenChunkSegmenter:
    """Fixed chunks of ``k`` tokens (needs a tokenizer: ``segment(seg, text, ids, tokenizer)``).

    With ``token_ids`` the chunks are of those ids: cut ``j`` is at character
    ``len(decode(ids[:j*k]))``, so a chunk grows past ``k`` tokens only where a cut would split a
    character (incomplete UTF-8 bytes) or where tokens decode to nothing (skipped special
    tokens), which go to the earlier chunk. Costs ``T/k`` prefix decodes. Without ids the text is
    encoded (``add_special_tokens=False``) and cut after every ``k``-th token's last character.
    """

    def __init__(self, k: int, kind: str = "other") -> None:
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"TokenChunkSegmenter k must be a positive integer (tokens per episode), got {k!r}")
        self.k, self.kind = k, _check_kind(kind, "TokenChunkSegmenter kind")

    def __call__(self, text: str, tokenizer: Any = None, token_ids: Sequence[int] | None = None,
                 skip_special_tokens: bool = True) -> list[tuple[int, int, str]]:
        if tokenizer is None:
            raise ValueError("TokenChunkSegmenter needs a tokenizer: call segment(seg, text, token_ids, tokenizer=tok) "
                             "or seg(text, tokenizer=tok)")
        if token_ids is not None:
            ids = list(token_ids)
            cuts = [len(tokenizer.decode(ids[:t], skip_special_tokens=skip_special_tokens))
                    for t in range(self.k, len(ids), self.k)]
        elif getattr(tokenizer, "is_fast", False):
            offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            ends, running = [], 0
            for _, e in offsets:
                running = max(running, int(e))
                ends.append(running)
            cuts = [ends[t - 1] for t in range(self.k, len(ends), self.k)]
        else:
            ids = tokenizer.encode(text, add_special_tokens=False)
            cuts = [len(tokenizer.decode(ids[:t], skip_special_tokens=True)) for t in range(self.k, len(ids), self.k)]
        return [(a, b, self.kind) for a, b, _ in _pieces_from_cuts(text, cuts)]

    def __repr__(self) -> str:
        return f"TokenChunkSegmenter(k={self.k})"


class RegexSegmenter:
    """A new episode starts at each match of ``pattern`` (``split="before"``) or right after it (``"after"``).

    ``pattern`` is a Python regex (inline flags such as ``(?m)`` or ``(?i)`` work), or a mapping
    ``kind -> regex`` to tell episodes apart by what opens (or closes) them. Episodes that begin with a match
    (``before``) or end with one (``after``) get its kind (``kind`` for a single pattern); the remaining
    text (before the first / after the last match) is ``first_kind`` (``before``) or ``"other"``
    (``after``). Where matches of several kinds mark the same position, the kind listed first wins.
    Matches at the very start or end, and empty matches, are handled (no empty episodes).

    >>> seg = RegexSegmenter({"verify": r"(?m)^\\d+ is ", "revise": r"(?m)^Wait"}, first_kind="attempt")
    >>> seg("Try 3+9.\\n12 is not 20.\\nWait.\\n")
    [(0, 9, 'attempt'), (9, 23, 'verify'), (23, 29, 'revise')]
    """

    def __init__(self, pattern: str | Mapping[str, str], kind: str = "other", split: str = "before",
                 first_kind: str = "other") -> None:
        if split not in ("before", "after"):
            raise ValueError(f"RegexSegmenter split must be 'before' or 'after', got {split!r}")
        patterns = dict(pattern) if isinstance(pattern, Mapping) else {kind: pattern}
        if not patterns:
            raise ValueError("RegexSegmenter needs a pattern (or a non-empty mapping kind -> pattern)")
        self.regexes: dict[str, re.Pattern] = {}
        for k, pat in patterns.items():
            _check_kind(k, "RegexSegmenter kind")
            try:
                self.regexes[k] = re.compile(pat)
            except (re.error, TypeError) as e:
                raise ValueError(f"RegexSegmenter pattern {pat!r} is not a valid regular expression: {e}") from None
        self.pattern, self.kind, self.split = pattern, kind, split
        self.first_kind = _check_kind(first_kind, "RegexSegmenter first_kind")

    def __call__(self, text: str) -> list[tuple[int, int, str]]:
        marks: dict[int, str] = {}
        for k, regex in self.regexes.items():
            for m in regex.finditer(text):
                marks.setdefault(m.start() if self.split == "before" else m.end(), k)
        pieces = _pieces_from_cuts(text, marks)
        if self.split == "before":
            return [(a, b, marks.get(a, self.first_kind)) for a, b, _ in pieces]
        return [(a, b, marks.get(b, "other")) for a, b, _ in pieces]

    def __repr__(self) -> str:
        return (f"RegexSegmenter(pattern={self.pattern!r}, kind={self.kind!r}, split={self.split!r}, "
                f"first_kind={self.first_kind!r})")
