"""The tiny warm-started policy (``model=tiny``): a small Llama taught the attempt / verify / revise format.

Recipe: the character tokenizer and a small ``LlamaForCausalLM`` from :mod:`metarl.models.tiny`;
synthetic traces of a noisy solver (:mod:`metarl.tasks.subset_sum_traces`) on the train split of the
built-in subset-sum task, plus forced-answer examples for the meta-prover (``…<answer>`` -> ``8+12</answer>``);
supervised fine-tuning with TRL's ``SFTTrainer`` on ``prompt``/``completion`` pairs (loss on the completion
only). The result is saved with ``save_pretrained`` under ``$METARL_CACHE/tiny-<hash>`` (default
``~/.cache/metarl``), where the hash covers the fields of :class:`TinyRecipe`, :data:`RECIPE_VERSION` and
the first synthetic examples: a changed recipe builds a new policy, an unchanged one is loaded from the cache.
The build writes to a temporary directory and renames it into place, so an interrupted build never
leaves a half-written policy behind.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch

from metarl.models.tiny import build_char_tokenizer, build_tiny_model
from metarl.rewards.budget import budget_prompt
from metarl.tasks.subset_sum import SubsetSumTask
from metarl.tasks.subset_sum_traces import FORCED_RULES, MID_BLOCKS, NoisySolver, SolverConfig
from metarl.utils import checkpointing_key, progress_bar, quiet_libraries, set_threads, verbose

logger = logging.getLogger(__name__)

#: Bump when the code that builds the policy changes in a way neither the recipe fields nor the data
#: fingerprint (see :meth:`TinyRecipe.key`) capture, e.g. the model code or the SFT settings.
RECIPE_VERSION = 2
#: How many leading SFT examples the cache key hashes (a change in the task or solver code shows there).
FINGERPRINT_EXAMPLES = 64
DEFAULT_CACHE = "~/.cache/metarl"


_NOT_IN_KEY = frozenset({"threads"})
#: Fields added after :data:`RECIPE_VERSION` 2 that enter the cache key only when they differ from their
#: defaults, so that the recipes built before them keep their keys (and cached policies).
_KEY_IF_NOT_DEFAULT = frozenset({"forced_mid_episode", "forced_rejected_right", "forced_mid_blocks",
                                 "length_sentence", "length_targets"})


@dataclass(frozen=True)
class TinyRecipe:
    """Everything that determines the tiny policy; every field but ``threads`` enters the cache key (those of
    ``_KEY_IF_NOT_DEFAULT`` only when they differ from their defaults, so that the policies built before them keep their keys).

    The defaults were chosen on this project's 2-core CPU: 1800 SFT steps of 8 examples give a policy that
    follows the format, verifies its attempts far better than chance and solves roughly a fifth of held-out
    level-2 problems per sample (see ``bench/tiny_policy_report.py``).

    Half of the examples teach the meta-prover's forced answer (7200, beside 7200 whole traces as before: with
    fewer traces the policy verified worse), 70% of those after the whole trace, and the
    forced answer restates the last candidate stated (``forced_rule="last"``), on a 96-wide model: so forced
    to answer, the policy answers what its stream would (Ĵ_last tracks the outcome, and a verification does not
    move Ĵ). With 20% forced answers cut anywhere, the "believed" rule and a 64-wide model, the policy could
    not copy an answer back across a verify block, and Monte Carlo progress punished verifying a right answer
    (``metarl-calibrate``; the variants tried are in docs/findings.md section 7).

    The solver it imitates gives up too early: after an "incorrect" verdict it revises only half of the
    time (``p_continue=0.5``, up to ``max_attempts=6``). So the warm-started policy under-uses its
    test-time budget in a way that holds on every problem, which is what meta-RL should fix and what a
    held-out evaluation can see. (With ``p_continue=0.85, max_attempts=3`` the policy already revised
    as much as a 128-token cap allowed; RL then mostly memorised the ~500 training problems of level 2,
    improving on them and not on held-out ones.)
    """

    # task and synthetic data
    difficulty: int = 2
    test_fraction: float = 0.2
    n_examples: int = 14400
    forced_fraction: float = 0.5
    #: share of forced-answer examples cut at the end of the whole trace (None: every boundary alike)
    forced_final: float | None = 0.7
    #: what a forced answer states (:meth:`NoisySolver.forced_answer`): "believed" | "last"
    forced_rule: str = "last"
    #: share of forced-answer examples cut at a random character (= token of the character tokenizer) strictly
    #: inside an episode, as the cap cuts a stream, rather than at a boundary; their answer follows
    #: ``forced_rule`` on the stream up to the cut episode's start (a cut inside a verify block answers the
    #: candidate it verifies). 0 (the default) draws nothing, so the data and the cache key stay as before.
    forced_mid_episode: float = 0.0
    #: which episodes those cuts fall inside: "any" or "verify" (verify blocks only, as a cap cuts a verification)
    forced_mid_blocks: str = "any"
    #: share of forced-answer examples made right after a slip that rejected a right candidate, answering it
    #: (:meth:`NoisySolver.rejected_right_example`); 0 (the default) draws nothing, as ``forced_mid_episode``.
    forced_rejected_right: float = 0.0
    #: share of whole-trace examples whose prompt carries L1's length sentence ("Think for N tokens." or "Think for
    #: maximum N tokens.", as :func:`metarl.rewards.budget.budget_prompt` writes it for LCPO training), with N drawn
    #: from ``length_targets`` independently of the trace: the sentence becomes familiar without saying anything, so
    #: LCPO, not SFT, has to teach the policy to read N. 0 (the default) draws nothing, as ``forced_mid_episode``.
    length_sentence: float = 0.0
    length_targets: tuple[int, ...] = (32, 64, 128, 256)
    p_correct: float = 0.3
    p_slip: float = 0.1
    p_continue: float = 0.5
    max_attempts: int = 6
    # model
    hidden_size: int = 96
    num_layers: int = 2
    num_heads: int = 4
    max_position_embeddings: int = 512
    init_std: float = 0.08
    # supervised fine-tuning
    learning_rate: float = 3e-3
    batch_size: int = 8
    epochs: float = 1.0
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    adam_beta2: float = 0.99
    max_length: int = 400
    seed: int = 0
    #: torch intra-op threads while training (0: as the process has them, i.e. the run's ``threads``); speed
    #: only (1 and 2 threads gave identical weights on every machine checked), so it is left out of the cache key.
    threads: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "length_targets", tuple(int(n) for n in self.length_targets))  # a Hydra list, too
        if not 0.0 <= self.length_sentence <= 1.0:
            raise ValueError(f"length_sentence must lie in [0, 1], got {self.length_sentence}")
        if not self.length_targets or min(self.length_targets) < 1:
            raise ValueError(f"length_targets must be positive token counts, got {list(self.length_targets)}")
        if not 0.0 <= self.forced_fraction <= 1.0:
            raise ValueError(f"forced_fraction must lie in [0, 1], got {self.forced_fraction}")
        if self.forced_final is not None and not 0.0 <= self.forced_final <= 1.0:
            raise ValueError(f"forced_final must lie in [0, 1] (or be None), got {self.forced_final}")
        for key in ("forced_mid_episode", "forced_rejected_right"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ValueError(f"{key} must lie in [0, 1], got {getattr(self, key)}")
        if self.forced_rejected_right > 0 and self.forced_rule != "last":
            raise ValueError("forced_rejected_right answers the rejected candidate, which only forced_rule='last' "
                             f"does; got forced_rule={self.forced_rule!r}")
        if self.forced_mid_blocks not in MID_BLOCKS:
            raise ValueError(f"forced_mid_blocks {self.forced_mid_blocks!r}: use one of {', '.join(MID_BLOCKS)}")
        if self.forced_rule not in FORCED_RULES:
            raise ValueError(f"forced_rule {self.forced_rule!r}: use one of {', '.join(FORCED_RULES)}")
        if self.n_examples < 1 or self.batch_size < 1 or self.epochs <= 0:
            raise ValueError("n_examples, batch_size and epochs must be positive")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be a multiple of num_heads {self.num_heads}")
        self.solver_config()  # validates the solver probabilities

    def solver_config(self) -> SolverConfig:
        return SolverConfig(self.p_correct, self.p_slip, self.p_continue, self.max_attempts)

    def task(self) -> SubsetSumTask:
        return SubsetSumTask(difficulty=self.difficulty, test_fraction=self.test_fraction)

    def key(self) -> str:
        """The cache directory's name: a hash of the recipe fields (but ``threads``), :data:`RECIPE_VERSION`
        and the first :data:`FINGERPRINT_EXAMPLES` SFT examples, so that an edit to the task's prompt or
        the solver's trace format also builds a new policy."""
        default = {f.name: f.default for f in fields(self)}
        fields_ = {k: v for k, v in asdict(self).items()
                   if k not in _NOT_IN_KEY and not (k in _KEY_IF_NOT_DEFAULT and v == default[k])}
        head = sft_examples(replace(self, n_examples=min(self.n_examples, FINGERPRINT_EXAMPLES)))
        blob = json.dumps({"version": RECIPE_VERSION, **fields_, "data": head}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_recipe(recipe: TinyRecipe | None = None, **overrides: Any) -> TinyRecipe:
    """``recipe`` (default :class:`TinyRecipe`) with ``overrides``; an unknown name raises a ``TypeError``
    that lists the recipe's fields."""
    base = recipe or TinyRecipe()
    known = {f.name for f in fields(TinyRecipe)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise TypeError(f"unknown tiny-policy recipe field(s) {bad}; fields are {sorted(known)}")
    return replace(base, **overrides)


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$METARL_CACHE``, else ``~/.cache/metarl``."""
    return Path(cache_dir or os.environ.get("METARL_CACHE") or DEFAULT_CACHE).expanduser()


def policy_dir(recipe: TinyRecipe, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the policy for ``recipe`` lives (whether or not it has been built)."""
    return cache_root(cache_dir) / f"tiny-{recipe.key()}"


def sft_examples(recipe: TinyRecipe) -> list[dict[str, str]]:
    """The synthetic SFT data: ``prompt``/``completion`` pairs over the task's train split.

    A ``1 - forced_fraction`` share are whole solver traces; the rest are forced-answer examples (the
    prompt ends with a trace prefix and ``"<answer>"``; a ``forced_mid_episode`` share of those cut inside an
    episode). A ``length_sentence`` share of the whole traces get L1's length sentence with a random N.
    Deterministic given the recipe.
    """
    task = recipe.task()
    rng = random.Random(recipe.seed)
    problems = _train_problems(recipe.difficulty, recipe.test_fraction, recipe.seed)
    solver = NoisySolver(task.level(), recipe.solver_config())
    out: list[dict[str, str]] = []
    for _ in range(recipe.n_examples):
        problem = rng.choice(problems)
        trace = solver.trace(problem, rng)
        if rng.random() < recipe.forced_fraction:
            if recipe.forced_rejected_right > 0 and rng.random() < recipe.forced_rejected_right:
                out.append(solver.rejected_right_example(problem, rng))
                continue
            out.append(solver.forced_answer_example(trace, problem, rng, p_final=recipe.forced_final,
                                                    rule=recipe.forced_rule, p_mid=recipe.forced_mid_episode,
                                                    mid_blocks=recipe.forced_mid_blocks))
        else:
            prompt = trace.prompt
            if recipe.length_sentence > 0 and rng.random() < recipe.length_sentence:
                prompt = budget_prompt(prompt, rng.choice(recipe.length_targets), rng.choice(("exact", "max")))
            out.append({"prompt": prompt, "completion": trace.completion})
    return out


@functools.lru_cache(maxsize=8)
def _train_problems(difficulty: int, test_fraction: float, seed: int, cap: int = 20_000) -> tuple[dict, ...]:
    """Up to ``cap`` distinct train problems of the level (all of them when it has fewer); cached, as the
    cache key needs them on every lookup."""
    task = SubsetSumTask(difficulty=difficulty, test_fraction=test_fraction)
    return tuple(task.generate("train", cap, seed=seed, allow_fewer=True))


def reinit_weights(model: torch.nn.Module, std: float, seed: int) -> None:
    """Draw every weight matrix (embeddings, attention, MLP) from N(0, std²); norms keep their ones.

    Hugging Face's default std of 0.02 suits wide models; a 64-wide model starts with near-uniform
    attention and needs several times more SFT steps before it copies numbers from the prompt (in our
    runs, 560 steps at std 0.02 gave 31% legal attempts, at std 0.06–0.1 about 80%).
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)


class _LossLog:
    """Collects the training loss the Trainer logs (for ``metrics.json`` and the tests)."""

    def __init__(self, label: str = "tiny policy") -> None:
        self.history: list[tuple[int, float]] = []
        self.label = label

    def callback(self):
        from transformers import TrainerCallback

        log = self

        class Cb(TrainerCallback):
            def on_log(self, args, state, control, logs=None, **kwargs):
                if logs and "loss" in logs:
                    log.history.append((state.global_step, float(logs["loss"])))
                    logger.info("%s SFT step %d/%d loss %.4f", log.label, state.global_step, state.max_steps,
                                logs["loss"])

        return Cb()


def step_bar(desc: str):
    """A ``TrainerCallback`` showing one metarl progress bar (:func:`metarl.utils.progress_bar`) over the SFT steps,
    with the latest training loss as its postfix."""
    from transformers import TrainerCallback

    class StepBar(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = progress_bar(total=state.max_steps, desc=desc, unit="step")

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.bar is not None and logs and "loss" in logs:
                self.bar.set_postfix_str(f"loss={float(logs['loss']):.4f}", refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return StepBar()


def quiet_sft(trainer: Any, desc: str, show_progress: bool = True) -> Any:
    """Unless :func:`metarl.utils.verbose`: Hugging Face's per-step bar and the log dicts it prints (or
    ``PrinterCallback``'s) are replaced by one metarl bar (:func:`step_bar`; none without ``show_progress``).
    Returns ``trainer``."""
    if not verbose():
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        trainer.remove_callback(ProgressCallback)
        trainer.remove_callback(PrinterCallback)
        if show_progress:
            trainer.add_callback(step_bar(desc))
    return trainer


def sft_config(recipe: TinyRecipe, output_dir: str, num_examples: int, max_steps: int | None = None,
               show_progress: bool = True, **extra: Any):
    """TRL ``SFTConfig`` for the recipe: completion-only loss, cosine schedule, CPU, fp32, no checkpoints.
    ``extra`` keyword arguments override or add ``SFTConfig`` fields (the SmolLM2 reasoner turns on bf16).

    Batches are drawn at random: grouping examples by length would cut padding, but lengths follow the
    number of rounds, and such uniform batches made the tiny model learn far worse in our runs.
    """
    from trl import SFTConfig

    available = {f.name for f in fields(SFTConfig)}
    steps = max_steps if max_steps is not None else math.ceil(num_examples / recipe.batch_size * recipe.epochs)
    kwargs: dict[str, Any] = dict(
        output_dir=output_dir,
        per_device_train_batch_size=recipe.batch_size,
        num_train_epochs=recipe.epochs,
        max_steps=max_steps if max_steps is not None else -1,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type="cosine",
        weight_decay=recipe.weight_decay,
        adam_beta2=recipe.adam_beta2,
        max_length=recipe.max_length,
        completion_only_loss=True,
        bf16=False,
        fp16=False,
        use_cpu=True,
        seed=recipe.seed,
        data_seed=recipe.seed,
        logging_steps=max(1, min(10, steps // 10)),
        save_strategy="no",
        report_to="none",
        disable_tqdm=not show_progress,
        dataloader_num_workers=0,
    )
    # transformers 5 renamed gradient checkpointing and folded warmup_ratio into a fractional warmup_steps
    kwargs[checkpointing_key(SFTConfig)] = False
    if "warmup_ratio" in available:
        kwargs["warmup_ratio"] = recipe.warmup_ratio
    else:
        kwargs["warmup_steps"] = recipe.warmup_ratio  # a float below 1 is a fraction of the steps
    kwargs.update(extra)
    return SFTConfig(**kwargs)


def train_tiny_policy(recipe: TinyRecipe, out_dir: str | os.PathLike, max_steps: int | None = None,
                      show_progress: bool = True) -> dict[str, Any]:
    """Build the policy for ``recipe`` and ``save_pretrained`` it (model and tokenizer) into ``out_dir``.

    Shows one progress bar over the SFT steps (``show_progress``); Hugging Face's own bar, log dicts and
    deprecation warnings only with :func:`metarl.utils.verbose` (an app's ``verbose=true``).
    Returns metrics: ``loss_history`` (step, loss), ``wall_time_s``, ``num_examples``, ``num_params``.
    ``max_steps`` stops early (for tests); the saved policy is then not the recipe's.
    """
    from datasets import Dataset
    from trl import SFTTrainer

    start = time.perf_counter()
    prev_threads = torch.get_num_threads()
    set_threads(recipe.threads)
    try:
        tok = build_char_tokenizer()
        model = build_tiny_model(len(tok), hidden_size=recipe.hidden_size, num_layers=recipe.num_layers,
                                 num_heads=recipe.num_heads, max_position_embeddings=recipe.max_position_embeddings,
                                 seed=recipe.seed, tokenizer=tok)
        data = Dataset.from_list(sft_examples(recipe))
        reinit_weights(model, recipe.init_std, recipe.seed)
        losses = _LossLog()
        with tempfile.TemporaryDirectory(prefix="metarl-sft-") as scratch, quiet_libraries():
            args = sft_config(recipe, scratch, len(data), max_steps=max_steps, show_progress=show_progress)
            trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                                 callbacks=[losses.callback()])
            quiet_sft(trainer, "warm start SFT", show_progress).train()
            model = trainer.model.cpu().eval()
            out = save_policy(out_dir, model, tok)
        metrics = {
            "wall_time_s": time.perf_counter() - start,
            "loss_history": losses.history,
            "num_examples": len(data),
            "num_params": sum(p.numel() for p in model.parameters()),
            "max_steps": max_steps,
            "threads": torch.get_num_threads(),
        }
        return write_build_records(out, RECIPE_VERSION, recipe, metrics)
    finally:
        torch.set_num_threads(prev_threads)


def save_policy(out_dir: str | os.PathLike, model: Any, tokenizer: Any) -> Path:
    """``save_pretrained`` the model and its tokenizer into ``out_dir`` (created); returns it as a Path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_build_records(out: Path, version: int, recipe: Any, metrics: dict[str, Any]) -> dict[str, Any]:
    """``recipe.json`` (the build's version and recipe fields) and ``metrics.json`` beside a saved policy; returns
    ``metrics``. Every built-in policy's build writes these two files."""
    (out / "recipe.json").write_text(json.dumps({"version": version, **asdict(recipe)}, indent=2))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def tiny_policy_path(cache_dir: str | os.PathLike | None = None, rebuild: bool = False,
                     recipe: TinyRecipe | None = None, **overrides: Any) -> Path:
    """The directory of the tiny policy for the recipe (default :class:`TinyRecipe` with ``overrides``),
    building it first if it is not cached (or if ``rebuild``). Safe against interruption and against
    two processes building at once (see :func:`build_atomically`)."""
    recipe = make_recipe(recipe, **overrides)

    def build(tmp: Path) -> None:
        steps = math.ceil(recipe.n_examples / recipe.batch_size * recipe.epochs)
        logger.info("building the tiny policy into %s (about a minute on a 2-core CPU)", tmp)
        print(f"[metarl] warm start: building the tiny policy ({steps} SFT steps of {recipe.batch_size} synthetic "
              f"traces; cached afterwards)", flush=True)
        metrics = train_tiny_policy(recipe, tmp)
        logger.info("built the tiny policy in %.1f s", metrics["wall_time_s"])
        print(f"[metarl] built the tiny policy in {metrics['wall_time_s']:.0f} s", flush=True)

    return build_atomically(policy_dir(recipe, cache_dir), build, rebuild=rebuild)


def build_atomically(final: Path, build: Callable[[Path], Any], rebuild: bool = False) -> Path:
    """``final``, after ``build(tmp)`` has filled a fresh temporary sibling directory that is then renamed to
    ``final`` (skipped when ``final`` exists, unless ``rebuild``). An interrupted build leaves no ``final``
    behind; two processes building at once each build in their own directory and the first rename wins.
    """
    if final.is_dir() and not rebuild:
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_builds(final)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.building-", dir=final.parent))
    try:
        build(tmp)
        if rebuild and final.is_dir():  # move the old one aside first: `final` is never half-written
            os.rename(final, tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent) + "/old")
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():  # not a lost race with another builder: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        for old in final.parent.glob(f".{final.name}.old-*"):
            shutil.rmtree(old, ignore_errors=True)
    return final


def _remove_stale_builds(final: Path, max_age_s: float = 3600.0) -> None:
    """Delete temporary build directories of ``final`` left by builds killed over ``max_age_s`` ago."""
    now = time.time()
    for d in final.parent.glob(f".{final.name}.building-*"):
        try:
            if now - d.stat().st_mtime > max_age_s:
                shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def load_tiny_policy(path: str | os.PathLike | None = None, device: str | torch.device | None = None,
                     cache_dir: str | os.PathLike | None = None, **overrides: Any):
    """``(model, tokenizer)`` of the tiny policy: from ``path`` if given, else from the cache (built if
    needed, recipe ``overrides`` as in :func:`tiny_policy_path`). The model is in eval mode."""
    if path is None:
        path = tiny_policy_path(cache_dir=cache_dir, **overrides)
    elif overrides:
        raise TypeError("pass either a policy path or recipe overrides, not both")
    return load_saved_policy(path, device, builder="tiny_policy_path()")


def load_saved_policy(path: str | os.PathLike, device: str | torch.device | None = None, *, builder: str) -> tuple:
    """``(model, tokenizer)`` saved by :func:`save_policy` under ``path``: float32, eval mode, the tokenizer
    padding on the left; ``builder`` names what builds one (for the error when ``path`` holds none)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} holds no saved policy (no config.json); call {builder} to build one")
    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    if device is not None:
        model = model.to(device)
    return model.eval(), tok
