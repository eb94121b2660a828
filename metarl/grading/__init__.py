"""Answer extraction, verdict parsing and graders for untrusted model output (docs/method.md §3).

Model output is never evaluated. Every grader call returns a bool, never raises, and is
bounded in time in any thread; failures are counted on the :class:`Grader` wrapper.

>>> from metarl.grading import MathGrader, build_grader, extract_answer, parse_verdict
>>> grade = build_grader(MathGrader())
>>> grade("... so $x = \\\\boxed{\\\\frac12}$", "0.5")
True
>>> extract_answer("<answer>42</answer>"), parse_verdict("The solution is not correct.")
('42', False)
"""
from metarl.grading.basic import grade_exact, grade_number, parse_number
from metarl.grading.deadline import GradingTimeout, run_with_time_limit
from metarl.grading.extraction import (
    ANSWER_STYLES,
    DEFAULT_NEGATIVE,
    DEFAULT_POSITIVE,
    extract_answer,
    parse_verdict,
)
from metarl.grading.grader import Grader, build_grader
from metarl.grading.math_grader import MathGrader, MathWorker, grade_math
from metarl.grading.screening import ScreenLimits, screen_math
from metarl.grading.task_verifiers import CountdownVerifier, Verifier, eval_arithmetic

__all__ = [
    "ANSWER_STYLES",
    "DEFAULT_NEGATIVE",
    "DEFAULT_POSITIVE",
    "CountdownVerifier",
    "Grader",
    "GradingTimeout",
    "MathGrader",
    "MathWorker",
    "ScreenLimits",
    "Verifier",
    "build_grader",
    "eval_arithmetic",
    "extract_answer",
    "grade_exact",
    "grade_math",
    "grade_number",
    "parse_number",
    "parse_verdict",
    "run_with_time_limit",
    "screen_math",
]
