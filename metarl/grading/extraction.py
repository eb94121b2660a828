"""The answer a passage states, and the verdict a verification passage states.

Model output is untrusted: every function here scans a bounded window (the *last*
``max_chars`` characters, where final answers and verdicts live), uses only linear-time
scans and regexes without nested quantifiers, and never evaluates anything.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Iterable

MAX_SCAN_CHARS = 20_000
"""Default window: only the last this-many characters of a passage are scanned."""

ANSWER_STYLES = ("auto", "tag", "boxed", "phrase", "last_number")

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\b")
_PHRASE_RE = re.compile(  # the trigger only: the value runs from its end to the end of the line
    r"(?:^|(?<=\n))[ \t]*#{4}(?!#)"  # GSM8K: "#### 42"
    r"|\banswer(?:[ \t]*\*\*)?[ \t]*(?::|\bis\b[ \t]*:?|=)",
    re.IGNORECASE,
)
_NUMBER_RE = re.compile(
    r"(?<![\w.])[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?:/\d+)?%?"
    r"|(?<![\w.])[-+\u2212]?\.\d+(?:[eE][-+]?\d+)?%?"
)
_TOKEN_RE = re.compile(r"[^\s$]+")
_SENTENCE_END_RE = re.compile(r"\.(?:\s|$)")
_WRAPPERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"), ("**", "**"), ("*", "*"), ("`", "`"))


def _window(text: str, max_chars: int) -> str:
    return text[-max_chars:] if len(text) > max_chars else text


def matching_braces(text: str) -> dict[int, int]:
    """Map the index of every ``{`` to the index of its matching ``}`` (one linear pass).

    LaTeX escapes ``\\{`` and ``\\}`` are literal braces and do not group.

    >>> matching_braces("a{b{c}}\\\\{")
    {3: 5, 1: 6}
    """
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            stack.append(i)
        elif c == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


def _extract_boxed(text: str) -> str | None:
    starts = [m.end() for m in _BOXED_RE.finditer(text)]
    if not starts:
        return None
    pairs: dict[int, int] | None = None
    for pos in reversed(starts):
        j = pos
        while j < len(text) and text[j] in " \t\n":
            j += 1
        if j < len(text) and text[j] == "{":
            if pairs is None:
                pairs = matching_braces(text)
            end = pairs.get(j)
            if end is not None and text[j + 1 : end].strip():
                return text[j + 1 : end].strip()
        elif j > pos:  # "\boxed 5": one token after a space
            m = _TOKEN_RE.match(text, j)
            if m:
                return m.group(0)
    return None


@functools.lru_cache(maxsize=16)
def _tag_regex(tag: str) -> re.Pattern[str]:
    return re.compile(rf"<[ \t]*(/?)[ \t]*{re.escape(tag)}[ \t]*>", re.IGNORECASE)


def _extract_tag(text: str, tag: str) -> str | None:
    pair: tuple[int, int] | None = None  # content span of the last closed tag
    open_end: int | None = None
    for m in _tag_regex(tag).finditer(text):
        if m.group(1):
            if open_end is not None:
                pair = (open_end, m.start())
            open_end = None
        else:
            open_end = m.end()
    if open_end is not None:  # a final unclosed tag: generation stopped at the closing tag
        content = _unwrap(text[open_end:].strip())
        if content:
            return content
    if pair is None:
        return None
    return _unwrap(text[pair[0] : pair[1]].strip()) or None


def _strip_boxed(s: str) -> str:
    m = _BOXED_RE.match(s)
    if not m:
        return s
    j = m.end()
    while j < len(s) and s[j] in " \t":
        j += 1
    if j < len(s) and s[j] == "{" and matching_braces(s).get(j) == len(s) - 1:
        return s[j + 1 : -1].strip()
    return s


def _unwrap(s: str) -> str:
    """Strip math delimiters / markdown emphasis and a sole ``\\boxed{...}`` around an answer."""
    for _ in range(4):
        before = s
        for left, right in _WRAPPERS:
            if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
                inner = s[len(left) : len(s) - len(right)]
                if left not in inner and right not in inner:
                    s = inner.strip()
        s = _strip_boxed(s)
        if s == before:
            break
    return s


def _clean_phrase(value: str) -> str | None:
    value = value.strip().lstrip("*:").strip()
    m = _SENTENCE_END_RE.search(value)
    if m:  # "answer is 5. Then ..." -> "5"; decimals have no whitespace after the point
        value = value[: m.start()]
    value = value.strip().rstrip(".,;").strip()
    value = _unwrap(value).rstrip(".").strip()
    return value or None


def _extract_phrase(text: str) -> str | None:
    ends = [m.end() for m in _PHRASE_RE.finditer(text)]
    for end in reversed(ends):  # the last phrase that states something
        line_end = text.find("\n", end)
        cleaned = _clean_phrase(text[end : len(text) if line_end < 0 else line_end])
        if cleaned:
            return cleaned
    return None


def _extract_last_number(text: str) -> str | None:
    last = None
    for m in _NUMBER_RE.finditer(text):
        last = m
    return None if last is None else last.group(0).replace("\u2212", "-")


def extract_answer(
    text: str | None,
    style: str = "auto",
    *,
    tag: str = "answer",
    max_chars: int = MAX_SCAN_CHARS,
    last_number_fallback: bool = False,
) -> str | None:
    """The answer ``text`` states, or None.

    Styles: ``"boxed"`` (last ``\\boxed{...}`` with balanced braces), ``"tag"`` (last
    ``<answer>...</answer>``; a final unclosed ``<answer>`` counts, as when generation stops at
    the closing tag), ``"phrase"`` ("the answer is X", "Answer: X", "#### X"),
    ``"last_number"``, and ``"auto"``: the first of tag, boxed, phrase that matches (then the
    last number if ``last_number_fallback``). Only the last ``max_chars`` characters are scanned.

    >>> extract_answer("so $x = \\\\boxed{\\\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    >>> extract_answer("<answer>42</answer> and later \\\\boxed{7}")
    '42'
    >>> extract_answer("The answer is $3.5$. Done.")
    '3.5'
    >>> extract_answer("We get 1,234 apples.", "last_number")
    '1,234'
    >>> extract_answer("no answer here") is None
    True
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"extract_answer expects the model output as str, got {type(text).__name__}")
    if style not in ANSWER_STYLES:
        raise ValueError(f"unknown answer style {style!r}; use one of {ANSWER_STYLES}")
    text = _window(text, max_chars)
    if style == "tag":
        return _extract_tag(text, tag)
    if style == "boxed":
        return _extract_boxed(text)
    if style == "phrase":
        return _extract_phrase(text)
    if style == "last_number":
        return _extract_last_number(text)
    for fn in (lambda t: _extract_tag(t, tag), _extract_boxed, _extract_phrase):
        found = fn(text)
        if found:
            return found
    return _extract_last_number(text) if last_number_fallback else None


# ---- verdicts -------------------------------------------------------------------------------

DEFAULT_POSITIVE: tuple[str, ...] = ("correct", "right", "valid", "true", "yes")
DEFAULT_NEGATIVE: tuple[str, ...] = ("incorrect", "wrong", "invalid", "false", "no", "not correct")

# A verdict word preceded in the same clause (within 4 words) by one of these is negated.
_NEGATOR_RE = re.compile(r"\b(?:not|never|hardly|cannot|nor)\b|n[’']t\b", re.IGNORECASE)
_CLAUSE_BREAK_RE = re.compile(r"[.,;:!?\n()]")


def _norm_phrase(p: str) -> str:
    return " ".join(p.lower().split())


@functools.lru_cache(maxsize=64)
def _verdict_regex(positive: tuple[str, ...], negative: tuple[str, ...]) -> re.Pattern[str]:
    phrases = sorted({_norm_phrase(p) for p in (*positive, *negative) if p.strip()}, key=len, reverse=True)
    if not phrases:
        raise ValueError("parse_verdict needs at least one positive or negative word")
    alt = "|".join(r"\s+".join(re.escape(w) for w in p.split()) for p in phrases)
    return re.compile(rf"(?<![\w'’-])(?:{alt})(?![\w'’-])", re.IGNORECASE)


def _negated(text: str, start: int) -> bool:
    before = text[max(0, start - 60) : start]
    cut = None
    for m in _CLAUSE_BREAK_RE.finditer(before):
        cut = m.end()
    if cut is not None:
        before = before[cut:]
    words = before.split()[-4:]
    return bool(_NEGATOR_RE.search(" ".join(words)))


def parse_verdict(
    text: str | None,
    positive: Iterable[str] = DEFAULT_POSITIVE,
    negative: Iterable[str] = DEFAULT_NEGATIVE,
    *,
    max_chars: int = MAX_SCAN_CHARS,
) -> bool | None:
    """The verdict a verification passage states: True (positive), False (negative), or None.

    Words match case-insensitively on word boundaries ("incorrect" is not "correct"); the
    longest listed phrase wins at a position ("not correct" is negative); the *last* verdict in
    the passage wins; a verdict word preceded in its clause (within 4 words) by a negator
    ("not", "never", "isn't", ...) is flipped ("is not right" -> False, "not wrong" -> True).

    >>> parse_verdict("Let me check: 2+2=4, so the answer is correct.")
    True
    >>> parse_verdict("At first it looked right, but it is wrong.")
    False
    >>> parse_verdict("This is not correct.")
    False
    >>> parse_verdict("The result isn't valid")
    False
    >>> parse_verdict("Incorrect.")
    False
    >>> parse_verdict("nothing to see") is None
    True
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"parse_verdict expects str, got {type(text).__name__}")
    pos, neg = tuple(positive), tuple(negative)
    if isinstance(positive, str) or isinstance(negative, str):
        raise TypeError("positive/negative are lists of words, not a single string; wrap it: ('correct',)")
    regex = _verdict_regex(pos, neg)
    text = _window(text, max_chars)
    last = None
    for m in regex.finditer(text):
        last = m
    if last is None:
        return None
    phrase = _norm_phrase(last.group(0))
    negatives = {_norm_phrase(p) for p in neg}
    verdict = phrase not in negatives
    if _negated(text, last.start()):
        verdict = not verdict
    return verdict
