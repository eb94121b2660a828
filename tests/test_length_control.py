"""bench/length_control.py's pure parts: length metrics, the summary over seeds, resumability, the page guard."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


lc = _load("length_control")


def test_length_error_and_within_share_by_hand():
    # |20-32| + |32-32| + |50-32| = 12 + 0 + 18 = 30; / (3 * 32)
    assert lc.length_error([20, 32, 50], 32) == pytest.approx(30 / 96)
    assert lc.length_error([64, 64], 64) == 0.0
    assert lc.within_share([20, 32, 50], 32) == pytest.approx(2 / 3)  # n_y <= N counts as within
    assert lc.within_share([33], 32) == 0.0
    with pytest.raises(ValueError):
        lc.length_error([], 32)
    with pytest.raises(ValueError):
        lc.length_error([10], 0)


def test_length_cells_group_by_target_and_question():
    samples = [
        {"question_id": "q1#N32", "tokens": 16, "correct": 1}, {"question_id": "q1#N32", "tokens": 48, "correct": 0},
        {"question_id": "q2#N32", "tokens": 32, "correct": 1}, {"question_id": "q2#N32", "tokens": 40, "correct": 1},
        {"question_id": "q1#N64", "tokens": 64, "correct": 0}, {"question_id": "q1#N64", "tokens": 32, "correct": 0},
        {"question_id": "q2#N64", "tokens": 96, "correct": 1}, {"question_id": "q2#N64", "tokens": 64, "correct": 1},
    ]
    cells = lc.length_cells(samples, [32, 64])
    # N=32: errors 16,16,0,8 -> 40 / (4*32); within: 16,32 yes, 48,40 no
    assert cells[32]["length_error"] == pytest.approx(40 / 128)
    assert cells[32]["within_share"] == pytest.approx(0.5)
    assert cells[32]["accuracy"] == pytest.approx(0.75)  # q1 0.5, q2 1.0
    assert cells[32]["mean_tokens"] == pytest.approx(34.0)
    # per question errors: q1 (16+16)/64 = 0.5, q2 (0+8)/64 = 0.125 -> SE = |0.5-0.125| / 2
    assert cells[32]["length_error_se"] == pytest.approx(0.1875)
    assert cells[64]["length_error"] == pytest.approx((0 + 32 + 32 + 0) / 256)
    assert cells[64]["within_share"] == pytest.approx(0.75)
    assert cells[64]["questions"] == 2 and cells[64]["samples"] == 2
    with pytest.raises(ValueError, match="names no target"):
        lc.length_cells([{"question_id": "q1#N96", "tokens": 1, "correct": 0}], [32, 64])


def test_testtime_cells_split_truncation_and_s1():
    rows = [{"strategy": "pass@1", "budget": 32, "correct": 1.0, "tokens": 30},
            {"strategy": "pass@1", "budget": 32, "correct": 0.0, "tokens": 20},
            {"strategy": "budget_forcing", "budget": 32, "correct": 0.5, "tokens": 32},
            {"strategy": "budget_forcing", "budget": 32, "correct": 0.0, "tokens": 32},
            {"strategy": "majority", "budget": 32, "correct": 1.0, "tokens": 1}]
    cells = lc.testtime_cells(rows, [32])
    assert cells[32] == {"truncation_accuracy": 0.5, "truncation_tokens": 25.0, "s1_accuracy": 0.25,
                         "s1_tokens": 32.0}
    with pytest.raises(ValueError, match="budget 64"):
        lc.testtime_cells(rows, [32, 64])


def _rec(recipe, seed, n, phase, err, tokens, acc=0.5):
    return {"recipe": recipe, "seed": seed, "N": n, "phase": phase, "mode": "exact", "length_error": err,
            "within_share": 0.5, "mean_tokens": tokens, "accuracy": acc, "truncation_accuracy": 0.2,
            "truncation_tokens": n, "s1_accuracy": 0.1, "s1_tokens": n, "wall_s": 10.0 + seed, "cpu": "cpu",
            "commit": "abc"}


def test_summary_over_seeds_medians_changes_and_slope():
    recs = []
    for seed, (b, a) in enumerate([(0.9, 0.3), (0.8, 0.4), (1.0, 0.2)]):
        for n in (32, 64):
            recs.append(_rec("l1_exact", seed, n, "before", b, 50.0))          # ignores N: slope 0
            recs.append(_rec("l1_exact", seed, n, "after", a, n * 1.0 + seed))  # follows N: slope 1
    s = lc.summarize(recs)["recipes"]["l1_exact"]
    cell = s["cells"]["before/32"]["length_error"]
    assert (cell["median"], cell["min"], cell["max"], cell["seeds"]) == (0.9, 0.8, 1.0, 3)
    ch = s["change"]["32"]["length_error"]
    assert ch["per_seed"] == pytest.approx([-0.6, -0.4, -0.8])
    assert ch["median"] == pytest.approx(-0.6) and ch["mean"] == pytest.approx(-0.6)
    # t-interval: SD 0.2, SE 0.2/sqrt(3), t(2) = 4.303
    half = 4.303 * 0.2 / 3 ** 0.5
    assert ch["ci_low"] == pytest.approx(-0.6 - half) and ch["ci_high"] == pytest.approx(-0.6 + half)
    assert s["overall"]["before"]["slope"]["median"] == pytest.approx(0.0)
    assert s["overall"]["after"]["slope"]["median"] == pytest.approx(1.0)
    assert s["overall"]["change"]["length_error"]["median"] == pytest.approx(-0.6)
    assert s["headline"] == "length_error"


def test_t_interval_and_slope_edge_cases():
    assert lc.t_interval([1.0]) == (None, None)
    lo, hi = lc.t_interval([1.0, 3.0])  # mean 2, SE 1, t(1) = 12.706
    assert (lo, hi) == pytest.approx((2 - 12.706, 2 + 12.706))
    assert lc.slope([32, 32], [1, 2]) is None
    assert lc.slope([0, 1, 2], [1, 3, 5]) == pytest.approx(2.0)


def test_resume_skips_recorded_jobs(tmp_path):
    path = tmp_path / "results.jsonl"
    recs = [_rec("l1_exact", 0, n, p, 0.5, 40.0) for n in (32, 64) for p in ("before", "after")]
    recs.append(_rec("l1_max", 0, 32, "before", 0.5, 40.0))  # l1_max seed 0: incomplete
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n{not json, a write cut short\n")
    done = lc.load_results(path)
    assert len(done) == 5
    todo = lc.pending(done, ["l1_exact", "l1_max"], [0, 1], [32, 64])
    assert todo == [("l1_max", 0), ("l1_exact", 1), ("l1_max", 1)]
    assert lc.pending(done, ["l1_exact"], [0], [32, 64]) == []
    assert lc.pending(done, ["l1_exact"], [0], [32, 64, 96]) == [("l1_exact", 0)]  # a new target reruns it


def test_parse_options():
    assert lc.parse_seeds("0-2,5") == [0, 1, 2, 5]
    with pytest.raises(ValueError):
        lc.parse_seeds("3-1")
    assert lc.parse_targets("64,32,64", 192) == [32, 64]
    with pytest.raises(ValueError, match="exceeds the cap"):
        lc.parse_targets("32,256", 192)
    args = lc.parse_args(["--out", "x", "--quick"])
    assert (args.seed_list, args.steps, args.target_list, args.continuation) == ([0], 2, [32, 64], "<revise>")
    args = lc.parse_args(["--out", "x", "--model", "smollm2", "--targets", "32,256", "--cap", "320", "--", "a=1"])
    assert (args.seed_list, args.continuation, args.overrides) == ([0, 1, 2], "Wait", ["a=1"])
    # a model group that extends another (tiny_mrt's defaults name tiny) resolves through Hydra, not the file alone
    assert lc.parse_args(["--out", "x", "--model", "tiny_mrt"]).model_name == "tiny"
    with pytest.raises(SystemExit, match="no conf/model/nope.yaml"):
        lc.parse_args(["--out", "x", "--model", "nope"])


def test_outputs_and_page_refuse_a_smoke_run(tmp_path):
    pytest.importorskip("matplotlib")
    recs = [_rec(r, s, n, p, 0.5, 40.0 + n) for r in ("l1_exact",) for s in (0, 1) for n in (32, 64)
            for p in ("before", "after")]
    settings = lc.settings_of(lc.parse_args(["--out", str(tmp_path), "--quick"]))
    assert settings["smoke"] is True
    summary = lc.write_outputs(tmp_path, recs, settings)
    assert (tmp_path / "accuracy_vs_tokens.png").stat().st_size > 0
    assert (tmp_path / "results.csv").read_text().count("\n") == 1 + len(recs)
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert summary["recipes"]["l1_exact"]["seeds"] == [0, 1]
    lr = _load("length_results")
    with pytest.raises(SystemExit, match="smoke"):
        lr.main([str(tmp_path), "--page", str(tmp_path / "page.md")])
    assert lr.main([str(tmp_path), "--page", str(tmp_path / "page.md"), "--allow-smoke",
                    "--figures", str(tmp_path / "fig")]) == 0
    text = (tmp_path / "page.md").read_text()
    assert "| 32 |" in text and "length_control.py" in text
    assert "## Policy `tiny`\n\nThe built-in tiny policy (character tokenizer" in text  # conf/model/tiny.yaml's comment
    # the overview: one row per policy and recipe, the metric's bars escaped so the row keeps its 8 cells
    row = next(line for line in text.splitlines() if line.startswith("| `tiny` | l1_exact |"))
    assert r"mean \|n_y − N\| / N" in row and row.replace(r"\|", "").count("|") == 9
    assert (tmp_path / "fig" / "length_tiny_accuracy_vs_tokens.png").stat().st_size > 0
    with pytest.raises(SystemExit, match="same policy"):
        lr.main([str(tmp_path), str(tmp_path), "--page", str(tmp_path / "p2.md"), "--allow-smoke"])
