"""Regenerate ``tests/data/math_verify_cases.jsonl`` from a checkout of huggingface/Math-Verify.

    python tests/scripts/vendor_math_verify_cases.py /path/to/Math-Verify [COMMIT] > tests/data/math_verify_cases.jsonl

Reads the ``@pytest.mark.parametrize`` tables of Math-Verify's ``tests/test_*.py`` with :mod:`ast` (their
code is never imported or run) and writes one JSON line per (gold, prediction) case:

    {"id": "test_all.py::test_number_extraction[0]", "gold": "-5", "pred": "-5", "expected": true,
     "options": {"match_types": ["expr"]}}

``options`` are the arguments the case's test passes to math-verify besides the two strings:
``match_types`` (the extraction targets of their ``compare_strings`` helper; ``["latex", "expr"]`` is
math-verify's default pair, but ``compare_strings`` always builds ``LatexExtractionConfig(boxed_match_priority=0)``,
recorded as ``boxed_match_priority: 0``), ``precision`` (``float_rounding``), ``strict`` and
``allow_set_relation_comp``. Cases whose test calls ``verify(parse(gold), parse(pred))`` directly
(``test_yujianll.py``) have no options. ``test_string_extraction.py`` (multiple-choice letters, not gold
vs prediction) is left out. The first line is a header naming the source.
"""
from __future__ import annotations

import ast
import json
import math
import sys
from pathlib import Path

SOURCE_REPO = "https://github.com/huggingface/Math-Verify"
_MV_DEFAULTS = {"match_types": ["latex", "expr"], "precision": 6, "strict": True, "allow_set_relation_comp": False}


def _value(node: ast.expr):
    """A literal, or the one f-string the tables use (``f"{math.sqrt(17):.15f}"``) evaluated by hand."""
    try:
        return ast.literal_eval(node)
    except ValueError:
        pass
    if isinstance(node, ast.JoinedStr):
        parts = []
        for v in node.values:
            if isinstance(v, ast.Constant):
                parts.append(v.value)
            elif (isinstance(v, ast.FormattedValue) and ast.unparse(v.value) == "math.sqrt(17)"
                  and v.format_spec is not None and ast.unparse(v.format_spec) == "f'.15f'"):
                parts.append(f"{math.sqrt(17):.15f}")
            else:
                raise ValueError(f"unsupported f-string part {ast.unparse(v)}")
        return "".join(parts)
    raise ValueError(f"not a literal: {ast.unparse(node)}")


def _call_options(func: ast.FunctionDef) -> tuple[str, dict, dict]:
    """(helper called, constant keyword options, keyword -> parameter name) of a test's assert."""
    for node in ast.walk(func):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("compare_strings", "verify"):
            const, from_param = {}, {}
            for kw in node.keywords:
                if isinstance(kw.value, ast.Name):
                    from_param[kw.arg] = kw.value.id
                else:
                    const[kw.arg] = ast.literal_eval(kw.value)
            return node.func.id, const, from_param
    raise ValueError(f"{func.name}: no compare_strings/verify call")


def cases(repo: Path):
    for path in sorted((repo / "tests").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        for func in tree.body:
            if not isinstance(func, ast.FunctionDef):
                continue
            for deco in func.decorator_list:
                if not (isinstance(deco, ast.Call) and getattr(deco.func, "attr", "") == "parametrize"):
                    continue
                names = [n.strip() for n in ast.literal_eval(deco.args[0]).split(",")]
                if "gold" not in names:
                    continue  # test_string_extraction.py: letters, not gold vs prediction
                helper, const, from_param = _call_options(func)
                for i, row in enumerate(deco.args[1].elts):
                    values = dict(zip(names, (_value(e) for e in row.elts), strict=True))
                    opts = dict(const)
                    opts.update({k: values[p] for k, p in from_param.items() if p in values})
                    if helper == "compare_strings":
                        opts = {"match_types": ["latex", "expr"], **opts}
                        if "latex" in opts["match_types"]:
                            opts["boxed_match_priority"] = 0
                    opts = {k: v for k, v in opts.items() if _MV_DEFAULTS.get(k, object()) != v}
                    expected = values.get("expected", values.get("result"))
                    yield {"id": f"{path.name}::{func.name}[{i}]", "gold": values["gold"], "pred": values["pred"],
                           "expected": bool(expected), "options": opts}


def main(argv: list[str]) -> None:
    repo = Path(argv[1])
    commit = argv[2] if len(argv) > 2 else "unknown"
    rows = list(cases(repo))
    header = {"_source": SOURCE_REPO, "path": "tests/test_*.py (parametrize tables)", "commit": commit,
              "license": "MIT (c) 2024 The HuggingFace Team", "cases": len(rows),
              "generated_by": "tests/scripts/vendor_math_verify_cases.py"}
    print(json.dumps(header, ensure_ascii=False))
    for r in rows:
        print(json.dumps(r, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv)
