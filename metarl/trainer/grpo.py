"""``MetaRLTrainer``: TRL's ``GRPOTrainer`` fed by :mod:`metarl.trainer.step`.

TRL's own hooks carry the step: ``rollout_func`` generates the batch with metarl's engine
(:class:`~metarl.trainer.rollout.Rollout`), the one reward function scores it with the ``Scorer`` and
returns the objective's outcome term (so TRL's logging, NaN handling and gathering apply unchanged), and
one override puts the step's per-token advantages in place of TRL's when dense credit is on. The rows,
streams and scored traces of the step are kept by the trainer (``self.rows`` / ``self.streams`` /
``self.traces``), never in TRL's inputs.
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Any

from accelerate.utils import gather_object
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from trl import GRPOTrainer  # noqa: E402

from metarl.credit import stop_token_ids  # noqa: E402
from metarl.engine import Sampling, prompt_ids_for, prompt_text  # noqa: E402
from metarl.registry import ConfigError  # noqa: E402
from metarl.runlog import RunLog, mark_complete  # noqa: E402
from metarl.scoring import Scorer  # noqa: E402
from metarl.trainer import step  # noqa: E402
from metarl.trainer.callbacks import CompactProgress  # noqa: E402
from metarl.trainer.rollout import Rollout, trainer_backend, trl_output  # noqa: E402


class MetaRLTrainer(GRPOTrainer):
    """GRPO with dense episode rewards. Extra arguments:

    scorer: segments and scores traces (segmenter, rewards, grader, objective; built with the policy's tokenizer).
    rollout: how the batch is generated (:class:`~metarl.trainer.rollout.Rollout`: single, episodes, budget
        forcing; a forced answer at the cap; the backend); default one generation of ``max_completion_length``.
    run_log: where ``metrics.jsonl`` / ``rollouts.jsonl`` go; rollouts_every / rollouts_per_step: how often and
        how many scored traces are written. Callbacks with an ``on_scored_batch(traces, step)`` method see every
        scored training batch (e.g. :class:`~metarl.trainer.callbacks.CalibrationWatch`).
    """

    def __init__(self, *args: Any, scorer: Scorer, rollout: Rollout | None = None, run_log: RunLog | None = None,
                 rollouts_every: int = 10, rollouts_per_step: int = 8, answer_column: str = "answer", **kwargs: Any):
        if scorer.tokenizer is None:
            raise ConfigError("MetaRLTrainer: the scorer has no tokenizer; build it with the policy's "
                              "(Scorer(..., tokenizer=tok)) so episodes get token spans")
        if "reward_funcs" in kwargs or "rollout_func" in kwargs:
            raise ConfigError("MetaRLTrainer: rewards go in the scorer (a TRL reward function works there unchanged: "
                              "rewards={mine: my_module.my_fn}) and generation in `rollout`")
        self.scorer, self.run_log, self.answer_column = scorer, run_log, answer_column
        self.rollouts_every, self.rollouts_per_step = rollouts_every, rollouts_per_step
        _check_sampling(kwargs.get("args"))
        cap = getattr(kwargs.get("args"), "max_completion_length", None) or 256
        self.rollout = rollout or Rollout(cap=cap, force_answer=False, prover=scorer.prover)
        # this step, kept by the trainer: the dataset rows (in TRL's order), prompts as text, streams, scored traces
        self.rows: list[dict[str, Any]] = []
        self.prompts: list[str] = []
        self.streams: list[Any] = []
        self.traces: list[Any] = []

        def outcome(prompts, completions, **kwargs) -> list[float]:  # TRL's reward function: score, then the term
            return [scorer.outcome_term(t) for t in self._score()]

        outcome.__name__ = scorer.objective.outcome_reward or "outcome"
        callbacks = list(kwargs.pop("callbacks", None) or []) + ([RunLogCallback(run_log)] if run_log else [])
        super().__init__(*args, reward_funcs=[outcome], rollout_func=self._generate_streams, callbacks=callbacks,
                         **kwargs)
        if self.rollout.mode == "prefix_branching" and self.args.per_device_train_batch_size % self.num_generations:
            raise ConfigError(f"rollout.mode=prefix_branching branches each group from one prefix, so a group must "
                              f"not be split across processes: trainer.per_device_train_batch_size="
                              f"{self.args.per_device_train_batch_size} must be a multiple of trainer.num_generations="
                              f"{self.num_generations}")
        if self.pop_callback(ProgressCallback) is not None:  # a bar with a few numbers, not every log printed
            self.add_callback(CompactProgress)

    @property
    def dense_credit(self) -> bool:
        return step.dense_credit(self.scorer.objective, self.scorer)

    # ------------------------------------------------------------------ the step, in TRL's order
    def _generate_and_score_completions(self, inputs):
        self.rows = [dict(x) for x in inputs]
        out = super()._generate_and_score_completions(inputs)  # -> _generate_streams, then the reward (_score)
        mode = "train" if self.model.training else "eval"
        n = self.num_generations if mode == "train" else self.num_generations_eval
        batch = step.make_batch(gather_object(self.traces), self.scorer, self._stop_ids, n)
        for k, v in step.step_metrics(batch, self.scorer, self.rollout.cap).items():
            self._metrics[mode][k].append(v)
        if mode != "train":
            return out
        if self.dense_credit:
            width = out["completion_ids"].shape[1]
            local = len(self.traces)
            rows = slice(self.accelerator.process_index * local, (self.accelerator.process_index + 1) * local)
            out["advantages"] = step.advantages(batch, self.scorer.objective, width)[rows, :width].to(
                self.accelerator.device)
        at = self.state.global_step + 1
        for cb in self.callback_handler.callbacks:
            if hasattr(cb, "on_scored_batch") and self.accelerator.is_main_process:
                cb.on_scored_batch(batch.traces, at)
        if self.run_log is not None and self.accelerator.is_main_process and self.rollouts_every > 0 \
                and (at == 1 or at % self.rollouts_every == 0):
            self.run_log.append("rollouts.jsonl", step.rollout_records(self.traces, at, self.rollouts_per_step))
        return out

    def _generate_streams(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        """TRL's ``rollout_func``: this step's rows generated by the engine."""
        tok = self.scorer.tokenizer
        texts = [prompt_text(tok, p) for p in prompts]
        answers = [r.get(self.answer_column) for r in self.rows]
        with trainer_backend(self, self.rollout.backend, self.rollout.batch_size) as backend:
            self.streams = self.rollout.generate(backend, [prompt_ids_for(tok, p) for p in prompts],
                                                 Sampling(float(self.temperature), float(self.top_p)), texts, answers)
        self.prompts = texts
        return trl_output(self.streams)

    def _score(self) -> list[Any]:
        """Segment, grade and reward this step's traces with the policy (and its engine, for estimators that ask)."""
        self.traces = step.traces_of(self.rows, self.streams, self.prompts, self.answer_column)
        engine = any(r.needs_engine for r in self.scorer.rewards)
        with (trainer_backend(self, self.rollout.backend, self.rollout.batch_size) if engine
              else contextlib.nullcontext()) as backend:
            self.scorer.score(self.traces, model=self.accelerator.unwrap_model(self.model), backend=backend,
                              state={"global_step": self.state.global_step})
        return self.traces

    @functools.cached_property
    def _stop_ids(self) -> frozenset[int]:
        """Token ids that end a completion (EOS, pad): the stop step of :func:`metarl.credit.split_stop_tokens`."""
        return stop_token_ids(self.scorer.tokenizer, self.accelerator.unwrap_model(self.model))


def _check_sampling(args: Any) -> None:
    """Refuse GRPOConfig sampling options the engine does not apply (it samples with temperature and top_p)."""
    neutral = {"top_k": (None, 0), "min_p": (None, 0.0), "repetition_penalty": (None, 1.0),
               "generation_kwargs": (None, {})}
    for key, values in neutral.items():
        value = getattr(args, key, None)
        if value not in values:
            raise ConfigError(f"trainer.args.{key}={value!r}: every rollout is generated by metarl's engine, which "
                              f"samples with trainer.temperature and trainer.top_p only; drop {key}")


class RunLogCallback(TrainerCallback):
    """Writes every training log to ``metrics.jsonl`` and marks finished checkpoints complete."""

    def __init__(self, run_log: RunLog):
        self.run_log = run_log

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "train_runtime" in logs:
            return
        self.run_log.append("metrics.jsonl", {"step": state.global_step, **logs})

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            ckpt = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
            if os.path.isdir(ckpt):
                mark_complete(ckpt)
