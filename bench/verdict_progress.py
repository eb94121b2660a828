"""What exact progress pays for on a comparison's held-out traces: per arm, exact J's mean change by episode kind,
and the first verdict against the truth of the attempt it checks.

Reads ``OUT/runs/<recipe>/seed*/bf/eval/samples.jsonl`` of ``bench/compare_learning.py`` (the budget-forcing
samples of each final policy, subset-sum questions) at one budget (default: the comparison's cap C) and computes,
with the task's exact J (``SubsetSumTask.exact_success``, rule ``believed`` unless ``--rule``):

- ``progress``: mean J_j − J_{j−1} over every episode of each kind (budget forcing continues a stream that would
  stop with ``<revise>``, so late revisions are forced);
- ``verdicts``: the first verify episode of each stream, by whether the attempt before it is right and what it
  says (``correct`` / ``incorrect`` / none). The first verdict comes before any forcing.

    python bench/verdict_progress.py runs/mrt_long            # table on stdout, OUT/verdict_progress.json
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

from metarl.rewards.obj1 import GENERATION_KINDS
from metarl.segmenters import TagSegmenter, segment
from metarl.tasks.subset_sum import SubsetSumTask, format_prompt

#: A subset-sum question id: ``subset_sum/d<level>/<numbers, comma-separated>|<target>``.
QUESTION_ID = re.compile(r"subset_sum/d(\d+)/([\d,]+)\|(-?\d+)")


def question(qid: str) -> tuple[SubsetSumTask, str]:
    """The task at the id's level and the prompt the id names (``ValueError`` for another task's id)."""
    m = QUESTION_ID.fullmatch(qid)
    if not m:
        raise ValueError(f"question_id {qid!r} is not a subset-sum id (subset_sum/d<level>/<numbers>|<target>)")
    return SubsetSumTask(difficulty=int(m[1])), format_prompt([int(x) for x in m[2].split(",")], int(m[3]))


def arm_stats(samples: list[dict[str, Any]], rule: str = "believed") -> dict[str, Any]:
    """``progress`` (kind -> mean ΔJ and n) and ``verdicts`` ("attempt right|wrong, says X" -> count) of ``samples``
    (rows with ``question_id`` and ``completion``)."""
    seg, deltas, verdicts = TagSegmenter(), defaultdict(list), Counter()
    for r in samples:
        task, prompt = question(r["question_id"])
        text = r["completion"]
        prev = task.exact_success(prompt, "", rule=rule)
        eps = segment(seg, text)
        for e in eps:
            j = task.exact_success(prompt, text[:e.end], rule=rule)
            deltas[e.kind].append(j - prev)
            prev = j
        i = next((i for i, e in enumerate(eps) if e.kind == "verify"), None)
        # the attempt a verdict checks: the latest attempt/revise episode before it, as Obj-1 and held-out
        # verification accuracy read it (metarl.rewards.obj1.verification_correctness)
        checked = next((e for e in reversed(eps[:i or 0]) if e.kind in GENERATION_KINDS), None)
        if checked is None:
            verdicts["no verify" if i is None else "no attempt before the verify"] += 1
            continue
        first = eps[i]
        right = task.verify(task.extract_answer(checked.text), "", prompt)
        says = {True: "correct", False: "incorrect", None: "nothing"}[task.verdict(first.text)]
        verdicts[f"attempt {'right' if right else 'wrong'}, says {says}"] += 1
    return {"progress": {k: {"mean": mean(v), "n": len(v)} for k, v in sorted(deltas.items())},
            "verdicts": dict(sorted(verdicts.items()))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="output directory of bench/compare_learning.py")
    p.add_argument("--budget", type=int, help="the samples' budget (default: the comparison's cap)")
    p.add_argument("--rule", default="believed", help="exact J's rule: believed | last (default believed)")
    a = p.parse_args(argv)
    out = Path(a.out)
    budget = a.budget
    if budget is None:
        settings = out / "settings.json"
        if not settings.exists():
            raise SystemExit(f"{settings} not found: pass --budget")
        budget = int(json.loads(settings.read_text())["cap"])
    result: dict[str, Any] = {"budget": budget, "rule": a.rule, "arms": {}}
    for arm in sorted(d for d in (out / "runs").iterdir() if d.is_dir()):
        rows = [json.loads(line) for f in sorted(arm.glob("seed*/bf/eval/samples.jsonl"))
                for line in f.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r.get("budget") == budget]
        if rows:
            result["arms"][arm.name] = arm_stats(rows, a.rule) | {"streams": len(rows)}
            print(f"[verdict_progress] {arm.name}: {len(rows)} streams", file=sys.stderr, flush=True)
    if not result["arms"]:
        raise SystemExit(f"no budget-forcing samples at budget {budget} under {out}/runs/*/seed*/bf/eval/")
    kinds = sorted({k for s in result["arms"].values() for k in s["progress"]})
    print(f"| arm | streams | " + " | ".join(f"ΔJ {k}" for k in kinds) + " | first verdict |")
    print("|---|---|" + "---|" * len(kinds) + "---|")
    for name, s in result["arms"].items():
        cells = [f"{s['progress'][k]['mean']:+.3f} ({s['progress'][k]['n']})" if k in s["progress"] else "-"
                 for k in kinds]
        print(f"| {name} | {s['streams']} | " + " | ".join(cells) + " | "
              + "; ".join(f"{k}: {v}" for k, v in s["verdicts"].items()) + " |")
    (out / "verdict_progress.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
