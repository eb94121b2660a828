"""Bad configs and data fail before any model loads, with a message naming the key and the fix.

Each case is composed as the console script composes it (``metarl.config.compose``: a wrong type or an unknown
key fails here, against the typed schema) and run through ``metarl.trainer.run.run`` with the model loader
replaced by one that fails the test: the ``ConfigError`` must come first (from composition, ``validate`` or the
run-directory check). Three cases also go through the ``metarl-train`` command (exit code 2, message on
stderr). The context check, which needs the tokenizer, is the one case that runs after the (tiny) model loads.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from metarl.config import compose
from metarl.registry import ConfigError
from metarl.runlog import RunDirError

SMALL = ["model=random-tiny", "trainer.max_steps=1", "evaluate.enabled=false", "task.n_train=8",
         "trainer.per_device_train_batch_size=4", "trainer.num_generations=2", "budget.cap=16"]


def compose_train(tmp_path: Path, *overrides: str, small: bool = True):
    return compose("train", ["name=bad", f"run_dir={tmp_path / 'run'}", *(SMALL if small else []), *overrides])


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
    "unknown segmenter": (["segmenter._target_=nosuch"], r"segmenter: Error locating target 'nosuch'"),
    "segmenter bad option": (["segmenter=mrt", "segmenter.min_gap=-1"],
                             r"segmenter: metarl\.segmenters\.MRTSegmenter: ValueError: MRTSegmenter min_gap must be an "
                             r"integer >= 0, got -1"),
    "unknown reward": (["+rewards.bad._target_=nosuch.module.fn"],
                       r"rewards\.bad: Error locating target 'nosuch\.module\.fn'"),
    "reward function without _partial_": (["+rewards.bad._target_=metarl.rewards.obj1.outcome"],
                                          r"rewards\.bad: metarl\.rewards\.obj1\.outcome is a function.*config says "
                                          r"`_partial_: true` \(on the command line \+rewards\.bad\._partial_=true\)"),
    "reward as a dotted-path string": (["+rewards.bad=metarl.rewards.progress.MCProgress"],
                                       r"rewards\.bad='metarl\.rewards\.progress\.MCProgress': a reward is a mapping "
                                       r"with `_target_`"),
    "reward bad argument": (["rewards=[verification_correctness]", "+rewards.verification_correctness.wrongg=1"],
                            r"rewards\.verification_correctness: reward .*verification_correctness takes no "
                            r"argument\(s\) \['wrongg'\]; it accepts \[.*'wrong'\]"),
    "max_steps not a number": (["trainer.max_steps=abc"],
                               r"trainer\.max_steps: Value 'abc' of type 'str' could not be converted to Integer; set "
                               r"it like trainer\.max_steps=100"),
    "learning rate not a number": (["trainer.learning_rate=fast"],
                                   r"trainer\.learning_rate: Value 'fast' .* to Float; set it like "
                                   r"trainer\.learning_rate=0\.0002"),
    "alpha not a number": (["objective.alpha=foo"],
                           r"objective\.alpha: Value 'foo' .* to Float; set it like objective\.alpha=1\.0"),
    "gamma out of range": (["objective.gamma=2"], r"objective\.gamma=2\.0 is a discount and must lie in \[0, 1\]"),
    "samples without sampling": (["evaluate.samples=8"], r"evaluate\.samples=8 with evaluate\.temperature=0"),
    "normalize unknown": (["objective.normalize=both"],
                          r"objective\.normalize='both' is not supported; use one of mrt, separate, per_kind, prime, pure, joint"),
    "bool not a bool": (["trainer.use_cpu=maybe"],
                        r"trainer\.use_cpu: Value 'maybe' is not a valid bool.*; set it like trainer\.use_cpu=true"),
    "cap zero": (["budget.cap=0"], r"budget\.cap=0 must be a whole number >= 1; set it like budget\.cap=96"),
    "cap negative": (["budget.cap=-5"], r"budget\.cap=-5 must be a whole number >= 1"),
    "cap fractional": (["budget.cap=12.5"], r"budget\.cap: Value '12\.5' .* to Integer; set it like budget\.cap=128"),
    "unknown trainer key": (["trainer.max_step=5"],
                            r"trainer\.max_step: unknown key; the section trainer has max_steps, learning_rate, .*, args$"),
    "unknown model key": (["+model.revison=main"], r"model\.revison: unknown key; the section model has name_or_path, .*revision"),
    "unknown key of an open section": (["model.tiny.threads=2"],
                                       r"model\.tiny\.threads: unknown key; the section model\.tiny has no keys by "
                                       r"default; model\.tiny is open to new keys, given with a leading \+: "
                                       r"\+model\.tiny\.threads=\.\.\.$"),
    "a trainer option passed through args": (["+trainer.args.gradient_checkpointing=true"],
                                             r"trainer\.args\.gradient_checkpointing: gradient_checkpointing is set "
                                             r"by trainer\.gradient_checkpointing; set that instead of passing it "
                                             r"through trainer\.args"),
    "a GRPO field another option sets, passed through args": (
        ["+trainer.args.max_completion_length=64"],
        r"trainer\.args\.max_completion_length: max_completion_length is set by budget\.cap; set that instead"),
    "transformers' new name of an option passed through args": (
        ["+trainer.args.activation_checkpointing=true"],
        r"trainer\.args\.activation_checkpointing: activation_checkpointing is set by trainer\.gradient_checkpointing; "
        r"set that instead"),
    "unknown top-level key": (["+sed=1"], r"sed: unknown key; the train config has model, task, .*seed"),
    "unknown grader": (["grader=nosuch"],
                       r"grader=nosuch: no such option in the group grader \(conf/grader/\); its options are custom, exact, "
                       r"math, number"),
    "typo in a multi-select group": (["rewards=[outcome,mc_progres]"],
                                     r"rewards=mc_progres: no such option in the group rewards .*likelihood_progress, "
                                     r"mc_progress, mrt_prefix_outcome, outcome"),
    "group does not divide batch": (["trainer.num_generations=3"],
                                    r"trainer\.num_generations=3 does not divide the generation batch .*= 4\); make "
                                    r"the batch a multiple of the group size"),
    "rollout mode unknown": (["rollout.mode=foo"],
                             r"rollout\.mode='foo' is not one of single, episodes, budget_forcing"),
    "on_reward_error unknown": (["on_reward_error=skip"], r"on_reward_error='skip': use zero .* or nan"),
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
    "health unknown option": (["+health.windw=5"], r"health\.windw: unknown key; the section health has enabled, window, "),
    "credit unknown": (["objective.credit=max"], r"objective\.credit='max' is not supported; use one of sum, min"),
    "min credit with a discount": (["objective.credit=min", "objective.gamma=0.9"],
                                   r"objective\.credit='min' takes no discount: objective\.gamma=0\.9 must be 1"),
    "held-out problems the warm start was trained on": (
        ["model=tiny", "+task.task.test_fraction=0.5"],
        r"task\.task\.test_fraction=0\.5 is larger than the warm start's model\.tiny\.test_fraction=0\.2: some "
        r"held-out problems would be problems the tiny policy was fine-tuned on"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_is_explained_before_any_model_loads(case, tmp_path, no_model):
    from metarl.trainer.run import run

    overrides, match = CASES[case]
    with pytest.raises(ConfigError, match=match):
        run(compose_train(tmp_path, *overrides))  # composition itself may raise (types, unknown keys)
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
    run_expecting(compose_train(tmp_path, *base, "grader=custom", "grader._target_=nosuch.grade"),
                  r"grader: Error locating target 'nosuch\.grade'")
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
    ("seed=abc", r"seed: Value 'abc' .* to Integer; set it like seed=0"),
    ("threads=-1", r"threads=-1 must be a whole number >= 0; set it like threads=1"),
    ("trainer.save_total_limit=many", r"trainer\.save_total_limit: Value 'many' .*; set it like "
                                      r"trainer\.save_total_limit=2"),
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


@pytest.mark.parametrize("warm, task", [(0.2, 0.2), (0.5, 0.5), (0.5, 0.2), (0.4, 0.4000000001)])
def test_held_out_split_nested_in_the_warm_starts_passes(warm, task, tmp_path, no_model):
    """A problem is held out when its hash falls below the fraction, so a task holding out no more than the warm
    start does evaluates only on problems the policy never saw (nothing is built: the recipe is only read)."""
    from metarl.tasks import SubsetSumTask
    from metarl.trainer.run import validate

    plan = validate(compose_train(tmp_path, "model=tiny", f"+model.tiny.test_fraction={warm}",
                                  f"+task.task.test_fraction={task}", "task.n_test=8"))
    warm_task = SubsetSumTask(test_fraction=warm)
    seen = {warm_task.problem_key(r["numbers"], r["target"])
            for r in warm_task.generate("train", n=10_000, allow_fewer=True)}
    held_out = {plan.task.problem_key(r["numbers"], r["target"]) for r in plan.test_rows}
    assert len(held_out) == 8 and not held_out & seen


def test_eval_refuses_held_out_problems_the_warm_start_was_trained_on():
    from metarl.eval.run import validate

    cfg = compose("eval", ["model=tiny", "+model.tiny.test_fraction=0.3", "+task.task.test_fraction=0.4",
                           "budgets=[16]", "n=1", "n_questions=4"])
    with pytest.raises(ConfigError, match=r"task\.task\.test_fraction=0\.4 is larger than the warm start's "
                                          r"model\.tiny\.test_fraction=0\.3"):
        validate(cfg)


@pytest.mark.parametrize("overrides, expected", [
    (["segmenter._target_=nosuch"], "segmenter: Error locating target 'nosuch'"),
    (["+rewards.bad._target_=nosuch.fn"], "rewards.bad: Error locating target 'nosuch.fn'"),
    (["objective.alpha=foo"], "objective.alpha: Value 'foo' of type 'str' could not be converted to Float"),
    (["trainer.max_step=5"], "trainer.max_step: unknown key; the section trainer has max_steps,"),
])
def test_metarl_train_cli_exit_code_2_and_message(overrides, expected, tmp_path):
    exe = Path(sys.executable).with_name("metarl-train")
    r = subprocess.run([str(exe), "name=bad", f"run_dir={tmp_path / 'run'}", *SMALL, *overrides],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"metarl-train: configuration error: {expected}" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("trainer, expected", [("cpu", False), ("gpu", True)])
def test_gradient_checkpointing_is_a_trainer_option_that_reaches_grpo(tmp_path, trainer, expected):
    """TRL turns gradient checkpointing on by default; metarl's CPU trainer turns it off (the same gradients, a
    faster step for small models), its GPU trainer on, and ``trainer.gradient_checkpointing`` sets it."""
    from metarl.config import validated
    from metarl.trainer.run import grpo_config

    cfg = compose_train(tmp_path, f"trainer={trainer}", "trainer.use_cpu=true", "trainer.bf16=false",
                        "trainer.report_to=[]")
    assert grpo_config(validated(cfg, "train"), tmp_path).gradient_checkpointing is expected
    cfg = compose_train(tmp_path, f"trainer={trainer}", "trainer.use_cpu=true", "trainer.bf16=false",
                        "trainer.report_to=[]", f"trainer.gradient_checkpointing={str(not expected).lower()}")
    assert grpo_config(validated(cfg, "train"), tmp_path).gradient_checkpointing is (not expected)


def test_the_held_out_check_compares_fractions_as_the_split_does():
    """Fractions closer than the split's resolution (1e-6) hold out the same problems and pass; one step above
    the warm start's threshold is refused."""
    from metarl.config import check_held_out
    from metarl.tasks import SubsetSumTask
    from omegaconf import OmegaConf

    model = OmegaConf.create({"name_or_path": "tiny", "tiny": {"test_fraction": 0.4}})
    check_held_out(model, SubsetSumTask(test_fraction=0.4 + 4e-7))
    with pytest.raises(ConfigError, match="is larger than the warm start's"):
        check_held_out(model, SubsetSumTask(test_fraction=0.400001))
    bad = OmegaConf.create({"name_or_path": "tiny", "tiny": {"test_fraction": 1.5}})
    with pytest.raises(ConfigError, match=r"model\.tiny\.test_fraction=1\.5: test_fraction must lie in \[0, 1\]"):
        check_held_out(bad, SubsetSumTask(test_fraction=0.2))
