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

ANSWER_STYLES = ("auto", "tag", "boxed", "phrase", "last_number", "math")

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\b")
_PHRASE_RE = re.compile(  # the trigger only: the value runs from its end to the end of the line
    r"(?:^|(?<=\n))[ \t]*#{4}(?!#)"  # GSM8K: "#### 42"
    r"|\banswer(?:[ \t]*\*\*)?[ \t]*(?::|\bis\b[ \t]*:?|=)",
    re.IGNORECASE,
)
# "Final answer ... is X" (math-verify's ``final answer.{0,100}?\s+is``): ties with \boxed{}, the later one wins.
_FINAL_RE = re.compile(r"\bfinal[ \t]+answer\b[^\n]{0,100}?[ \t]is\b[ \t]*:?", re.IGNORECASE)
_NUMBER_RE = re.compile(
    r"(?<![\w.])[-+\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?(?:/\d+)?%?"
    r"|(?<![\w.])[-+\u2212]?\.\d+(?:[eE][-+]?\d+)?%?"
)
_TOKEN_RE = re.compile(r"[^\s$]+")
_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{2,}")  # a word that is not a LaTeX command
_BOXED_SEPARATOR_RE = re.compile(r"\b(?:and|or)\b|,|;")
_LATEX_FRACTION_RE = re.compile(r"-?\\frac\{-?\d+(?:[.,]\d+)?\}\{-?\d+(?:[.,]\d+)?\}")
# math-verify's unanchored numbers: after a space, "=" or "**" (not inside words: AZYUK2A has none), an
# optional currency sign; 1,234.5 / 1 234 / 2,74 (decimal comma) / .5 / 7 / 1/2, and a percent sign.
_MV_NUMBER_RE = re.compile(
    r"(?<![^\s=*])(?:\*\*)?[$\u20ac\u00a3\u00a5\u20b9]?"
    r"(?P<n>[-\u2212]?(?:[1-9]\d{0,2}(?:[ ,]\d{3})+(?:\.\d+)?|\d+[.,]\d+|\.\d+|\d+)(?:/\d+)?)(?P<pct>[ \t]*%)?"
)
_PROSE_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{4,}")  # a word of 4+ letters that is not a LaTeX command
_TEXT_ARG_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname|begin|end)\s*\{[^{}]*\}")
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


def _boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, content)`` of every complete, non-empty ``\\boxed{...}`` / ``\\fbox{...}`` (balanced
    braces; ``end`` is past the closing brace) and ``\\boxed 5`` (one token after a space), in text order."""
    spans: list[tuple[int, int, str]] = []
    pairs: dict[int, int] | None = None
    n = len(text)
    for m in _BOXED_RE.finditer(text):
        j = m.end()
        while j < n and text[j] in " \t\n":
            j += 1
        if j < n and text[j] == "{":
            if pairs is None:
                pairs = matching_braces(text)
            end = pairs.get(j)
            if end is not None and text[j + 1 : end].strip():
                spans.append((m.start(), end + 1, text[j + 1 : end].strip()))
        elif j > m.end():
            t = _TOKEN_RE.match(text, j)
            if t:
                spans.append((m.start(), t.end(), t.group(0)))
    return spans


def _last_boxed(spans: list[tuple[int, int, str]]) -> int | None:
    """Index of the last-starting span (an inner box of ``\\boxed{\\boxed{5}}`` is the last)."""
    return max(range(len(spans)), key=lambda i: spans[i][0]) if spans else None


def _extract_boxed(text: str) -> str | None:
    spans = _boxed_spans(text)
    last = _last_boxed(spans)
    return None if last is None else spans[last][2]


def _boxed_list(text: str) -> tuple[str, int] | None:
    """The last ``\\boxed{}`` answer together with the boxes listed just before it, joined by ``, ``, and
    where it ends; math-verify's rule (latex2sympy2_extended ``extract_boxed_content``): a preceding
    box joins when under 10 characters separate them, or under 70 with ``and``/``or``/``,``/``;`` between
    and a different content; repeats of the same content next to each other count once.

    >>> _boxed_list("so \\\\boxed{1}, \\\\boxed{2} and \\\\boxed{3}.")
    ('1, 2, 3', 37)
    >>> _boxed_list("\\\\boxed{200} is the interest of the first six months; adding the second CD's interest, "
    ...             "we get \\\\boxed{255}")
    ('255', 104)
    """
    spans = _boxed_spans(text)
    last = _last_boxed(spans)
    if last is None:
        return None
    start, end, content = spans[last]
    picked = [content]
    for prev_start, prev_end, prev in reversed(spans[:last]):
        if prev_end > start:  # a box around the current one
            break
        between = text[prev_end:start]
        if not (len(between) < 10 or (prev != picked[-1] and len(between) < 70
                                      and _BOXED_SEPARATOR_RE.search(between))):
            break
        if prev != picked[-1]:
            picked.append(prev)
        start = prev_start
    return ", ".join(reversed(picked)), end


ANSWER_TAGS: tuple[str, ...] = ("attempt", "revise", "answer")
"""The tags whose content states an answer in metarl's tag format (``metarl.tasks.base.ANSWER_TAGS``): the answer
of a tag-format text is the content of the last of them (the last attempt or revision, or the forced answer)."""
STOP_TAGS: tuple[str, ...] = ("verify",)
"""Tags of the format that state no answer: an unclosed answer block ends where one of them opens."""


@functools.lru_cache(maxsize=16)
def _tag_regex(tags: tuple[str, ...]) -> re.Pattern[str]:
    names = "|".join(re.escape(t) for t in tags)
    return re.compile(rf"<[ \t]*(/?)[ \t]*({names})[ \t]*>", re.IGNORECASE)


def _extract_tag(text: str, tag: str | tuple[str, ...]) -> str | None:
    """The content of the last block of ``tag`` (one tag, or any of several: the format's answer tags), closed
    by its closing tag or, unclosed, by the next tag of the format or the end of the text."""
    tags = (tag,) if isinstance(tag, str) else tuple(tag)
    wanted = {t.lower() for t in tags}
    stops = STOP_TAGS if wanted & set(ANSWER_TAGS[:2]) else ()
    pair: tuple[int, int] | None = None  # content span of the last closed block
    open_end: int | None = None
    for m in _tag_regex(tags + tuple(t for t in stops if t not in wanted)).finditer(text):
        closing, name = bool(m.group(1)), m.group(2).lower()
        if name not in wanted or closing:  # a closing tag, or a verify block: the open block ends here
            if open_end is not None:
                pair = (open_end, m.start())
            open_end = None
        else:
            if open_end is not None and text[open_end : m.start()].strip():
                pair = (open_end, m.start())
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


def is_bare_answer(text: str, max_chars: int = 200) -> bool:
    """Whether ``text`` is an answer by itself: short, one line, no ``$``, no word of two or more letters
    outside LaTeX commands (``x = 5``, ``-\\frac{1}{2}``, ``(1, 2]``, ``\\pi/2``; not ``it is 6``).

    >>> is_bare_answer("x^2 - \\\\sqrt{2}"), is_bare_answer("it is 6"), is_bare_answer("$5$")
    (True, False, False)
    """
    text = text.strip()
    return (0 < len(text) <= max_chars and "\n" not in text and "$" not in text
            and _WORD_RE.search(text) is None)


def _phrases(text: str, final_only: bool = False):
    """``(start, answer)`` of the phrases that state an answer, the last first. A "final answer ... is X"
    phrase counts only when X reads as math (bare, or in ``$``/``\\boxed``): "Final answer: 5. This is
    because ..." states 5 (through its "answer:"), not "because"."""
    triggers = [(m.start(), m.end(), True) for m in _FINAL_RE.finditer(text)]
    if not final_only:
        triggers += [(m.start(), m.end(), False) for m in _PHRASE_RE.finditer(text)]
    triggers.sort(key=lambda t: t[1])
    for start, end, final in reversed(triggers):
        line_end = text.find("\n", end)
        raw = text[end : len(text) if line_end < 0 else line_end]
        cleaned = _clean_phrase(raw)
        if cleaned and (not final or is_bare_answer(cleaned) or "$" in raw or "\\boxed" in raw):
            yield start, cleaned


def _extract_phrase(text: str) -> str | None:
    return next((answer for _, answer in _phrases(text)), None)


def stated_answer(text: str, tag: str | tuple[str, ...] = ANSWER_TAGS) -> tuple[str, str] | None:
    """``(answer, how)``: the ``auto`` reading of :func:`extract_answer` and where it came from, one of
    ``"tag"``, ``"boxed"``, ``"final"`` ("final answer ... is X"), ``"phrase"``, ``"bare"`` (the whole
    text, ``$...$`` stripped); None when the text states nothing of these. No window is applied.

    math-verify's priorities on anchored answers: the tag (metarl's own format) first; else the later
    of the last ``\\boxed{}`` list and the last "final answer ... is X" (math-verify gives both the same
    priority and takes the rightmost); else the last other answer phrase; else the whole text when it is
    a bare answer (:func:`is_bare_answer`).

    >>> stated_answer("\\\\boxed{255} ... The final answer is $10,455$."), stated_answer("$-5$")
    (('10,455', 'final'), ('-5', 'bare'))
    """
    found = _extract_tag(text, tag)
    if found:
        return found, "tag"
    boxed = _boxed_list(text)
    final = next(_phrases(text, final_only=True), None)
    if final is not None and (boxed is None or final[0] >= boxed[1]):
        return final[1], "final"
    if boxed is not None:
        return boxed[0], "boxed"
    found = _extract_phrase(text)
    if found:
        return found, "phrase"
    whole = _unwrap(text.strip())
    return (whole, "bare") if is_bare_answer(whole) else None


def _extract_last_number(text: str) -> str | None:
    last = None
    for m in _NUMBER_RE.finditer(text):
        last = m
    return None if last is None else last.group(0).replace("\u2212", "-")


_FORMULA_OPEN_RE = re.compile(r"\\\(|\\\[|\$\$|(?<!\\)\$")
_FORMULA_CLOSE = {"\\(": "\\)", "\\[": "\\]", "$$": "$$", "$": "$"}
_FORMULA_JOIN_RE = re.compile(r"\s*(?:,?\s*(?:and|or)\b|,)\s*")
MAX_LISTED_FORMULAS = 6
"""A list ``$a$, $b$ and $c$`` of up to this many formulas reads as one answer (math-verify's limit)."""


def _find_unescaped(text: str, token: str, start: int) -> int:
    while True:
        k = text.find(token, start)
        if k <= 0 or text[k - 1] != "\\":
            return k
        start = k + 1


def _formulas(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of the formulas ``$...$`` (one line), ``$$...$$``, ``\\(...\\)``, ``\\[...\\]`` in
    text order, delimiters included; ``\\$`` is a dollar sign. One left-to-right pass: a delimiter
    that is never closed stops only its own kind."""
    spans: list[tuple[int, int]] = []
    dead: set[str] = set()
    i = 0
    while True:
        m = _FORMULA_OPEN_RE.search(text, i)
        if m is None:
            return spans
        tok = m.group(0)
        if tok in dead:
            i = m.end()
            continue
        k = _find_unescaped(text, _FORMULA_CLOSE[tok], m.end())
        if k < 0:
            dead.add(tok)
            i = m.end()
            continue
        content = text[m.end() : k]
        if tok == "$" and "\n" in content or not content.strip():
            i = k if tok == "$" else k + len(_FORMULA_CLOSE[tok])  # that "$" may open the next one
            continue
        end = k + len(_FORMULA_CLOSE[tok])
        spans.append((m.start(), end))
        i = end


def _math_candidates(text: str) -> list[tuple[int, int]]:
    """Spans math-verify could read in a text without an answer anchor: formulas (a listed run of them,
    ``$a$ and $b$``, as one span), ``\\frac{a}{b}``, and numbers in math-verify's formats (``1,234.5``,
    ``1 234``, ``2,74``, ``.5``, ``1/2``, ``50%``; after a space, ``=`` or the start, so not the 2 of
    ``AZYUK2A``)."""
    spans: list[tuple[int, int]] = []
    run: list[tuple[int, int]] = []
    for f in _formulas(text):
        if run and len(run) < MAX_LISTED_FORMULAS and _FORMULA_JOIN_RE.fullmatch(text, run[-1][1], f[0]):
            run.append(f)
            continue
        if run:
            spans.append((run[0][0], run[-1][1]))
        run = [f]
    if run:
        spans.append((run[0][0], run[-1][1]))
    spans += [(m.start(), m.end()) for m in _LATEX_FRACTION_RE.finditer(text)]
    spans += [(m.start("n"), m.end()) for m in _MV_NUMBER_RE.finditer(text)]
    return spans


def _math_text(text: str, start: int, end: int) -> str:
    return text[start:end].strip().replace("\u2212", "-")


def _extract_last_math(text: str) -> str | None:
    """The last formula (or list of formulas) or number of a text that states no answer, as math-verify
    reads such a text: of :func:`_math_candidates`, the one that ends last, the longer one on a tie.

    >>> _extract_last_math("so the number is not 10, it is 1,000.99m2"), _extract_last_math("we get $x^2$.")
    ('1,000.99', '$x^2$')
    >>> _extract_last_math("the roots are $1$ and $-2$ (both real)")
    '$1$ and $-2$'
    """
    spans = _math_candidates(text)
    if not spans:
        return None
    start, end = max(spans, key=lambda s: (s[1], s[1] - s[0]))
    return _math_text(text, start, end)


def _extract_first_math(text: str) -> str | None:
    """The first of :func:`_math_candidates` (the longer one on a tie): what math-verify reads after
    "the answer is" in ``answer is 5 apples and 3 pears`` (5)."""
    spans = _math_candidates(text)
    if not spans:
        return None
    start, end = min(spans, key=lambda s: (s[0], s[0] - s[1]))
    return _math_text(text, start, end)


def reads_as_latex(answer: str, max_chars: int = 200) -> bool:
    """Whether a stated answer is read as one LaTeX expression (put in ``\\boxed{}`` for math-verify) rather
    than as text to search: short, no ``$``, no word of four or more letters outside LaTeX commands and
    their text arguments (``\\text{odd}``, ``\\begin{pmatrix}``). Laxer than :func:`is_bare_answer`.

    >>> reads_as_latex("\\\\begin{pmatrix}1 & 2\\\\end{pmatrix}"), reads_as_latex("x = 5"), reads_as_latex("5 apples")
    (True, True, False)
    """
    answer = answer.strip()
    return (0 < len(answer) <= max_chars and "$" not in answer.replace("\\$", "")
            and _PROSE_RE.search(_TEXT_ARG_RE.sub("", answer)) is None)


def _balanced(text: str) -> bool:
    """Every unescaped ``{`` and ``}`` of ``text`` pairs up."""
    opened = sum(1 for i, c in enumerate(text) if c == "{" and (i == 0 or text[i - 1] != "\\"))
    closed = sum(1 for i, c in enumerate(text) if c == "}" and (i == 0 or text[i - 1] != "\\"))
    return opened == closed == len(matching_braces(text))


def math_answer(text: str, tag: str | tuple[str, ...] = ANSWER_TAGS, _in_tag: bool = False) -> str | None:
    """The answer of ``text`` written as math-verify reads it best (the ``"math"`` style of
    :func:`extract_answer`): a box, "final answer is" or phrase answer (:func:`stated_answer`) in
    ``\\boxed{}`` (a phrase answer holding prose, ``5 apples``, by its first formula or number, as
    math-verify reads "answer" followed by text); a tag's content read the same way, a bare one in
    ``\\boxed{}`` too (metarl's own format: ``<answer>1,3</answer>`` is the list, as a box is); a bare
    text as it is (``-5``, ``$x=2$``, ``1000,99``: math-verify reads such a text itself); else the last
    formula or number (:func:`_extract_last_math`). Reading its own output gives an ordinary answer back
    (a box, a bare answer, a formula, a number): ``math_answer(math_answer(t)) == math_answer(t)``, so the
    math grader grades an answer extracted this way as it grades the text it came from.

    >>> math_answer("so \\\\boxed{1} and \\\\boxed{2}."), math_answer("The answer is 7."), math_answer("$-5$")
    ('\\\\boxed{1, 2}', '\\\\boxed{7}', '$-5$')
    >>> math_answer("the total is 1 000 apples"), math_answer("<answer>1,3</answer>")
    ('1 000', '\\\\boxed{1,3}')
    """
    found = stated_answer(text, tag)
    if found is None:
        return _extract_last_math(text) if not _in_tag else _anchored(text.strip(), text)
    answer, how = found
    if how == "tag" and not _in_tag:
        return math_answer(answer, tag, True)
    if how == "bare" and not _in_tag:
        return text.strip()
    if how == "boxed":
        return "\\boxed{" + answer + "}"
    return _anchored(answer, text)


def _anchored(answer: str, text: str) -> str | None:
    """A stated answer in ``\\boxed{}`` when it reads as LaTeX, else its first formula or number (else
    the text's last one)."""
    if reads_as_latex(answer) and _balanced(answer) and _BOXED_RE.search(answer) is None:
        return "\\boxed{" + answer + "}"
    return _extract_first_math(answer) or _extract_last_math(text)


def extract_answer(
    text: str | None,
    style: str = "auto",
    *,
    tag: str | tuple[str, ...] = ANSWER_TAGS,
    max_chars: int = MAX_SCAN_CHARS,
    last_number_fallback: bool = False,
) -> str | None:
    """The answer ``text`` states, or None.

    Styles: ``"boxed"`` (last ``\\boxed{...}`` with balanced braces), ``"tag"`` (the content of the
    last block of ``tag``: by default metarl's tag format, the last ``<attempt>``, ``<revise>`` or
    ``<answer>`` block, :data:`ANSWER_TAGS`; a final unclosed block counts, as when generation stops at
    the closing tag, and ends at a ``<verify>``), ``"phrase"`` (the last of "the answer is X", "Answer: X", "#### X",
    "Final answer: the total is X"), ``"last_number"``, ``"auto"``, math-verify's priorities on
    anchored answers (:func:`stated_answer`):

    1. the tag (tag-format text: the last attempt, revision or forced answer);
    2. the later of the last ``\\boxed{}`` (with the boxes listed just before it, joined by ``, ``:
       ``\\boxed{1}, \\boxed{2}`` -> ``1, 2``, as math-verify reads them as a set) and the last
       "final answer ... is X";
    3. the last other answer phrase;
    4. the whole text when it is a bare answer (``-5``, ``$x = 2$``; see :func:`is_bare_answer`);
    5. the last number, if ``last_number_fallback``; else None;

    and ``"math"``: ``"auto"``, then, for a text that states no answer, its last formula or number
    (``$...$``, ``\\(...\\)``, ``\\[...\\]``, a number; the one that ends last), as math-verify reads any
    text. ``answer=auto`` uses it with the math grader (:attr:`metarl.grading.MathGrader.answer_style`).

    Only the last ``max_chars`` characters are scanned.

    >>> extract_answer("so $x = \\\\boxed{\\\\frac{1}{2}}$.")
    '\\\\frac{1}{2}'
    >>> extract_answer("<answer>42</answer> and later \\\\boxed{7}")
    '42'
    >>> extract_answer("<attempt>3+9</attempt><verify>3+9=12!=20 incorrect</verify><revise>8+12</revise>")
    '8+12'
    >>> extract_answer("The answer is $3.5$. Done.")
    '3.5'
    >>> extract_answer("We get 1,234 apples.", "last_number")
    '1,234'
    >>> extract_answer("\\\\boxed{1}, \\\\boxed{2}"), extract_answer("\\\\boxed{1}, \\\\boxed{2}", "boxed")
    ('1, 2', '2')
    >>> extract_answer("\\\\boxed{255} ... The final answer is $10,455$. I hope it is correct.")
    '10,455'
    >>> extract_answer("-5"), extract_answer("it is -5"), extract_answer("it is -5", "math")
    ('-5', None, '-5')
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
    if style == "math":
        return math_answer(text, tag)
    found = stated_answer(text, tag)
    if found is not None:
        return found[0]
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
