"""Math grading at math-verify's level, on math-verify's own test cases.

``tests/data/math_verify_cases.jsonl`` holds the 269 parametrized (gold, prediction, expected) cases of
huggingface/Math-Verify's ``tests/`` (see ``tests/data/README.md``). The grader of ``metarl-score
grader=math`` (default ``answer=auto``), through the library and end to end through the CLI, must agree
with the expected verdicts at least as often as ``math_verify.verify(parse(gold), parse(pred))`` with
default options does, counted in the same test. ``bench/math_verify_parity.py`` prints the full report.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import math_verify_parity as parity  # noqa: E402

HEADER, CASES = parity.load_cases()
# Verdicts, not speed: on a loaded 2-core machine an equation comparison can take over the grader's default
# 1 s per call (then it grades False); the time bound itself is tested in test_grading / test_robustness.
TIMEOUT_S = 10.0


def _disagreements(name: str, verdicts: list[bool]) -> str:
    lines = [f"{c['id']}: expected {c['expected']}, {name} says {v}; gold={c['gold'][:80]!r} "
             f"pred={c['pred'][-120:]!r}" for c, v in zip(CASES, verdicts, strict=True) if v != c["expected"]]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def reference() -> list[bool]:
    """math-verify's verdicts with its default options."""
    return parity.library_verdicts(CASES, ("mv",))["mv"]


def _agree(verdicts: list[bool]) -> int:
    return sum(v == c["expected"] for c, v in zip(CASES, verdicts, strict=True))


def test_vendored_cases_are_math_verifys():
    """The data names its source; 269 cases, each with its test id; the counts per test file match theirs."""
    assert HEADER["_source"] == "https://github.com/huggingface/Math-Verify" and len(HEADER["commit"]) == 40
    assert len(CASES) == 269 and len({c["id"] for c in CASES}) == 269
    per_file: dict[str, int] = {}
    for c in CASES:
        assert isinstance(c["gold"], str) and isinstance(c["pred"], str) and isinstance(c["expected"], bool)
        per_file[c["id"].split("::")[0]] = per_file.get(c["id"].split("::")[0], 0) + 1
    assert per_file == {"test_all.py": 191, "test_boxed.py": 3, "test_numina_cases.py": 30,
                        "test_open_thoughts.py": 29, "test_strict.py": 2, "test_yujianll.py": 14}
    first = CASES[0]
    assert (first["gold"], first["pred"], first["expected"]) == ("-5", "-5", True)  # the bare -5 of the issue


def test_scorer_grader_matches_math_verify(reference):
    """``answer_tools(None, <grader=math>, "auto")``: the grader and extractor metarl-score builds for grader=math."""
    got = parity.library_verdicts(CASES, ("scorer",), timeout=TIMEOUT_S)["scorer"]
    floor = _agree(reference)
    assert floor >= 260, f"math-verify itself agrees on only {floor}: data or version drift\n" + \
        _disagreements("math-verify", reference)
    assert _agree(got) >= floor, (f"metarl agrees on {_agree(got)}, math-verify's defaults on {floor}:\n"
                                  + _disagreements("metarl", got))


def test_metarl_score_end_to_end_matches_math_verify(reference):
    """One ``python -m metarl.cli.score grader=math rewards=[outcome]`` run over all cases (``answer`` left at
    its default, ``auto``; the grader's time limit raised to TIMEOUT_S)."""
    got = parity.cli_verdicts(CASES, timeout=TIMEOUT_S)
    floor = _agree(reference)
    assert _agree(got) >= floor, (f"metarl-score agrees on {_agree(got)}, math-verify's defaults on {floor}:\n"
                                  + _disagreements("metarl-score", got))


def test_readme_names_the_source():
    readme = (Path(parity.CASES).parent / "README.md").read_text()
    assert HEADER["commit"] in readme and "huggingface/Math-Verify" in readme
    assert json.loads(Path(parity.CASES).read_text().splitlines()[0])["cases"] == 269
