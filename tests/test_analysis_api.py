"""metarl.analysis, the scripting API: every function against hand-computed numbers, and the ten-line script of
docs/analysis.md run as written on a constructed run directory."""
from __future__ import annotations

import ast
import csv
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from metarl.analysis import (Band, CurveSet, LoggedTrace, collect_curves, cumulative_regret_by_episode,
                             default_budgets, j_curves, load_run, load_traces, mean_by_episode, mean_curve,
                             n_questions, plot_bands, progress_by_kind, regret, trace_from_record)
from metarl.metrics import Interval, information_gain_curve
from metarl.types import Episode, Trace

ROOT = Path(__file__).resolve().parents[1]
T_975_1 = 12.706204736174707  # Student t quantile, 0.975, 1 degree of freedom
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def ep(kind, tok_start, tok_end, J=None, logp=None):
    info = {} if J is None else {"J": J}
    if logp is not None:
        info["logp"] = logp
    return {"kind": kind, "start": tok_start, "end": tok_end, "text": "x" * (tok_end - tok_start),
            "token_start": tok_start, "token_end": tok_end, "rewards": {"progress": 0.0}, "info": info}


def trace(prompt, J_init, episodes, step=None, **extra):
    rec = {"prompt": prompt, "completion": "".join(e["text"] for e in episodes), "answer": "7",
           "meta": {"J_init": J_init}, "episodes": episodes, "outcome": 1.0, **extra}
    if step is not None:
        rec["step"] = step
    return rec


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# Step 5 of a training run (the last logged step), and an earlier step that must not count:
#   T1 (q1): J_init 0, J 0.5 after token 16, 1.0 after token 32
#   T2 (q2): J_init 0.5, J 0 after token 64
T1 = trace("q1", 0.0, [ep("attempt", 0, 16, 0.5), ep("verify", 16, 32, 1.0)], step=5)
T2 = trace("q2", 0.5, [ep("attempt", 0, 64, 0.0)], step=5)
OLD = trace("q1", 1.0, [ep("attempt", 0, 8, 1.0)], step=1)


@pytest.fixture()
def run_dir(tmp_path):
    d = tmp_path / "run"
    write_jsonl(d / "rollouts.jsonl", [OLD, T1, T2])
    (d / "config.yaml").write_text("name: mc_run\nseed: 0\n")
    write_jsonl(d / "metrics.jsonl", [{"step": 5, "loss": 0.1}])
    write_jsonl(d / "eval" / "results.jsonl", [{"question_id": "q1", "strategy": "greedy", "budget": 64, "correct": 1}])
    return d


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


def ten_line_script() -> str:
    text = (ROOT / "docs" / "analysis.md").read_text(encoding="utf-8")
    section = text.split("## A ten-line script", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


def test_the_readme_shows_the_same_ten_line_script():
    """The README's analysis section is the script that the test below runs, to the character."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Analyse information-gain curves in a script", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert block == ten_line_script()


def test_the_ten_line_script_of_the_docs_runs_and_gives_the_hand_computed_numbers(run_dir, tmp_path):
    block = ten_line_script()
    assert len([ln for ln in block.splitlines() if ln.strip()]) <= 10
    script = tmp_path / "analyse.py"
    script.write_text(block)
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run([sys.executable, str(script), str(run_dir)], cwd=out, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    # J after k episodes over the step-5 traces: k=0 (0 + 0.5)/2, k=1 (0.5 + 0)/2, k=2 T1 alone
    # regret at C0=32: T1 1 - (4 + 12)/32 = 0.5, T2 1 - (0.5 + 0.25)/2 = 0.625 -> 0.5625 (0.562 rounded)
    # regret at C0=64: T1 1 - (16 + 32)/64 = 0.25, T2 1 - 16/64 = 0.75 -> 0.5
    # bootstrap over two questions: the lower 2.5% of resampled means is the smaller question's regret
    assert r.stdout.splitlines() == ["J after k episodes: [0.25, 0.25, 1.0]",
                                     "regret: [0.562, 0.5] 95% CI low: [0.5, 0.25]"]
    assert (out / "j_vs_tokens.png").read_bytes()[:8] == PNG_MAGIC
    rows = read_csv(out / "j_vs_tokens.csv")
    assert len(rows) == 101 and {r["label"] for r in rows} == {"my run"}
    at = {float(r["x"]): r for r in rows}
    assert float(at[0.0]["mean"]) == pytest.approx(0.25)  # (J_init 0 + J_init 0.5) / 2
    assert float(at[32.0]["mean"]) == pytest.approx((1.0 + 0.25) / 2)  # T2 halfway from 0.5 to 0
    assert float(at[64.0]["mean"]) == pytest.approx(0.5) and at[64.0]["n"] == "2"
    assert all(0.0 <= float(r["ci_low"]) <= float(r["ci_high"]) <= 1.0 for r in rows)  # J's interval stays in [0, 1]


def test_load_traces_gives_typed_traces_of_the_last_logged_step(run_dir):
    traces = load_traces(run_dir)
    assert [t.prompt for t in traces] == ["q1", "q2"] and all(isinstance(t, LoggedTrace) for t in traces)
    t1 = traces[0]
    assert isinstance(t1, Trace) and t1.step == 5 and t1.meta == {"J_init": 0.0} and t1.outcome == 1.0
    assert [(e.kind, e.token_end, e.info["J"]) for e in t1.episodes] == [("attempt", 16, 0.5), ("verify", 32, 1.0)]
    assert t1.source.endswith("rollouts.jsonl:2")
    t1.check()  # the episodes partition the completion, as a Trace's must
    assert [t.step for t in load_traces(run_dir, all_steps=True)] == [1, 5, 5]
    scored = write_jsonl(run_dir.parent / "scored.jsonl", [OLD, T1, {"prompt": "no episodes", "completion": "y"}])
    assert [t.step for t in load_traces(scored)] == [1, 5]  # a scored file: every trace with episodes
    with pytest.raises(FileNotFoundError):
        load_traces(run_dir / "nope")


def test_load_run_reads_eval_outputs_and_metrics(run_dir):
    run = load_run(run_dir)
    assert run.label == "mc_run" and run.seed == 0
    assert len(run.traces) == 3 and len(run.metrics) == 1
    assert run.eval_results[0]["question_id"] == "q1" and run.problems == []


def test_trace_from_record_inverts_trace_to_dict():
    t = Trace("2+5?", "ab", answer="7", completion_ids=[1, 2], episodes=[Episode("attempt", 0, 2, "ab", 0, 2, {"r": 1.0},
                                                                                  {"J": 0.75})],
              outcome=1.0, meta={"J_init": 0.25}, answer_start=None)
    back = trace_from_record({"step": 3, "question_id": "q7", **t.to_dict()})
    assert back.to_dict() == {**t.to_dict(), "step": 3, "source": "", "extra": {"question_id": "q7"}}
    assert back.episodes == t.episodes and back.step == 3


def test_j_curves_values_units_skips_and_likelihood_scale():
    cs = j_curves([T1, T2, trace("q3", 0.1, [ep("attempt", 0, 4)])], label="a")
    assert cs.value == "J" and cs.unit == "tokens" and cs.label == "a"
    assert [c.tokens for c in cs.curves] == [(0.0, 16.0, 32.0), (0.0, 64.0)]
    assert [c.J for c in cs.curves] == [(0.0, 0.5, 1.0), (0.5, 0.0)]
    assert cs.questions == ["q1", "q2"] and cs.seed_index == [0, 0] and cs.max_end == 64.0
    assert cs.notes == ["1 trace skipped: no episodes[*].info.J"]
    no_tokens = dict(T2, episodes=[{k: v for k, v in ep("attempt", 0, 64, 0.0).items() if k != "token_end"}])
    cs = j_curves([T1, no_tokens], seeds=[0, 1])
    assert cs.unit == "chars" and cs.seed_index == [0, 1] and "all curves use characters" in cs.notes[-1]
    lp = trace("q", 0.0, [ep("attempt", 0, 10, logp=math.log(0.5))])
    lp["meta"] = {"logp_init": math.log(0.25)}
    cs = j_curves([lp])
    assert cs.value == "logp" and cs.curves[0].J == pytest.approx((math.log(0.25), math.log(0.5)))
    assert j_curves([lp], value="p").curves[0].J == pytest.approx((0.25, 0.5))
    with pytest.raises(ValueError, match="axis"):
        j_curves([T1], axis="flops")


def test_mean_curve_holds_values_after_a_trace_ends_and_clips_probability_intervals():
    cs = j_curves([T1, T2])
    band = mean_curve(cs, grid=[0, 16, 32, 48, 100])
    assert isinstance(band, Band) and band.x_name == "tokens" and band.y_name == "J"
    # T1: 0, 0.5, 1, 1 (held), 1; T2: 0.5, 0.375, 0.25, 0.125, 0 (held after 64)
    assert band.mean.tolist() == pytest.approx([0.25, 0.4375, 0.625, 0.5625, 0.5])
    half = T_975_1 * abs(0.5 - 0.375) / 2  # two values: t · s / √2 with s = |a − b| / √2, = 0.794
    assert 0.4375 - half < 0 and 0.4375 + half > 1
    assert (band.intervals[1].low, band.intervals[1].high) == (0.0, 1.0)  # clipped to [0, 1]
    assert band.intervals[0].n == 2
    assert len(mean_curve(cs).x) == 101 and mean_curve(cs).x[-1] == 64.0
    lp = trace("q", 0.0, [ep("attempt", 0, 10, logp=math.log(0.5))])
    lp["meta"] = {"logp_init": math.log(0.25)}
    lp2 = dict(lp, meta={"logp_init": math.log(0.9)})
    band = mean_curve(j_curves([lp, lp2]), grid=[0])
    assert band.mean[0] == pytest.approx((math.log(0.25) + math.log(0.9)) / 2) and band.high[0] == 0.0  # log p <= 0


def test_mean_by_episode_and_progress_by_kind():
    cs = j_curves([T1, T2])
    band = mean_by_episode(cs)
    assert band.x == (0.0, 1.0, 2.0) and band.mean.tolist() == pytest.approx([0.25, 0.25, 1.0])
    assert [iv.n for iv in band.intervals] == [2, 2, 1] and math.isnan(band.low[2])
    assert progress_by_kind(cs) == {"attempt": [0.5, -0.5], "verify": [0.5]}
    no_init = information_gain_curve([5, 9], [0.5, 1.0], J_init=None, kinds=["attempt", "revise"])
    assert progress_by_kind([no_init]) == {"revise": [0.5]}  # the first episode's progress is unknown
    assert mean_by_episode([no_init]).x == (1.0, 2.0)  # no J_init: nothing at k = 0


def test_regret_averages_questions_first_then_bootstraps_over_questions():
    # q1 twice (regret 0.5 and 0 at C0=32), q2 once (0.625): per question 0.25 and 0.625
    flat = trace("q1", 1.0, [ep("attempt", 0, 32, 1.0)])
    cs = j_curves([T1, flat, T2])
    band = regret(cs, [32])
    assert band.mean[0] == pytest.approx((0.25 + 0.625) / 2) and band.n_runs == 1 and n_questions(cs) == 2
    assert (band.low[0], band.high[0]) == pytest.approx((0.25, 0.625))  # percentiles of {0.25, 0.4375, 0.625}
    assert band.y_name == "normalized_regret" and band.x == (32.0,)
    assert regret(cs).x == tuple(default_budgets(cs)) == (16.0, 32.0, 48.0, 64.0)


def test_regret_pools_seeds_with_a_t_interval_over_seed_means():
    cs = j_curves([T1, T2], seeds=[0, 1])  # seed 0: T1 (0.25 at C0=64), seed 1: T2 (0.75)
    band = regret(cs, [64])
    half = T_975_1 * 0.5 / 2
    assert band.n_runs == 2 and band.mean[0] == pytest.approx(0.5)
    assert (band.low[0], band.high[0]) == (max(0.0, 0.5 - half), min(1.0, 0.5 + half)) == (0.0, 1.0)


def test_regret_refuses_likelihood_progress():
    lp = trace("q", 0.0, [ep("attempt", 0, 10, logp=-1.0)])
    lp["meta"] = {"logp_init": -2.0}
    with pytest.raises(ValueError, match="regret needs J"):
        regret(j_curves([lp]), [10])
    with pytest.raises(ValueError, match="regret needs J"):
        cumulative_regret_by_episode(j_curves([lp]))


def test_cumulative_regret_by_episode():
    band = cumulative_regret_by_episode(j_curves([T1, T2]))
    # T1: Δ = [0, 0.5, 0.5]; T2: Δ = [0, 1.0]
    assert band.x == (0.0, 1.0, 2.0) and band.mean.tolist() == pytest.approx([0.0, 0.75, 0.5])
    assert band.intervals[1].low >= 0.0 and band.intervals[1].high <= 1.0  # 0 <= Δ_1 <= 1


def test_collect_curves_pools_seeds_by_config_name(tmp_path):
    for seed, t in ((0, T1), (1, T2)):
        d = tmp_path / f"s{seed}"
        write_jsonl(d / "scored.jsonl", [t])
        (d / "config.yaml").write_text(f"name: pooled\nseed: {seed}\n")
    sets, notes = collect_curves([load_run(tmp_path / "s0"), load_run(tmp_path / "s1")])
    cs = sets["pooled"]
    assert cs.seed_index == [0, 1] and [c.J[-1] for c in cs.curves] == [1.0, 0.0]
    assert notes[-1] == "pooled: 2 curves from `episodes[*].info.J` (Monte Carlo or exact progress)"
    assert regret(cs, [64]).n_runs == 2


def test_plot_bands_writes_png_and_the_csv_behind_it(tmp_path):
    cs = j_curves([T1, T2])
    png, csv_path = plot_bands({"a": mean_by_episode(cs), "b": mean_by_episode(CurveSet("b", cs.curves[:1]))},
                               tmp_path / "sub" / "by_episode.png", title="J vs episodes")
    assert png == tmp_path / "sub" / "by_episode.png" and png.read_bytes()[:8] == PNG_MAGIC
    rows = read_csv(csv_path)
    assert csv_path.name == "by_episode.csv" and len(rows) == 3 + 3
    assert [(r["label"], r["x"], float(r["mean"])) for r in rows[:3]] == [("a", "0.0", 0.25), ("a", "1.0", 0.25),
                                                                         ("a", "2.0", 1.0)]
    assert rows[5]["ci_low"] == "" and rows[5]["n"] == "1"  # one trace: no interval, written empty
    band = Band((1.0,), (Interval(0.5, 0.25, 0.75, 3),), "budget", "normalized_regret", "r")
    png, csv_path = plot_bands(band, tmp_path / "regret")
    assert png.name == "regret.png" and read_csv(csv_path) == [{"label": "r", "x": "1.0", "mean": "0.5",
                                                                 "ci_low": "0.25", "ci_high": "0.75", "n": "3"}]
    with pytest.raises(ValueError):
        plot_bands({}, tmp_path / "none")


def test_importing_the_api_loads_no_model_library_and_no_plotting():
    code = ("import sys, metarl.analysis; "
            "print(sorted(m for m in ('torch', 'transformers', 'matplotlib', 'analysis') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_the_library_imports_neither_the_report_scripts_nor_the_cli_nor_bench():
    offenders = []
    for path in (ROOT / "metarl").rglob("*.py"):
        in_cli = path.relative_to(ROOT).parts[1] == "cli"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for n in names:
                top = n.split(".")[0]
                if top in ("analysis", "bench") or (not in_cli and (n == "metarl.cli" or n.startswith("metarl.cli."))):
                    offenders.append(f"{path.relative_to(ROOT)}: {n}")
    assert not offenders, offenders
