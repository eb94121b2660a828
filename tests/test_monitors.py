"""Training-health monitors: each trips on a constructed metric stream, stays quiet on a healthy one; the
callback's keys reach metrics.jsonl through the real trainer and it warns once."""
from __future__ import annotations

import doctest
import json
import logging
import math
from types import SimpleNamespace

import pytest

from metarl import monitors
from metarl.monitors import (ACCURACY_KEY, CAP_KEY, DENSE_KEY, EPISODES_KEY, TOKENS_KEY, CapSaturation, EpisodeCollapse,
                             HealthConfig, LengthInflation, RewardHacking, build_monitors, fitted_change, replay)
from metarl.trainer.callbacks import HealthCallback, health_callbacks
from metarl.registry import ConfigError
from metarl.rewards.obj1 import outcome

W = 10  # window of the constructed streams
WIGGLE = [0.01, -0.01, 0.0, 0.02, -0.02]  # deterministic noise around a trend


def stream(n: int, **series) -> list[dict[str, float]]:
    """Rows {"step": s, key: f(s)} for s = 1..n; each series is a function of the step."""
    return [{"step": s, **{key: f(s) for key, f in series.items()}} for s in range(1, n + 1)]


def run(monitor, rows):
    records = replay(rows, [monitor])
    return records, monitor.status


def test_fitted_change_is_the_least_squares_change_across_the_window():
    assert fitted_change([1, 2, 3, 4, 5], [2.0, 4.0, 6.0, 8.0, 10.0]) == pytest.approx(8.0)
    # noise around a line: b = sum (x - 3)(y - ybar) / 10 with y = [0, 1, 0, 1, 0] -> 0
    assert fitted_change([1, 2, 3, 4, 5], [0.0, 1.0, 0.0, 1.0, 0.0]) == pytest.approx(0.0)
    # x̄ = 4, ȳ = 7/3: Sxy = (-2)(-4/3) + 2(5/3) = 6, Sxx = 8, b = 0.75 per step over a span of 4 steps
    assert fitted_change([2, 4, 6], [1.0, 2.0, 4.0]) == pytest.approx(3.0)
    assert math.isnan(fitted_change([3, 3], [1.0, 2.0]))
    assert doctest.testmod(monitors).failed == 0


def test_reward_hacking_trips_when_dense_reward_rises_and_accuracy_does_not():
    rows = stream(30, **{DENSE_KEY: lambda s: 0.5 + 0.02 * s,
                         ACCURACY_KEY: lambda s: 0.40 - 0.002 * s + WIGGLE[s % 5]})
    records, status = run(RewardHacking(W, patience=2), rows)
    assert status.tripped and status.step == W + 1  # the first full window alarms, the second trips
    assert status.stats["reward_change"] == pytest.approx(0.02 * (W - 1))
    assert status.stats["accuracy_change"] < 0
    assert "dense reward (metarl/reward/dense) changed +0.18 over the last 10 steps" in status.message
    assert records[W - 2]["health/reward_hacking/alarm"] == 0.0  # window not yet full
    assert records[W - 1]["health/reward_hacking/alarm"] == 1.0 and records[W - 1]["health/reward_hacking/tripped"] == 0
    assert records[-1]["health/reward_hacking/tripped"] == 1.0  # latched


def test_reward_hacking_is_quiet_when_accuracy_rises_with_the_reward():
    rows = stream(40, **{DENSE_KEY: lambda s: 0.5 + 0.02 * s, ACCURACY_KEY: lambda s: 0.2 + 0.01 * s + WIGGLE[s % 5]})
    records, status = run(RewardHacking(W, patience=1), rows)
    assert not status.tripped and all(r["health/reward_hacking/alarm"] == 0 for r in records)
    # a flat dense reward with flat accuracy: nothing to report either
    _, status = run(RewardHacking(W, 1), stream(40, **{DENSE_KEY: lambda s: 1.0 + WIGGLE[s % 5],
                                                       ACCURACY_KEY: lambda s: 0.3}))
    assert not status.tripped


def test_length_inflation_trips_on_tokens_up_with_flat_accuracy():
    rows = stream(30, **{TOKENS_KEY: lambda s: 100.0 + 5.0 * s, ACCURACY_KEY: lambda s: 0.3 + WIGGLE[s % 5]})
    _, status = run(LengthInflation(W, patience=1), rows)
    assert status.tripped and status.step == W
    # window 1..10: fitted change 45 tokens, window mean 127.5
    assert status.stats["tokens_change"] == pytest.approx(45 / 127.5)
    assert status.stats["tokens_mean"] == pytest.approx(127.5)
    assert "+35.3% of their window mean 127.5" in status.message


def test_length_inflation_is_quiet_when_longer_traces_buy_accuracy_or_tokens_are_flat():
    _, status = run(LengthInflation(W, 1), stream(40, **{TOKENS_KEY: lambda s: 100.0 + 5.0 * s,
                                                         ACCURACY_KEY: lambda s: 0.1 + 0.01 * s}))
    assert not status.tripped
    _, status = run(LengthInflation(W, 1), stream(40, **{TOKENS_KEY: lambda s: 200.0 + 3 * WIGGLE[s % 5] * 100,
                                                         ACCURACY_KEY: lambda s: 0.3}))
    assert not status.tripped


def test_cap_saturation_trips_only_when_sustained():
    _, status = run(CapSaturation(W, patience=3), stream(20, **{CAP_KEY: lambda s: 0.95}))
    assert status.tripped and status.step == W + 2 and status.stats["cap_fraction"] == pytest.approx(0.95)
    assert "95% of traces reached the compute cap" in status.message
    # a burst of five fully capped steps in a healthy run: the window mean stays below 0.9
    _, status = run(CapSaturation(W, 1), stream(40, **{CAP_KEY: lambda s: 1.0 if 10 <= s < 15 else 0.3}))
    assert not status.tripped
    _, status = run(CapSaturation(W, 1), stream(40, **{CAP_KEY: lambda s: 0.5}))
    assert not status.tripped


def test_episode_collapse_trips_against_the_best_earlier_window():
    rows = stream(45, **{EPISODES_KEY: lambda s: 3.0 if s <= 20 else 1.1})
    records, status = run(EpisodeCollapse(W, patience=1), rows)
    assert status.tripped
    # reference: best non-overlapping earlier window (3.0); trips once the current window mean m has
    # (m - 1) / 2 <= 0.5, i.e. m <= 2: window ending at step 25 holds 5 x 3.0 + 5 x 1.1 -> m = 2.05; at 26 m = 1.86
    assert status.step == 26
    assert status.stats["reference"] == pytest.approx(3.0)
    assert status.stats["episodes"] == pytest.approx((4 * 3.0 + 6 * 1.1) / 10)
    assert status.stats["retained"] == pytest.approx(((4 * 3.0 + 6 * 1.1) / 10 - 1) / 2)
    assert "health/episode_collapse/reference" not in records[2 * W - 2]  # no earlier window before 2W steps
    assert records[2 * W - 1]["health/episode_collapse/reference"] == pytest.approx(3.0)


def test_episode_collapse_is_quiet_on_stable_growing_or_single_episode_runs():
    for f in (lambda s: 3.0 + WIGGLE[s % 5], lambda s: 1.0 + 0.05 * s, lambda s: 1.0):
        _, status = run(EpisodeCollapse(W, 1), stream(60, **{EPISODES_KEY: f}))
        assert not status.tripped


def test_steps_without_the_keys_are_not_observations():
    rows = stream(30, **{CAP_KEY: lambda s: 0.95})
    for r in rows[::2]:
        del r[CAP_KEY]
    rows[1][CAP_KEY] = math.nan  # not finite: no observation either
    records, status = run(CapSaturation(W, 1), rows)
    assert records[0] == {"step": 1}  # nothing logged for a step the monitor did not observe
    # observations at steps 4, 6, ..., 30 (14 of them): the 10th is at step 22
    assert status.tripped and status.step == 22


def test_config_defaults_validation_and_build():
    c = HealthConfig.from_mapping(None)
    assert (c.window, c.patience, c.cap_fraction, c.reward_key) == (20, 3, 0.9, DENSE_KEY)
    ms = build_monitors({"window": 5, "reward_key": "metarl/episode_reward/verification_correctness"})
    assert [m.name for m in ms] == ["reward_hacking", "length_inflation", "cap_saturation", "episode_collapse"]
    assert all(m.window == 5 for m in ms) and ms[0].keys[0] == "metarl/episode_reward/verification_correctness"
    for bad, match in (({"window": 1}, r"health\.window=1 must be a whole number >= 2"),
                       ({"cap_fraction": 1.5}, r"health\.cap_fraction=1\.5 must be a number in \(0, 1\]"),
                       ({"episode_drop": 0}, r"health\.episode_drop=0 must be a number in \(0, 1\)"),
                       ({"reward_rise": "x"}, r"health\.reward_rise='x' must be a number > 0"),
                       ({"enabled": "yes"}, r"health\.enabled='yes' must be true or false"),
                       ({"windw": 3}, r"health: unknown option\(s\) \['windw'\]")):
        with pytest.raises(ConfigError, match=match):
            HealthConfig.from_mapping(bad)
    assert health_callbacks({"enabled": False}) == []
    assert isinstance(health_callbacks({})[0], HealthCallback)


def test_callback_adds_the_keys_and_warns_once(caplog):
    cb = HealthCallback(build_monitors({"window": 3, "patience": 1}))
    rows = stream(8, **{CAP_KEY: lambda s: 1.0, ACCURACY_KEY: lambda s: 0.5, DENSE_KEY: lambda s: 0.1 * s,
                        TOKENS_KEY: lambda s: 50.0, EPISODES_KEY: lambda s: 1.0})
    logged = []
    with caplog.at_level(logging.WARNING, logger="metarl"):
        for r in rows:
            logs = {k: v for k, v in r.items() if k != "step"}
            cb.on_log(None, SimpleNamespace(global_step=r["step"], is_world_process_zero=True), None, logs=logs)
            logged.append(logs)
        eval_logs = {"eval_loss": 1.0}
        cb.on_log(None, SimpleNamespace(global_step=9, is_world_process_zero=True), None, logs=eval_logs)
    assert eval_logs == {"eval_loss": 1.0}  # an evaluation log is left alone
    assert logged[0]["health/cap_saturation/cap_fraction"] == 1.0 and logged[0]["health/cap_saturation/alarm"] == 0
    assert logged[2]["health/cap_saturation/tripped"] == 1.0
    assert logged[2]["health/reward_hacking/reward_change"] == pytest.approx(0.2)
    assert logged[-1]["health/reward_hacking/tripped"] == 1.0
    warnings = [r.getMessage() for r in caplog.records if "training health" in r.getMessage()]
    assert len(warnings) == 2, warnings  # cap_saturation and reward_hacking, once each over 8 steps
    assert any("cap_saturation tripped at step 3: 100% of traces reached the compute cap" in w for w in warnings)
    assert any("reward_hacking tripped at step 3: dense reward" in w and "+0.2" in w for w in warnings)
    # only the main process warns
    caplog.clear()
    cb = HealthCallback(build_monitors({"window": 3, "patience": 1}))
    with caplog.at_level(logging.WARNING, logger="metarl"):
        for r in rows:
            cb.on_log(None, SimpleNamespace(global_step=r["step"], is_world_process_zero=False), None,
                      logs={k: v for k, v in r.items() if k != "step"})
    assert not [r for r in caplog.records if "training health" in r.getMessage()]


def test_health_keys_land_in_metrics_jsonl_through_the_trainer(tiny, tmp_path):
    """The callback runs before the trainer's metrics.jsonl writer, so its keys are in the written rows."""
    import copy

    from datasets import Dataset
    from trl import GRPOConfig

    from metarl.models.tiny import build_char_tokenizer
    from metarl.rewards import build_rewards
    from metarl.runlog import RunLog
    from metarl.scoring import Objective, Scorer
    from metarl.segmenters import TokenChunkSegmenter
    from metarl.trainer.grpo import MetaRLTrainer

    model, tok = tiny
    (tmp_path / "run").mkdir()
    scorer = Scorer(segmenter=TokenChunkSegmenter(k=4), rewards=build_rewards([outcome]),
                    grader=lambda p, a, q="": p is not None and len(p) % 2 == 0, extract_answer=lambda t: t,
                    parse_verdict=lambda t: None, objective=Objective(), tokenizer=build_char_tokenizer())
    args = GRPOConfig(output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=2,
                      max_completion_length=8, max_steps=2, learning_rate=1e-2, logging_steps=1, report_to=[],
                      use_cpu=True, save_strategy="no", seed=3, bf16=False, disable_tqdm=True)
    t = MetaRLTrainer(model=copy.deepcopy(model).train(), args=args, processing_class=tok, scorer=scorer,
                      train_dataset=Dataset.from_list([{"prompt": f"Q{i}=", "answer": str(i)} for i in range(4)]),
                      run_log=RunLog(tmp_path / "run"), callbacks=health_callbacks({"window": 2}))
    t.train()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["health/cap_saturation/n"] == 1.0
    assert rows[1]["health/cap_saturation/cap_fraction"] == pytest.approx(
        (rows[0][CAP_KEY] + rows[1][CAP_KEY]) / 2)
    assert rows[1]["health/reward_hacking/accuracy_change"] == pytest.approx(
        rows[1][ACCURACY_KEY] - rows[0][ACCURACY_KEY])
