"""Answer extraction, verdict parsing and graders (docs/method.md §3): behaviour, safety, bounds."""
from __future__ import annotations

import doctest
import importlib
import json
import pickle
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from metarl.grading import (
    Grader,
    GradingTimeout,
    MathGrader,
    build_grader,
    eval_arithmetic,
    extract_answer,
    grade_exact,
    grade_number,
    parse_number,
    parse_verdict,
    run_with_time_limit,
    screen_math,
)
from metarl.grading.math_grader import MathWorker
from metarl.grading.screening import nesting_depth
from metarl.grading.task_verifiers import CountdownVerifier
from metarl.registry import ConfigError

SAFETY_BOUND_S = 2.5  # a safety bound for "returns and does not hang", not a performance claim


def bounded(fn, *args, limit: float = SAFETY_BOUND_S, **kwargs):
    """Run ``fn`` in a fresh thread (graders must be bounded in any thread); fail if it hangs."""
    out: dict = {}

    def target():
        t0 = time.perf_counter()
        try:
            out["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - reported below
            out["error"] = e
        out["elapsed"] = time.perf_counter() - t0

    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(limit)
    assert not th.is_alive(), f"{getattr(fn, '__name__', fn)} still running after {limit} s on {str(args)[:80]!r}"
    if "error" in out:
        raise AssertionError(f"raised {out['error']!r} on {str(args)[:80]!r}")
    assert out["elapsed"] < limit
    return out["value"]


@pytest.fixture(scope="module")
def math_grader():
    g = MathGrader(timeout=1.0)
    assert g.warm_up(30.0)  # start the worker before anything is timed
    return g


# ---- extraction ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, style, expected",
    [
        ("x = \\boxed{\\frac{1}{\\sqrt{2}}}", "boxed", "\\frac{1}{\\sqrt{2}}"),  # nested braces
        ("\\boxed{1} first, then \\boxed{\\{2, 3\\}}", "boxed", "\\{2, 3\\}"),  # last wins; escaped braces
        ("\\boxed{1} and a truncated \\boxed{2", "boxed", "1"),  # unbalanced last -> previous complete
        ("\\boxed{} then nothing", "boxed", None),
        ("$\\boxed 5$", "boxed", "5"),
        ("\\fbox{7}", "boxed", "7"),
        ("<answer>1</answer> ... <ANSWER> 2 </Answer>", "tag", "2"),
        ("<answer>1</answer> then <answer>\\boxed{3}", "tag", "3"),  # unclosed final tag (stop string)
        ("<answer></answer>", "tag", None),
        ("The answer is $3.5$. So next", "phrase", "3.5"),
        ("**Final Answer:** $\\frac{1}{2}$.", "phrase", "\\frac{1}{2}"),
        ("answer is 4.\nLater: the answer is 5", "phrase", "5"),
        ("Natalia sold 72 clips.\n#### 72", "phrase", "72"),
        ("we answer the question", "phrase", None),
        ("I have 3 apples and \u22124.5 pears", "last_number", "-4.5"),
        ("costs $1,000,000.50 total", "last_number", "1,000,000.50"),
        ("<answer>4</answer> \\boxed{5} the answer is 6", "auto", "4"),  # tag first
        ("\\boxed{5} the answer is 6", "auto", "5"),  # then boxed
        ("the answer is 6", "auto", "6"),  # then phrase
        ("it is 6", "auto", None),  # last number only when asked
        ("", "auto", None),
    ],
)
def test_extract_answer(text, style, expected):
    assert extract_answer(text, style) == expected


@pytest.mark.parametrize(
    "text, style, expected",
    [
        # math-verify's reading of anchored answers (auto): box lists, "final answer is", bare texts
        ("so \\boxed{1}, \\boxed{2} and \\boxed{3}.", "auto", "1, 2, 3"),  # listed boxes form one answer
        ("\\boxed{1}, \\boxed{2}", "boxed", "2"),  # the boxed style stays the last box
        ("\\boxed{2} then much later, after a long detour through other ideas, \\boxed{5}", "auto", "2, 5"),
        ("\\boxed{2} was wrong. Much later, after a long detour through several other ideas: \\boxed{5}", "auto",
         "5"),  # 70 or more characters apart: only the last box
        ("\\boxed{5}\\boxed{5}", "auto", "5"),  # a repeated box counts once
        ("\\boxed{\\boxed{7}}", "auto", "7"),
        ("\\boxed{255} so $10,455. Final Answer: The final answer is $10,455$. I hope it is correct.", "auto",
         "10,455"),  # the later of box and "final answer is" wins
        ("The final answer is 3, so we box it: \\boxed{4}", "auto", "4"),
        ("Final Answer: The largest $n$ is 34.", "auto", "34"),
        ("Final Answer: The largest $n$ is 34.", "phrase", "34"),
        ("Final answer: 5. This is because 2+3=5", "auto", "5"),  # "is because" states no math
        ("-5", "auto", "-5"),  # a bare answer is its own answer
        ("$x = 2$", "auto", "x = 2"),
        ("it is -5", "auto", None),
        # the math style: auto written for math-verify, else the last formula or number
        ("so \\boxed{1}, \\boxed{2}", "math", "\\boxed{1, 2}"),
        ("The answer is 7.", "math", "\\boxed{7}"),
        ("the answer is 5 apples and 3 pears", "math", "5"),  # the first math after "answer", as math-verify
        ("$-5$", "math", "$-5$"),
        ("the number is not 10 which is 1,000.99\u20ac", "math", "1,000.99"),
        ("Soucis : 2,74 $ a..", "math", "2,74"),  # decimal comma, as math-verify's number reader
        ("The roots are $1$ and $-2$ (both real).", "math", "$1$ and $-2$"),  # a list of formulas
        ("we get \\( x^2 \\) at last", "math", "\\( x^2 \\)"),
        ("AZYUK2A", "math", None),  # a digit inside a word is not a number
        ("no answer here", "math", None),
    ],
)
def test_extract_answer_reads_like_math_verify(text, style, expected):
    assert extract_answer(text, style) == expected


def test_math_style_reads_its_own_answers_back():
    """The math grader reads its input with the math style, so an answer extracted with it grades the same."""
    from metarl.grading.extraction import math_answer

    data = Path(__file__).parent / "data" / "math_verify_cases.jsonl"
    texts = [t for line in data.read_text().splitlines()[1:] for t in (json.loads(line)["pred"],
                                                                         json.loads(line)["gold"])]
    texts += [p for p, _, _ in MATH_PAIRS]
    checked = 0
    for text in texts:
        answer = math_answer(text)
        if answer is not None:
            assert math_answer(answer) == answer, (text[-80:], answer)
            checked += 1
    assert checked > 500


def test_extract_answer_options_and_errors():
    assert extract_answer("it is 6", last_number_fallback=True) == "6"
    assert extract_answer("<final>9</final>", "tag", tag="final") == "9"
    assert extract_answer(None) is None
    # only the window at the end is scanned
    text = "\\boxed{1}" + " " * 100
    assert extract_answer(text, max_chars=50) is None
    assert extract_answer(text, max_chars=200) == "1"
    with pytest.raises(ValueError, match="unknown answer style 'box'"):
        extract_answer("x", "box")
    with pytest.raises(TypeError, match="expects the model output as str"):
        extract_answer(42)


# ---- verdicts --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, expected",
    [
        ("Checking: 2+2=4. The answer is correct.", True),
        ("This is not correct.", False),
        ("The result isn't valid", False),
        ("I don't think this is right", False),
        ("Incorrect.", False),
        ("INCORRECT", False),
        ("Correct!", True),
        ("At first it looked right, but it is wrong.", False),  # the last verdict wins
        ("It seemed wrong, but on reflection it is right.", True),
        ("No, wait. Yes.", True),
        ("No, it is correct", True),  # the comma ends the clause of "No"
        ("This is not incorrect", True),  # negated negative
        ("correctly computed, incorrectness aside", None),  # word boundaries
        ("nothing to report", None),
        ("", None),
    ],
)
def test_parse_verdict(text, expected):
    assert parse_verdict(text) is expected


def test_parse_verdict_custom_words():
    pos, neg = ("verified", "pass"), ("fail", "not verified")
    assert parse_verdict("status: PASS", pos, neg) is True
    assert parse_verdict("the claim is not verified", pos, neg) is False
    assert parse_verdict("verified, then fail", pos, neg) is False
    assert parse_verdict("it is correct", pos, neg) is None  # default words are not used
    with pytest.raises(TypeError, match="lists of words"):
        parse_verdict("x", "correct", ("wrong",))
    with pytest.raises(ValueError, match="at least one"):
        parse_verdict("x", (), ())


# ---- exact and number graders ----------------------------------------------------------------

def test_grade_exact():
    assert grade_exact("  New   York. ", "new york")
    assert not grade_exact("New York", "new york", case_sensitive=True)
    assert not grade_exact("New York City", "new york")
    assert not grade_exact("a  b", "a b", normalize_whitespace=False)
    assert not grade_exact(None, "x")


@pytest.mark.parametrize(
    "text, value",
    [
        ("1,234", Fraction(1234)),
        ("-3", Fraction(-3)),
        ("\u22123", Fraction(-3)),
        (".5", Fraction(1, 2)),
        ("3.5e-2", Fraction(7, 200)),
        ("2.1 \\times 10^{3}", Fraction(2100)),
        ("\\frac{3}{4}", Fraction(3, 4)),
        ("\\frac12", Fraction(1, 2)),
        ("-\\dfrac{1}{2}", Fraction(-1, 2)),
        ("1 1/2", Fraction(3, 2)),
        ("$1,000$", Fraction(1000)),
        ("\\boxed{\\text{12}}", Fraction(12)),
        ("50\\%", Fraction(50)),
        ("1\\,000", Fraction(1000)),
        ("1,23", None),
        ("12 apples", None),
        ("1/0", None),
        ("1e999999", None),
        ("9" * 2000, None),
        ("0x10", None),
    ],
)
def test_parse_number(text, value):
    assert parse_number(text) == value


@pytest.mark.parametrize(
    "pred, gold, expected",
    [
        ("1,000", "1000", True),
        ("0.5", "\\frac12", True),
        ("-3", "3", False),
        ("-7", "-7.0", True),
        ("50%", "0.5", True),  # percent="either"
        ("50%", "50", True),
        ("The total is $18.", "18", True),  # last number of a non-number prediction
        ("x = -5", "-5", True),
        ("1000001", "1000000", False),  # two integers: exact
        ("1000000.4", "1000000", True),  # within rel_tol 1e-6
        ("0.3333", "1/3", False),
        ("3", "three", False),
        ("", "7", False),
        ("1e400", "1e400", True),  # identical strings
    ],
)
def test_grade_number(pred, gold, expected):
    assert grade_number(pred, gold) is expected


def test_grade_number_options():
    assert not grade_number("50%", "0.5", percent="drop")
    assert grade_number("50%", "0.5", percent="scale")
    assert not grade_number("50", "0.5", percent="scale")
    assert grade_number("3.14", "3.1416", rel_tol=1e-3)
    assert not grade_number("3.14", "3.1416")
    assert grade_number("0.1", "0.1001", abs_tol=1e-3)
    assert not grade_number("so 18", "18", last_number=False)
    with pytest.raises(ValueError, match="percent='half'"):
        grade_number("1", "1", percent="half")


def test_giant_numbers_are_refused_without_being_built():
    t0 = time.perf_counter()
    for text in ("1e999999999", "9" * 1_000_000, "1" + ",000" * 300_000, "\\frac{1e99999999}{3}"):
        assert parse_number(text) is None
        assert not grade_number(text, "1")
    assert time.perf_counter() - t0 < SAFETY_BOUND_S


# ---- math grader -----------------------------------------------------------------------------

MATH_PAIRS = [
    ("\\boxed{0.5}", "\\frac{1}{2}", True),
    ("\\boxed{\\frac12}", "0.5", True),
    ("$\\frac{\\sqrt{2}}{2}$ is the answer. The answer is $\\frac{\\sqrt{2}}{2}$.", "\\frac{1}{\\sqrt{2}}", True),
    ("\\boxed{\\{1,2\\}}", "\\{2, 1\\}", True),
    ("\\boxed{\\{1,3\\}}", "\\{2, 1\\}", False),
    ("\\boxed{(1,2]}", "(1, 2]", True),
    ("\\boxed{[1,2]}", "(1, 2]", False),
    ("\\boxed{(-\\infty, 2) \\cup (3, \\infty)}", "(-\\infty,2)\\cup(3,\\infty)", True),
    ("\\boxed{x^2+2x+1}", "(x+1)^2", True),
    ("\\boxed{x^2+2x}", "(x+1)^2", False),
    ("\\boxed{1,234}", "1234", True),
    ("\\boxed{50\\%}", "50", True),
    ("The answer is 50%.", "50\\%", True),
    ("\\boxed{0.5}", "50\\%", False),  # percentages grade by their number
    ("\\boxed{-3}", "3", False),
    ("\\boxed{-3}", "-3", True),
    ("\\boxed{\\binom{10}{3}}", "120", True),
    ("\\boxed{5!}", "120", True),
    ("\\boxed{2^{10}}", "1024", True),
    ("Let me think... so x = 5 and the final answer is $\\boxed{5}$.", "5", True),
    ("<answer>\\frac{3}{4}</answer>", "0.75", True),
    ("no answer stated", "5", False),
    ("\\frac12", "0.5", True),  # bare answers, as extracted upstream
    ("x = 5", "5", True),
    ("\\sqrt{8}", "2\\sqrt{2}", True),
    ("it is 5 apples", "5", True),  # prose: math-verify reads the text itself
    # issue #12: what math-verify grades right and metarl-score did not
    ("-5", "-5", True),
    ("\\boxed{1}, \\boxed{2}, \\boxed{3}", "\\{1,2,3\\}", True),  # listed boxes are a set
    ("\\boxed{1} and \\boxed{2}", "2", False),
    ("Final Answer: The largest $n$ is 34.", "34", True),
    ("so \\boxed{255}. The final answer is $10,455$. I hope it is correct.", "10455", True),
    ("so \\boxed{255}. The final answer is $10,455$. I hope it is correct.", "255", False),
    ("the number is not 10 which is 1,000.99\u20ac", "1000.99", True),
    ("1,5", "1.5", True),  # a bare decimal comma, read by math-verify's number reader
    ("\\boxed{1,5}", "1.5", False),  # in a box it is LaTeX: the set {1, 5}
    ("\\boxed{1, 3}", "1,3", True),  # a gold answer's comma lists ("enter all solutions, separated by commas")
    ("\\boxed{1.3}", "1,3", False),
    ("<answer>3,1</answer>", "1, 3", True),  # a tag holds an answer as a box does
    ("\\boxed{1234}", "1,234", True),
    ("The roots are $1$ and $-2$.", "\\{1,-2\\}", True),
    ("AZYUK2A", "2", False),
]


@pytest.mark.parametrize("pred, gold, expected", MATH_PAIRS)
def test_math_grader_pairs(math_grader, pred, gold, expected):
    assert math_grader(pred, gold) is expected


def test_math_grader_in_a_thread_and_in_a_worker_process_agree(math_grader):
    """math-verify's own timeouts raise outside the main thread; ours work anywhere, and the
    worker-process path grades exactly as the in-process one."""
    in_thread = [bounded(math_grader, p, g) for p, g, _ in MATH_PAIRS]
    isolated = MathGrader(timeout=2.0, isolation="process")
    in_process = [isolated(p, g) for p, g, _ in MATH_PAIRS]
    expected = [e for _, _, e in MATH_PAIRS]
    assert in_thread == expected
    assert in_process == expected


def test_scorer_grades_extracted_answers_as_whole_completions(math_grader):
    """metarl-score's grader=math, answer=auto: the math style, whose answers the grader reads back the same."""
    from metarl.config import answer_tools

    conf = Path(__file__).resolve().parents[1] / "conf" / "grader"
    math, number = OmegaConf.load(conf / "math.yaml"), OmegaConf.load(conf / "number.yaml")
    grader, extract, _ = answer_tools(None, math, "auto", {})
    assert extract.keywords["style"] == "math" and grader.answer_style == "math"
    assert [grader(extract(p), g) for p, g, _ in MATH_PAIRS] == [e for _, _, e in MATH_PAIRS]
    assert answer_tools(None, number, "auto", {})[1].keywords["style"] == "auto"  # other graders: auto
    assert answer_tools(None, math, "boxed", {})[1].keywords["style"] == "boxed"  # an explicit style stays
    assert build_grader(lambda p, a: p == a).answer_style == "auto"


def test_math_grader_rejects_bad_config():
    with pytest.raises(ValueError, match="isolation='sandbox'"):
        MathGrader(isolation="sandbox")
    with pytest.raises(ValueError, match="positive time limit"):
        MathGrader(timeout=0)


# ---- screening and worker --------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, level",
    [
        ("\\frac{\\sqrt{2}}{2} + x^{2}", "inline"),
        ("\\boxed{10^{99999}}", "inline"),  # 1e5 digits: builds in ~0.1 s
        ("\\boxed{(2^{10})!}", "inline"),  # 1024! has 2640 digits
        ("\\boxed{e^{-x^2/2}}", "inline"),  # symbolic bases build no integers
        ("\\boxed{99999!}", "isolate"),  # ~5e5 digits
        ("\\boxed{9999999999^{99999}}", "isolate"),  # ~1e6 digits
        ("9**9**9**9", "reject"),  # right-associative tower
        ("10**10**10", "reject"),
        ("\\boxed{2^{2^{2^{2^{100}}}}}", "reject"),
        ("\\boxed{2^{-10000000000}}", "reject"),  # negative exponents build huge denominators
        ("0.5^{1000000000}", "reject"),
        ("\\boxed{(10^{6})!}", "reject"),
        ("2^{9999*9999}", "reject"),
        ("(" * 21 + "1" + ")" * 21, "reject"),  # nesting depth above 20
        ("x" * 5000, "reject"),  # longer than the inline window
        ("\u1090", "inline"),  # a non-ASCII zero digit (found by the fuzz test: log10(0) raised)
        ("\u1090\u1090^{\u0661\u0660}", "inline"),  # 0^10 in Myanmar and Arabic-Indic digits
    ],
)
def test_screen_math(text, level):
    assert screen_math(text) == level


def test_nesting_depth():
    assert nesting_depth("f((x)) + {[1]}") == 2
    assert nesting_depth(")))(") == 1
    assert nesting_depth("") == 0


def test_worker_is_killed_on_overrun_and_restarted():
    worker = MathWorker()
    try:
        # a deadline shorter than the worker's start-up gives no answer but must not kill it
        assert worker.equal("\\boxed{2}", "\\boxed{2}", None, time.monotonic() + 0.05) in (None, True)
        assert worker.restarts == 0
        assert worker.warm_up(30.0)
        assert worker.equal("\\boxed{1/2}", "\\boxed{0.5}", None, time.monotonic() + 10) is True
        t0 = time.perf_counter()
        # (10^6)! takes seconds in C: no in-process limit could stop it; the worker is killed
        assert worker.equal("\\boxed{1}", "\\boxed{(10^{6})!}", None, time.monotonic() + 0.5) is None
        assert time.perf_counter() - t0 < SAFETY_BOUND_S
        assert worker.restarts == 1
        assert worker.warm_up(30.0)  # a fresh worker answers again
        assert worker.equal("\\boxed{3}", "\\boxed{2}", None, time.monotonic() + 10) is False
    finally:
        worker.close()


# ---- time limits -----------------------------------------------------------------------------

def _spin():
    while True:
        pass


def _stubborn():  # swallows the first interrupts, as badly written library code might
    for _ in range(3):
        try:
            while True:
                pass
        except BaseException:  # noqa: BLE001
            pass
    while True:
        pass


def _times_out(fn) -> bool:
    try:
        run_with_time_limit(fn, 0.1)
    except GradingTimeout:
        return True
    return False


@pytest.mark.parametrize("fn", [_spin, _stubborn])
def test_time_limit_interrupts_python_work_in_any_thread(fn):
    t0 = time.perf_counter()
    assert _times_out(fn)  # main thread
    assert time.perf_counter() - t0 < SAFETY_BOUND_S
    assert bounded(_times_out, fn)  # another thread


def test_time_limit_passes_results_and_errors_and_leaves_no_interrupt_behind():
    assert run_with_time_limit(lambda: 7, 1.0) == 7
    with pytest.raises(ZeroDivisionError):
        run_with_time_limit(lambda: 1 / 0, 1.0)
    with pytest.raises(GradingTimeout):
        run_with_time_limit(_spin, 0.05)
    total = 0
    t_end = time.perf_counter() + 0.3  # busy Python work after the timeout: nothing may land here
    while time.perf_counter() < t_end:
        total += 1
    assert total > 0


def test_nested_time_limits():
    # the inner limit expires first: the inner call times out, the outer one carries on
    def outer_ok():
        with pytest.raises(GradingTimeout):
            run_with_time_limit(_spin, 0.05)
        return "outer finished"

    assert run_with_time_limit(outer_ok, 2.0) == "outer finished"
    # the outer limit expires first: it wins even though the inner one is generous
    t0 = time.perf_counter()
    with pytest.raises(GradingTimeout, match="0.1 s"):
        run_with_time_limit(lambda: run_with_time_limit(_spin, 5.0), 0.1)
    assert time.perf_counter() - t0 < SAFETY_BOUND_S


# ---- the Grader wrapper ----------------------------------------------------------------------

def test_build_grader_specs():
    assert build_grader(grade_exact)("Paris", "paris")
    conf = Path(__file__).resolve().parents[1] / "conf" / "grader"
    assert build_grader(OmegaConf.load(conf / "number.yaml"))("1,000", "1000")
    assert build_grader(OmegaConf.load(conf / "exact.yaml"))("Paris.", "paris")
    assert isinstance(build_grader(OmegaConf.load(conf / "math.yaml")).fn, MathGrader)
    g = build_grader({"_target_": "metarl.grading.basic.grade_number", "_partial_": True, "rel_tol": 0.01})
    assert g("3.14", "3.1416") and not build_grader(grade_number)("3.14", "3.1416")
    assert isinstance(build_grader(MathGrader()).fn, MathGrader)
    assert build_grader(g) is g
    assert build_grader(lambda p, a: p == a)("x", "x")
    clone = pickle.loads(pickle.dumps(build_grader(MathGrader())))  # e.g. for dataloader workers
    assert clone("\\boxed{0.5}", "1/2") and clone.stats["calls"] == 1
    with pytest.raises(ConfigError, match="grader: Error locating target 'metarl.grading.nope'"):
        build_grader({"_target_": "metarl.grading.nope", "_partial_": True})
    with pytest.raises(ConfigError, match="grader='math': a grader is a mapping with `_target_`"):
        build_grader("math")  # short names are gone: grader=math selects conf/grader/math.yaml
    with pytest.raises(ConfigError, match="extract='box'"):
        build_grader(grade_exact, extract="box")


def test_grader_stats_errors_timeouts_and_coercion():
    def flaky(pred, gold):
        if pred == "boom":
            raise RuntimeError("bad")
        if pred == "slow":
            _spin()
        return pred == gold

    g = Grader(flaky, timeout=0.1)
    assert g("a", "a") and not g("a", "b")
    assert not g("boom", "a")
    assert not g("slow", "a")
    assert not g(None, "a")
    assert g("7", 7)  # numeric gold answers are compared as text
    assert g.stats == {"calls": 6, "correct": 2, "errors": 1, "timeouts": 1, "screened": 0, "isolated": 0,
                       "undetermined": 0}
    assert g.last_error == "RuntimeError: bad"
    assert g.reset_stats()["calls"] == 6 and g.stats["calls"] == 0
    # judge says when the grader could not tell (it raised or ran out of time): no confident verdict
    assert g.judge("boom", "a") == (None, "flaky raised RuntimeError: bad")
    assert g.judge("slow", "a")[0] is None and g.judge("a", "b") == (False, None) and g.judge(None, "a") == (False, None)


def test_grader_counts_screened_and_isolated_inputs(math_grader):
    g = build_grader(math_grader)
    assert g.timeout == 2.0  # the grader's own 1 s plus a margin for its cleanup
    assert not g("\\boxed{9**9**9**9}", "1")
    assert not g("\\boxed{99999!}", "1")
    assert g.stats["screened"] == 1 and g.stats["isolated"] == 1 and g.stats["errors"] == 0


def test_grader_passes_prompt_to_verifiers_and_extracts():
    seen = []

    def verifier(prediction, answer, prompt):
        seen.append(prompt)
        return prediction.upper() == answer

    def keyword_only(prediction, answer, *, prompt):
        return prompt == "P"

    assert build_grader(verifier)("ab", "AB", prompt="the problem")
    assert seen == ["the problem"]
    assert build_grader(keyword_only)("x", "y", prompt="P")
    g = build_grader(grade_exact, extract="boxed")
    assert g("so \\boxed{Paris}.", "paris") and not g("Paris", "paris")


def test_countdown_verifier():
    prompt = "Using the numbers [3, 3, 8, 8], write an expression equal to 24."
    v = build_grader(CountdownVerifier())
    assert v("<answer>8 / (3 - 8 / 3)</answer>", "24", prompt)  # exact fractions
    assert v("\\boxed{8 \\times 3}", "24", prompt)
    assert v("(8 + 8) / 2 = 8 ... so <answer>3 * 8</answer>", "24", prompt)
    assert not v("<answer>8 * 3 * 1</answer>", "24", prompt)  # 1 is not available
    assert not v("<answer>8 * 8 * 8 / 8 / 8 * 3</answer>", "24", prompt)  # 8 used too often
    assert not v("<answer>__import__('os')</answer>", "24", prompt)
    assert not v("<answer>3 ** 8</answer>", "6561", prompt)  # no powers
    use_all = build_grader({"_target_": "metarl.grading.task_verifiers.CountdownVerifier", "use_all": True})
    assert not use_all("<answer>8 * 3</answer>", "24", prompt)
    assert use_all("<answer>8 / (3 - 8 / 3)</answer>", "24", prompt)
    assert not v("<answer>1</answer>", "1", "no numbers here")
    assert v.stats["errors"] == 1 and "no numbers in the prompt" in v.last_error
    assert eval_arithmetic("(1 + 2) * 3") == (Fraction(9), [1, 2, 3])
    with pytest.raises(ValueError, match="division by zero"):
        eval_arithmetic("1 / (2 - 2)")


# ---- adversarial corpus ----------------------------------------------------------------------

MB = 1_000_000
ADVERSARIAL = [
    "9**9**9**9",
    "10**10**10",
    "\\boxed{9**9**9**9}",
    "\\boxed{2^{2^{2^{2^{100}}}}}",
    "$10^{10^{10}}$",
    "\\boxed{2^{-10000000000}}",
    "\\boxed{(10^{6})!}",
    "\\boxed{100000!}",
    "\\boxed{\\binom{1000000000}{500000000}}",
    "\\boxed{9999999999^{99999}}",
    "\\boxed{" + "2^" * 3000 + "2}",
    "(" * 10_000 + "1" + ")" * 10_000,
    "\\boxed{" + "(" * 10_000 + "1" + ")" * 10_000 + "}",
    "\\boxed{" + "(" * 12 + "1" + ")" * 12 + "}",
    "\\boxed{" + "\\frac{" * 2000 + "1" + "}{2}" * 2000 + "}",
    "\\boxed{" + "\\frac{" * 50 + "1" + "}{2}" * 50 + "}",
    "\\boxed{" + "\\sqrt{" * 5000 + "2" + "}" * 5000 + "}",
    "\\boxed{" + "{" * 100_000,
    "\\boxed{" * 100_000,
    "x" * MB,
    "\\boxed{" + "9" * MB + "}",
    "9" * MB,
    "1" + ",000" * 250_000,
    "$" * MB,
    "the answer is " * 70_000,
    "<answer>" * 100_000,
    "correct not " * 90_000,
    "\\boxed{\x00\x01\x1b\x7f5}",
    "\x00" * 1000 + "\\boxed{5}",
    "\\boxed{\ud800}",
    "\ud800\udfff\ud800 the answer is \ud800",
    "\\boxed{1e999999999}",
    "1e999999999",
    "\\boxed{\\left(" * 3000 + "1",
    "\u202e\u200b\ufeff\\boxed{\u0661\u0662}",
    "",
]


def test_adversarial_inputs_are_bounded_and_incorrect(math_grader):
    graders = {
        "exact": build_grader(grade_exact),
        "number": build_grader(grade_number),
        "math": build_grader(math_grader),
        "countdown": build_grader(CountdownVerifier()),
    }
    prompt = "Using the numbers [1, 2, 3], make 6."
    tried = 0
    worst = 0.0
    for text in ADVERSARIAL:
        for gold in ("7", "\\frac{1}{3}"):  # no input states either
            for name, g in graders.items():
                t0 = time.perf_counter()
                assert bounded(g, text, gold, prompt) is False, (name, text[:60])
                worst = max(worst, time.perf_counter() - t0)
                tried += 1
        for style in ("auto", "boxed", "tag", "phrase", "last_number", "math"):
            bounded(extract_answer, text, style)
            tried += 1
        bounded(parse_verdict, text)
        assert screen_math(text) in ("inline", "isolate", "reject")
        tried += 1
    # an adversarial *gold* answer, and correct-and-cheap identical answers
    assert bounded(graders["math"], "\\boxed{2^{2^{2^{2^{100}}}}}", "2^{2^{2^{2^{100}}}}") is True
    assert bounded(graders["math"], "9**9**9**9", "9**9**9**9") is True
    assert bounded(graders["math"], "5", "9**9**9**9") is False
    assert bounded(graders["number"], "1e999999999", "1e999999999") is True
    tried += 4
    for name, g in graders.items():
        assert g.stats["errors"] == 0 or name == "countdown", (name, g.stats, g.last_error)
    print(f"\nadversarial grading calls tried: {tried}; slowest {worst:.2f} s; "
          f"math stats {graders['math'].stats}")


# ---- fuzz ------------------------------------------------------------------------------------

_ALPHABET = st.one_of(
    st.sampled_from(list("\\{}()[]^*!$%0123456789.,-+/ =xe<>#:\n")),
    st.sampled_from(["\\boxed{", "\\frac", "answer", "</answer>", "not ", "correct", "**"]),
    st.sampled_from(["\ud800", "\udfff", "\x00", "\x1b", "\u202e", "\u0661"]),  # lone surrogates, controls
    st.characters(codec=None),
)
_TEXT = st.lists(_ALPHABET, max_size=60).map("".join)
_FUZZ_MATH = MathGrader(timeout=0.5)


_GOLDS = st.sampled_from(["5", "\\frac{1}{2}", "x^2", "\\{1,2\\}"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT, gold=_GOLDS)
def test_fuzz_extraction_and_cheap_graders_never_raise(text, gold):
    for style in ("auto", "boxed", "tag", "phrase", "last_number", "math"):
        out = extract_answer(text, style)
        assert out is None or isinstance(out, str)
    assert parse_verdict(text) in (True, False, None)
    assert isinstance(grade_exact(text, gold), bool)
    assert isinstance(grade_number(text, gold), bool)
    assert parse_number(text) is None or isinstance(parse_number(text), Fraction)
    assert screen_math(text) in ("inline", "isolate", "reject")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT, gold=_GOLDS)
def test_fuzz_math_grader_never_raises(text, gold):
    t0 = time.perf_counter()
    assert isinstance(_FUZZ_MATH(text, gold), bool)
    assert isinstance(_FUZZ_MATH(gold, text), bool)  # untrusted text on the gold side too
    assert time.perf_counter() - t0 < 2 * SAFETY_BOUND_S


# ---- doctests --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "module",
    ["__init__", "basic", "deadline", "extraction", "grader", "math_grader", "screening", "task_verifiers"],
)
def test_doctests(module):
    mod = importlib.import_module("metarl.grading" if module == "__init__" else f"metarl.grading.{module}")
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
