"""Grading parity with math-verify on its own test cases (``tests/data/math_verify_cases.jsonl``).

    python bench/math_verify_parity.py            # library paths, plus metarl-score end to end
    python bench/math_verify_parity.py --no-cli   # library paths only (~10 s)

Every vendored case (gold, prediction, expected verdict from math-verify's ``tests/``) is graded by:

- ``mv``: ``math_verify.verify(parse(gold), parse(pred))`` with default options (the reference);
- ``mv_own``: math-verify with the options the case's own test passes (``match_types``, ``precision``,
  ``strict``, ``allow_set_relation_comp``, ``boxed_match_priority``): checks the vendored data;
- ``scorer``: what ``metarl-score grader=math`` (default ``answer=auto``) runs, built the same way:
  ``grader, extract = metarl.config.answer_tools(None, <conf/grader/math.yaml>, "auto", {})``, then
  ``grader(extract(pred), gold)``;
- ``grader``: ``build_grader(MathGrader())(pred, gold)`` on the whole prediction;
- ``grader_own``: the same with the options of the case's test that the grader has (``precision`` as
  ``float_rounding``, ``strict``; it has no LaTeX-only extraction and no ``allow_set_relation_comp``);
- ``auto_then_grader``: ``build_grader(MathGrader())(extract_answer(pred, "auto"), gold)`` (the library's
  default extraction style, which reads anchored answers only, before the grader);
- ``cli``: ``python -m metarl.cli.score`` in a subprocess on a JSONL of ``{prompt, completion: pred,
  answer: gold}`` with ``rewards=[outcome]``; the verdict is each output line's ``outcome``.

A path *agrees* on a case when its verdict equals the case's expected verdict. Cases whose test passes
non-default options (``compare_strings`` always passes ``boxed_match_priority=0``; many pass
``match_types``) are counted like the others; those on which the options change math-verify's own verdict
(``mv`` vs ``mv_own``) are listed separately: no default-options grader can match both.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's metarl, not an installed one
    sys.path.insert(0, str(ROOT))
CASES = ROOT / "tests" / "data" / "math_verify_cases.jsonl"
PATHS = ("mv", "mv_own", "scorer", "grader", "grader_own", "auto_then_grader", "cli")


def load_cases(path: Path = CASES) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, cases) of the vendored JSONL: the first line names the source, the others are cases."""
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    header, cases = lines[0], lines[1:]
    if "_source" not in header or len(cases) != header.get("cases"):
        raise ValueError(f"{path}: expected a header line with _source and cases={len(cases)}")
    return header, cases


def _mv(gold: str, pred: str, options: dict[str, Any] | None = None) -> bool:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    if options is None:
        return bool(verify(parse(gold), parse(pred)))
    targets = []
    for kind in options.get("match_types", ["latex", "expr"]):
        if kind == "latex":
            targets.append(LatexExtractionConfig(boxed_match_priority=options.get("boxed_match_priority", 50)))
        else:
            targets.append(ExprExtractionConfig())
    return bool(verify(parse(gold, targets), parse(pred, targets), float_rounding=options.get("precision", 6),
                       strict=options.get("strict", True),
                       allow_set_relation_comp=options.get("allow_set_relation_comp", False)))


def _grader_spec(timeout: float | None, **options: Any) -> Any:
    """``grader=math`` (``conf/grader/math.yaml``'s target), with a time limit other than the default 1 s per call
    when ``timeout`` is given."""
    return {"_target_": "metarl.grading.math_grader.MathGrader", **options, **({"timeout": timeout} if timeout else {})}


def library_verdicts(cases: list[dict[str, Any]], names: tuple[str, ...] = PATHS[:-1],
                     timeout: float | None = None) -> dict[str, list[bool]]:
    """Verdicts of the in-process paths ``names`` (any but ``cli``) on every case; ``timeout``: seconds per
    grader call (None: the default 1 s)."""
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    from metarl.config import answer_tools
    from metarl.grading import build_grader, extract_answer

    scorer_grader, scorer_extract, _ = answer_tools(None, _grader_spec(timeout), "auto", {})
    grader = build_grader(_grader_spec(timeout))
    own: dict[tuple[int, bool], Any] = {}

    def grader_own(c: dict[str, Any]) -> bool:
        key = (int(c["options"].get("precision", 6)), bool(c["options"].get("strict", True)))
        if key not in own:
            own[key] = build_grader(_grader_spec(timeout, float_rounding=key[0], strict=key[1]))
        return own[key](c["pred"], c["gold"])

    paths: dict[str, Callable[[dict[str, Any]], bool]] = {
        "mv": lambda c: _mv(c["gold"], c["pred"]),
        "mv_own": lambda c: _mv(c["gold"], c["pred"], c["options"]),
        "scorer": lambda c: scorer_grader(scorer_extract(c["pred"]), c["gold"]),
        "grader": lambda c: grader(c["pred"], c["gold"]),
        "grader_own": grader_own,
        "auto_then_grader": lambda c: grader(extract_answer(c["pred"], "auto"), c["gold"]),
    }
    out: dict[str, list[bool]] = {}
    for name in names:
        fn = paths[name]
        verdicts = []
        for c in cases:
            try:
                verdicts.append(bool(fn(c)))
            except Exception:  # noqa: BLE001 - math-verify may raise on a case; that is a wrong verdict
                verdicts.append(not c["expected"])
        out[name] = verdicts
    return out


def cli_verdicts(cases: list[dict[str, Any]], timeout: float | None = None, limit_s: float = 600.0) -> list[bool]:
    """Verdicts of ``metarl-score grader=math`` (default ``answer=auto``) run once over all cases;
    ``timeout``: seconds per grader call (``grader.timeout=...``; None: the default)."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "cases.jsonl", Path(tmp) / "scored.jsonl"
        with src.open("w", encoding="utf-8") as f:
            for c in cases:
                f.write(json.dumps({"prompt": c["id"], "completion": c["pred"], "answer": c["gold"]}) + "\n")
        env = dict(os.environ, OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="1")
        grader = "grader=math" if not timeout else f"grader.timeout={float(timeout)}"
        cmd = [sys.executable, "-m", "metarl.cli.score", f"input={src}", f"output={dst}", f"run_dir={tmp}/run",
               grader, "rewards=[outcome]"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit_s)
        if proc.returncode != 0:
            raise RuntimeError(f"metarl-score failed ({proc.returncode}): {proc.stderr[-2000:]}")
        rows = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines()]
    if [r.get("line") for r in rows] != list(range(1, len(cases) + 1)):
        raise RuntimeError("metarl-score did not write one scored line per case")
    return [r["outcome"] == 1.0 for r in rows]


def report(cases: list[dict[str, Any]], verdicts: dict[str, list[bool]]) -> dict[str, Any]:
    """Agreement counts per path and the cases each path gets wrong (ids)."""
    out: dict[str, Any] = {"cases": len(cases), "agree": {}, "wrong": {}}
    for name, vs in verdicts.items():
        wrong = [c["id"] for c, v in zip(cases, vs, strict=True) if v != c["expected"]]
        out["agree"][name] = len(cases) - len(wrong)
        out["wrong"][name] = wrong
    out["with_options"] = sum(1 for c in cases if c["options"])
    if "mv_own" in verdicts:  # the options change math-verify's own verdict on these
        out["option_dependent"] = [c["id"] for c, a, b in zip(cases, verdicts["mv"], verdicts["mv_own"], strict=True)
                                   if a != b]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=Path, default=CASES)
    ap.add_argument("--no-cli", action="store_true", help="skip the metarl-score subprocess")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per grader call (default: the grader's own 1 s; a loaded machine can need more)")
    args = ap.parse_args(argv)
    header, cases = load_cases(args.cases)
    verdicts = library_verdicts(cases, timeout=args.timeout)
    if not args.no_cli:
        verdicts["cli"] = cli_verdicts(cases, timeout=args.timeout)
    rep = report(cases, verdicts)
    if args.json:
        print(json.dumps(rep, indent=1))
        return 0
    by_id = {c["id"]: c for c in cases}
    print(f"{len(cases)} cases from {header['_source']} @ {header['commit'][:12]}")
    for name in verdicts:
        print(f"  {name:18s} agrees on {rep['agree'][name]:3d}/{len(cases)}")
    print(f"{rep['with_options']} cases' tests pass non-default options; on these math-verify's verdict "
          f"with the test's options differs from its defaults ({len(rep['option_dependent'])}):")
    for cid in rep["option_dependent"]:
        marks = " ".join(f"{n}={'ok' if verdicts[n][cases.index(by_id[cid])] == by_id[cid]['expected'] else 'WRONG'}"
                         for n in verdicts)
        print(f"  {cid} {by_id[cid]['options']}: {marks}")
    for name in verdicts:
        if rep["wrong"][name]:
            print(f"{name} disagrees on:")
            for cid in rep["wrong"][name]:
                c = by_id[cid]
                print(f"  {cid} expected={c['expected']} gold={c['gold'][:60]!r} pred={c['pred'][-80:]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
