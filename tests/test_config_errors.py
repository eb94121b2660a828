"""Bad configs and data fail before any model loads, with a message naming the key and the fix.

Each case is composed with Hydra's compose API and run through ``metarl.trainer.run.run`` with the model
loader replaced by one that fails the test: the ``ConfigError`` must come first (from ``validate`` or the
run-directory check). Three cases also go through the ``metarl-train`` command (exit code 2, message on
stderr). The context check, which needs the tokenizer, is the one case that runs after the (tiny) model loads.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from metarl.config import conf_dir
from metarl.registry import ConfigError
from metarl.runlog import RunDirError

SMALL = ["model=random-tiny", "trainer.max_steps=1", "evaluate.enabled=false", "task.n_train=8",
         "trainer.per_device_train_batch_size=4", "trainer.num_generations=2", "budget.cap=16"]


def compose_train(tmp_path: Path, *overrides: str, small: bool = True):
    with initialize_config_dir(config_dir=conf_dir(), version_base=None):
        return compose("train", overrides=["name=bad", f"run_dir={tmp_path / 'run'}", *(SMALL if small else []),
                                           *overrides])


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: configuration errors must come first."""
    import metarl.models.loading as loading

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the configuration error was raised")

    monkeypatch.setattr(loading, "load_model_and_tokenizer", refuse)


def run_expecting(cfg, match: str, error=ConfigError):
    from metarl.trainer.run import run

    with pytest.raises(error, match=match) as info:
        run(cfg)
    return str(info.value)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# (overrides, pattern the message must match: the key, and the fix or the allowed values)
CASES = {
    "unknown segmenter": (["segmenter._target_=nosuch"],
                          r"segmenter\._target_='nosuch': unknown segmenter.*Use one of \[mrt, paragraphs, regex, "
                          r"tags, tokens\] or a dotted path"),
    "segmenter bad option": (["segmenter=mrt", "segmenter.min_gap=-1"],
                             r"segmenter\._target_=.*MRTSegmenter.*min_gap must be an integer >= 0, got -1"),
    "unknown reward": (["+rewards.bad._target_=nosuch.module.fn"],
                       r"rewards\.bad: unknown reward 'nosuch\.module\.fn'.*Use one of \[.*outcome.*\] or a dotted"),
    "reward bad argument": (["rewards=[verification_correctness]", "+rewards.verification_correctness.wrongg=1"],
                            r"rewards\.verification_correctness: reward .* takes no argument\(s\) \['wrongg'\]"),
    "max_steps not a number": (["trainer.max_steps=abc"],
                               r"trainer\.max_steps='abc' must be a whole number; set it like trainer\.max_steps=60"),
    "learning rate not a number": (["trainer.learning_rate=fast"],
                                   r"trainer\.learning_rate='fast' must be a number; set it like "
                                   r"trainer\.learning_rate=5e-4"),
    "alpha not a number": (["objective.alpha=foo"],
                           r"objective\.alpha='foo' must be a finite number, e\.g\. objective\.alpha=1\.0"),
    "gamma out of range": (["objective.gamma=2"], r"objective\.gamma=2\.0 is a discount and must lie in \[0, 1\]"),
    "samples without sampling": (["evaluate.samples=8"], r"evaluate\.samples=8 with evaluate\.temperature=0"),
    "normalize unknown": (["objective.normalize=both"],
                          r"objective\.normalize='both' is not supported; use one of separate, per_kind, joint"),
    "bool not a bool": (["trainer.use_cpu=maybe"], r"trainer\.use_cpu='maybe' must be true or false"),
    "cap zero": (["budget.cap=0"], r"budget\.cap=0 must be a whole number >= 1; set it like budget\.cap=96"),
    "cap negative": (["budget.cap=-5"], r"budget\.cap=-5 must be a whole number >= 1"),
    "cap fractional": (["budget.cap=12.5"], r"budget\.cap=12\.5 must be a whole number"),
    "group does not divide batch": (["trainer.num_generations=3"],
                                    r"trainer\.num_generations=3 does not divide the generation batch .*= 4\); make "
                                    r"the batch a multiple of the group size"),
    "rollout mode unknown": (["rollout.mode=foo"],
                             r"rollout\.mode='foo' is not one of single, episodes, budget_forcing"),
    "on_reward_error unknown": (["on_reward_error=skip"], r"on_reward_error='skip' is not one of zero, nan"),
    "budget target not positive": (["budget.target_tokens=[0]"],
                                   r"budget\.target_tokens=\[0\] must be null, a whole number of tokens >= 1"),
    "l1_exact without target": (["recipe=l1_exact", "budget.target_tokens=null"],
                                r"budget\.prompt_mode='exact' needs a length target N: set budget\.target_tokens"),
    "l1_max without target": (["recipe=l1_max", "budget.target_tokens=null"],
                              r"budget\.prompt_mode='max' needs a length target N: set budget\.target_tokens"),
    "lcpo without any target": (["recipe=l1_exact", "budget.prompt_mode=null"],
                                r"rewards\.lcpo_exact needs a length target N \(target_tokens\) for every prompt, but "
                                r"8 of 8 training rows have none: set budget\.prompt_mode=exact"),
    "target above the cap": (["recipe=l1_exact", "budget.target_tokens=64"],
                             r"target_tokens=64 exceeds the compute cap budget\.cap=16; raise the cap or lower "
                             r"budget\.target_tokens"),
    "termination baseline without mc_progress": (["objective=termination"],
                                                 r"objective\.baseline=termination needs the Monte Carlo progress "
                                                 r"estimator: add rewards=\[mc_progress\]"),
    "mrt termination baseline without mc_progress": (["objective=termination", "objective.baseline=mrt_termination"],
                                                     r"objective\.baseline=mrt_termination needs the Monte Carlo "
                                                     r"progress estimator"),
    "health window too small": (["health.window=1"],
                                r"health\.window=1 must be a whole number >= 2; set it like health\.window=20"),
    "health unknown option": (["+health.windw=5"], r"health: unknown option\(s\) \['windw'\]"),
    "credit unknown": (["objective.credit=max"], r"objective\.credit='max' is not supported; use one of sum, min"),
    "min credit with a discount": (["objective.credit=min", "objective.gamma=0.9"],
                                   r"objective\.credit='min' takes no discount: objective\.gamma=0\.9 must be 1"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_is_explained_before_any_model_loads(case, tmp_path, no_model):
    overrides, match = CASES[case]
    run_expecting(compose_train(tmp_path, *overrides), match)
    assert not (tmp_path / "run" / "config.yaml").exists(), "nothing is written for a config that cannot run"


def test_dataset_errors_name_the_column_key(tmp_path, no_model):
    rows = '{"prompt": "2+2?", "solution": "4"}\n{"prompt": "3+3?", "solution": "6"}\n'
    data = write(tmp_path / "no_answer.jsonl", rows)
    msg = run_expecting(compose_train(tmp_path, "task=dataset", f"task.source={data}"),
                        r"task\.source=.*no_answer\.jsonl.*has no column 'answer' for 'answer'; its columns are "
                        r"\['prompt', 'solution'\]")
    assert "task.columns.answer=solution" in msg  # the fix, in the config's own key
    # with the mapping the same file is fine as far as validation goes
    from metarl.trainer.run import validate

    plan = validate(compose_train(tmp_path, "task=dataset", f"task.source={data}", "task.columns.answer=solution"))
    assert [r["answer"] for r in plan.train_rows] == ["4", "6"]


def test_dataset_target_tokens_column_is_optional_and_used_when_present(tmp_path, no_model):
    from metarl.trainer.run import validate

    data = write(tmp_path / "t.jsonl", '{"prompt": "a", "answer": "1", "target_tokens": 12}\n'
                                       '{"prompt": "b", "answer": "2", "target_tokens": 8}\n')
    plan = validate(compose_train(tmp_path, "recipe=l1_exact", "budget.target_tokens=null", "task=dataset",
                                  f"task.source={data}"))
    assert [r["target_tokens"] for r in plan.train_rows] == [12, 8]
    assert plan.train_rows[0]["prompt"] == "a Think for 12 tokens."
    data = write(tmp_path / "u.jsonl", '{"prompt": "a", "answer": "1"}\n{"prompt": "b", "answer": "2"}\n')
    run_expecting(compose_train(tmp_path, "recipe=l1_exact", "budget.target_tokens=null", "task=dataset",
                                f"task.source={data}"),
                  r"budget\.prompt_mode='exact' needs a length target N: set budget\.target_tokens .* or give the "
                  r"dataset a `target_tokens` column \(row 0 has none\)")


@pytest.mark.parametrize("content, match", [
    ("", r"task\.source=.*empty\.jsonl.*is empty"),
    ("\n\n  \n", r"task\.source=.*empty\.jsonl' has no records \(only blank lines\); write one JSON object per line"),
    ('{"prompt": "a", "answer": "1"}\n{"prompt": ', r"task\.source=.*could not read .*empty\.jsonl as json"),
])
def test_empty_or_broken_dataset(tmp_path, no_model, content, match):
    data = write(tmp_path / "empty.jsonl", content)
    run_expecting(compose_train(tmp_path, "task=dataset", f"task.source={data}"), match)


def test_dataset_source_missing(tmp_path, no_model):
    run_expecting(compose_train(tmp_path, "task=dataset"),
                  r"task\.source is required but has no value \(\?\?\?\): set it, e\.g\. task\.source=")


def test_dataset_answer_style_and_grader_are_checked(tmp_path, no_model):
    data = write(tmp_path / "d.jsonl", '{"prompt": "2+2?", "answer": "4"}\n')
    base = ["task=dataset", f"task.source={data}"]
    run_expecting(compose_train(tmp_path, *base, "answer=boxd"),
                  r"answer='boxd' is not an answer style; use one of auto, tag, boxed, phrase, last_number")
    run_expecting(compose_train(tmp_path, *base, "grader=nosuch"), r"grader='nosuch': .*unknown grader")
    run_expecting(compose_train(tmp_path, *base, "+verdict.positive=yes"), r"verdict=\{'positive': 'yes'\}: .*lists")


def test_unwritable_run_dir_fails_early(tmp_path, no_model):
    # tests run as root, where chmod does not stop writes: a path below a regular file cannot be created
    blocker = write(tmp_path / "a_file", "x")
    cfg = compose_train(tmp_path, f"run_dir={blocker / 'sub'}")
    msg = run_expecting(cfg, r"run_dir=.*a_file/sub' is not writable \(Not a directory\); choose another with "
                             r"run_dir=PATH", RunDirError)
    assert isinstance(RunDirError(msg), ConfigError)  # so metarl-train reports it as a configuration error


def test_full_disk_fails_early(tmp_path, no_model, monkeypatch):
    real = shutil.disk_usage

    def nearly_full(path):
        return real(path)._replace(free=3 * 2**20)

    monkeypatch.setattr(shutil, "disk_usage", nearly_full)
    run_expecting(compose_train(tmp_path), r"run_dir=.*has only 3 MiB free \(need 50\); free space or choose "
                                           r"another with run_dir=PATH", RunDirError)


def test_existing_run_dir_without_resume_is_refused_and_left_alone(tmp_path, no_model):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    (run_dir / "config.yaml").write_text("the earlier run's config\n")
    run_expecting(compose_train(tmp_path), r"already holds a run; pass trainer\.resume=true to continue it or "
                                           r"choose a new run_dir")
    assert (run_dir / "config.yaml").read_text() == "the earlier run's config\n"
    assert (run_dir / "metrics.jsonl").read_text() == '{"step": 1}\n'


def test_cap_plus_prompt_longer_than_the_model_context(tmp_path):
    """The one check that needs the tokenizer: it runs right after the (tiny) model loads, before training."""
    cfg = compose_train(tmp_path, "budget.cap=1020")  # random-tiny has 1024 positions
    run_expecting(cfg, r"budget\.cap=1020: the longest prompt \(\d+ tokens\) plus the cap, the termination suffix and "
                       r"a forced answer \(prover\.answer_tokens=16\) need \d+ positions, but the model has 1024; "
                       r"lower budget\.cap or prover\.answer_tokens")
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize("override, match", [
    ("seed=abc", r"seed='abc' must be a whole number; set it like seed=0"),
    ("threads=-1", r"threads=-1 must be a whole number >= 0; set it like threads=1"),
    ("trainer.save_total_limit=many", r"trainer\.save_total_limit='many' must be a whole number or null"),
])
def test_validate_checks_top_level_numbers(override, match, tmp_path):
    from metarl.trainer.run import validate

    with pytest.raises(ConfigError, match=match):
        validate(compose_train(tmp_path, override))


def test_valid_small_config_passes_validation(tmp_path, no_model):
    """The same helpers accept a correct config (so the cases above fail for their own reason)."""
    from metarl.trainer.run import validate

    plan = validate(compose_train(tmp_path, "recipe=l1_exact", "budget.target_tokens=[8,16]"))
    assert len(plan.train_rows) == 8 and {r["target_tokens"] for r in plan.train_rows} <= {8, 16}


@pytest.mark.parametrize("overrides, expected", [
    (["segmenter._target_=nosuch"], "segmenter._target_='nosuch': unknown segmenter"),
    (["+rewards.bad._target_=nosuch.fn"], "rewards.bad: unknown reward 'nosuch.fn'"),
    (["objective.alpha=foo"], "objective.alpha='foo' must be a finite number"),
])
def test_metarl_train_cli_exit_code_2_and_message(overrides, expected, tmp_path):
    exe = Path(sys.executable).with_name("metarl-train")
    r = subprocess.run([str(exe), "name=bad", f"run_dir={tmp_path / 'run'}", *SMALL, *overrides],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"metarl-train: configuration error: {expected}" in r.stderr
    assert "Traceback" not in r.stderr
