"""What a user sees: one progress bar per phase, library chatter only with ``verbose=true``.

The bars (warm start SFT, held-out evaluation, training) have a total, a unit and a rate; the training bar names the
objective; TRL's log dicts, Hugging Face's own bars and the libraries' deprecation warnings stay off the console by
default and come back with the one ``verbose`` key every app shares.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import metarl.utils as utils
from metarl.engine.base import Prefix, Request, Sampling
from metarl.engine.hf import HFBackend
from metarl.eval.heldout import CountingBackend, evaluate_policy
from metarl.scoring import Scorer
from metarl.segmenters import TokenChunkSegmenter
from metarl.trainer.callbacks import CompactProgress

TRL_DICT = re.compile(r"\{'(loss|train_runtime|reward)'")  # a Trainer log dict printed by a progress/printer callback


@pytest.fixture
def restore_verbosity():
    """set_verbose changes process-wide settings: put them back after the test."""
    import datasets
    import transformers.utils.logging as tlog

    saved = (utils._verbose, tlog.get_verbosity(), tlog.is_progress_bar_enabled(), datasets.is_progress_bar_enabled(),
             {n: logging.getLogger(n).level for n in ("trl", "accelerate")},
             [(h, h.level) for h in logging.getLogger().handlers])
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # under the filters set_verbose adds (pytest's config ignores deprecations)
        yield
    utils._verbose = saved[0]
    tlog.set_verbosity(saved[1])
    (tlog.enable_progress_bar if saved[2] else tlog.disable_progress_bar)()
    (datasets.enable_progress_bars if saved[3] else datasets.disable_progress_bars)()
    for n, level in saved[4].items():
        logging.getLogger(n).setLevel(level)
    for h, level in saved[5]:
        h.setLevel(level)


# --------------------------------------------------------------------------- the switch

def test_verbose_is_a_typed_key_of_every_app(tmp_path):
    from metarl.cli.calibrate import check
    from metarl.config import compose
    from metarl.registry import ConfigError

    assert compose("train", [f"run_dir={tmp_path}"]).verbose is False
    assert compose("train", [f"run_dir={tmp_path}", "verbose=true"]).verbose is True
    assert compose("score", [f"run_dir={tmp_path}", "verbose=true"]).verbose is True
    assert compose("eval", [f"run_dir={tmp_path}", "verbose=true"]).verbose is True
    with pytest.raises(ConfigError, match="verbose"):
        compose("train", [f"run_dir={tmp_path}", "verbose=loud"])
    cal = compose("calibrate", [f"run_dir={tmp_path}"])
    assert cal.verbose is False
    cal.verbose = "loud"
    with pytest.raises(ConfigError, match="verbose='loud' must be true or false"):
        check(cal)


def test_quiet_hides_library_deprecations_and_console_info_but_not_the_log_file(restore_verbosity, tmp_path):
    root = logging.getLogger()
    console, file = logging.StreamHandler(sys.stderr), logging.FileHandler(tmp_path / "app.log")
    root.addHandler(console)
    root.addHandler(file)
    try:
        utils.set_verbose(False)
        assert not utils.verbose()
        assert console.level == logging.WARNING and file.level == logging.NOTSET  # the log file keeps INFO
        with warnings.catch_warnings(record=True) as seen:
            warnings.warn_explicit("old api", FutureWarning, "x.py", 1, module="transformers.modeling_utils")
            warnings.warn_explicit("old trl api", DeprecationWarning, "y.py", 1, module="trl.trainer.grpo_trainer")
            warnings.warn_explicit("mine", FutureWarning, "z.py", 1, module="metarl.something")
        assert [str(w.message) for w in seen] == ["mine"]  # only the libraries' deprecations are hidden
        utils.set_verbose(True)
        assert utils.verbose() and console.level == logging.NOTSET
        with warnings.catch_warnings(record=True) as seen:
            warnings.warn_explicit("old api", FutureWarning, "x.py", 2, module="transformers.modeling_utils")
        assert [str(w.message) for w in seen] == ["old api"]
    finally:
        root.removeHandler(console)
        root.removeHandler(file)
        file.close()


# --------------------------------------------------------------------------- held-out evaluation

def parity_grader(prediction, answer, prompt=""):
    return prediction is not None and len(prediction) % 2 == 0


ROWS = [{"prompt": f"Q{i}: {i}+{i}=", "answer": str(2 * i)} for i in range(6)]


def _scorer(tok):
    return Scorer(segmenter=TokenChunkSegmenter(k=4), rewards=[], grader=parity_grader,
                  extract_answer=lambda t: t, parse_verdict=lambda t: None, tokenizer=tok)


def test_evaluation_shows_one_bar_over_the_problems(tiny, capsys):
    model, tok = tiny
    evaluate_policy(HFBackend(model, tok, batch_size=4), ROWS, cap=9, scorer=_scorer(tok), samples=3,
                    temperature=1.0, seed=1)
    err = capsys.readouterr().err
    assert "held-out evaluation, cap 9 (6 problems x 3 samples)" in err
    assert "6/6" in err and "problem/s" in err  # a total, a unit and a rate
    evaluate_policy(HFBackend(model, tok), ROWS, cap=9, scorer=_scorer(tok), progress=False)
    assert capsys.readouterr().err == ""


def test_the_bar_changes_no_draw(tiny):
    model, tok = tiny
    runs = [evaluate_policy(HFBackend(model, tok, batch_size=4), ROWS, cap=9, scorer=_scorer(tok), samples=3,
                            temperature=1.0, seed=5, return_traces=True, progress=p) for p in (True, False)]
    assert [t.completion for t in runs[0]["traces"]] == [t.completion for t in runs[1]["traces"]]
    assert runs[0]["per_question"] == runs[1]["per_question"]


def test_counting_backend_reports_every_batch_of_the_first_call(tiny):
    model, tok = tiny
    backend = HFBackend(model, tok, batch_size=4)
    seen, started = [], []
    counting = CountingBackend(backend, seen.append, started.append)
    ids = tok("Q1: 1+1=", add_special_tokens=False)["input_ids"]
    counting.generate([Request(tuple(ids), 3, 1, ()) for _ in range(6)], Sampling(1.0), seed=0)
    assert started == [6] and seen == [4, 2]  # one report per batch of the transformers backend
    counting.generate([Request(tuple(ids), 3, 1, ())], Sampling(1.0), seed=0)
    assert seen == [4, 2]  # later calls (the forced answers) are not the workload the bar counts
    assert "_run" not in vars(backend)  # the backend is left as it was

    rows, begun = [], []
    branch = CountingBackend(backend, rows.append, begun.append, method="branch")
    branch.branch([ids, ids], [[Prefix(2, (5,)), Prefix(4, (5,))], [Prefix(3, (5,))]], 3, 2, (), Sampling(1.0), 0)
    assert begun == [9] and sum(rows) == 9  # 3 prefixes x 3 answers


def test_counting_backend_counts_another_backend_once_per_call():
    class Other:  # e.g. vLLM: one report after the call, rows = continuations asked for
        eos_ids = (0,)

        def generate(self, requests, sampling, seed=None):
            return [[[1]] * r.n for r in requests]

    seen, started = [], []
    counting = CountingBackend(Other(), seen.append, started.append)
    counting.generate([Request((1,), 3, 2, ()), Request((1,), 0, 1, ()), Request((2,), 3, 1, ())], Sampling(1.0))
    assert started == [3] and seen == [3] and counting.eos_ids == (0,)  # other attributes pass through


# --------------------------------------------------------------------------- training bar

LOGS = {"reward": 0.125, "metarl/reward/total": 1.5625, "metarl/outcome_accuracy": 0.125,
        "metarl/tokens/mean": 79.7, "metarl/episodes_per_trace": 2.875, "metarl/reward/dense": 1.1875}


def test_training_bar_names_the_objective_not_the_outcome_term():
    assert CompactProgress.postfix(LOGS) == "objective=1.56 acc=0.125 tok=79.7 ep=2.88"
    assert CompactProgress.postfix({"reward": 0.5}) == ""  # TRL's outcome column is never shown as the objective


def test_training_bar_prints_trls_log_dicts_only_when_verbose(capsys, restore_verbosity):
    from types import SimpleNamespace

    state = SimpleNamespace(is_world_process_zero=True, max_steps=5, global_step=1)
    for on in (False, True):
        utils.set_verbose(on)
        cb = CompactProgress()
        cb.on_train_begin(None, state, None)
        cb.on_log(None, state, None, logs=dict(LOGS))
        assert cb.training_bar.postfix == "objective=1.56 acc=0.125 tok=79.7 ep=2.88"
        cb.on_train_end(None, state, None)
        captured = capsys.readouterr()
        assert "training:" in captured.err and "/5" in captured.err and "step" in captured.err
        assert bool(TRL_DICT.search(captured.out + captured.err)) is on


# --------------------------------------------------------------------------- warm start

def test_warm_start_shows_one_step_bar_and_no_trainer_chatter(tmp_path, capfd, restore_verbosity):
    from metarl.models.warmstart import make_recipe, train_tiny_policy

    recipe = make_recipe(n_examples=32, hidden_size=32, num_layers=1, max_length=200)
    utils.set_verbose(False)
    metrics = train_tiny_policy(recipe, tmp_path / "quiet", max_steps=2)
    out, err = capfd.readouterr()
    assert len(metrics["loss_history"]) == 2  # the loss is still recorded
    assert "warm start SFT" in err and "2/2" in err and "step" in err
    assert not TRL_DICT.search(out + err)
    assert "Tokenizing train dataset" not in err and "Writing model shards" not in err
    assert err.count("warm start SFT") <= 3  # start, end: not one line per step

    utils.set_verbose(True)
    train_tiny_policy(recipe, tmp_path / "verbose", max_steps=2)
    out, err = capfd.readouterr()
    assert TRL_DICT.search(out + err)  # Hugging Face's own bar and log dicts are back
    assert "warm start SFT" not in err  # and not two bars at once


# --------------------------------------------------------------------------- a whole metarl-train run

SMALL = ["model=random-tiny", "trainer.max_steps=2", "task.n_train=8", "task.n_test=4", "evaluate.n=4",
         "trainer.per_device_train_batch_size=4", "trainer.num_generations=2", "budget.cap=16",
         "recipe=obj1_verify", "threads=1", "trainer.logging_steps=1"]


def _train(tmp_path: Path, *extra: str) -> str:
    exe = Path(sys.executable).with_name("metarl-train")
    r = subprocess.run([str(exe), f"run_dir={tmp_path}", *SMALL, *extra], capture_output=True, timeout=300,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})  # bytes: bars redraw with \r, kept as is
    out, err = r.stdout.decode(), r.stderr.decode()
    assert r.returncode == 0, err[-3000:]
    return out + err


def test_metarl_train_shows_bars_and_no_chatter_by_default(tmp_path):
    quiet = _train(tmp_path / "quiet")
    assert "held-out evaluation before training, cap 16 (4 problems)" in quiet and "4/4" in quiet
    assert "held-out evaluation after training, cap 16 (4 problems)" in quiet
    bar = [ln for ln in quiet.replace("\r", "\n").split("\n") if ln.startswith("training: 100%")]
    assert bar and "objective=" in bar[-1] and "acc=" in bar[-1] and "2/2" in bar[-1]
    assert "reward=" not in quiet
    assert not TRL_DICT.search(quiet)
    for chatter in ("FutureWarning", "DeprecationWarning", "Writing model shards", "Loading weights", "[INFO]"):
        assert chatter not in quiet, chatter
    assert "[metarl] held-out before training" in quiet and "[metarl] trained 2 steps" in quiet
    assert quiet.count("\n") <= 12  # a line per phase (bars redraw in place): 7 today
