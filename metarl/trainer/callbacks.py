"""Trainer callbacks: held-out evaluation during training (for learning curves and token efficiency) and the
training-health monitors of :mod:`metarl.monitors` run on every log."""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from transformers import TrainerCallback

from metarl.monitors import PREFIX, HealthConfig, Monitor, build_monitors
from metarl.runlog import RunLog

log = logging.getLogger("metarl")


class HeldOutCurve(TrainerCallback):
    """Every ``every`` steps, evaluate the policy on held-out problems and append one line per budget to
    ``eval/curve.jsonl``: ``{step, train_tokens, budget, accuracy, accuracy_se, tokens, ...}``, where
    ``train_tokens`` is TRL's count of prompt + completion tokens processed so far."""

    def __init__(self, evaluate: Callable[[Any], dict[int, dict[str, Any]]], run_log: RunLog, every: int):
        self.evaluate, self.run_log, self.every = evaluate, run_log, every

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every <= 0 or state.global_step % self.every or not state.is_world_process_zero:
            return
        results = self.evaluate(model)
        self.run_log.append("eval/curve.jsonl", [
            {"step": state.global_step, "train_tokens": int(state.num_input_tokens_seen), "budget": b,
             **{k: v for k, v in r.items() if k not in ("correct", "traces")}}
            for b, r in results.items()])


class HealthCallback(TrainerCallback):
    """Runs the monitors on every training log: adds their ``health/...`` statistics to the logs and warns once per
    monitor when it trips. It must come before the callback that writes ``metrics.jsonl`` (pass it in the
    trainer's ``callbacks``; :class:`metarl.trainer.grpo.MetaRLTrainer` appends its metrics writer after them)."""

    def __init__(self, monitors: Sequence[Monitor]) -> None:
        self.monitors = list(monitors)
        self.warned: set[str] = set()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs:
            return
        if not any(k in logs for m in self.monitors for k in m.keys):  # e.g. an evaluation log (eval_* keys)
            return
        added: dict[str, float] = {}
        for m in self.monitors:
            added.update({f"{PREFIX}{m.name}/{k}": v for k, v in m.update(state.global_step, logs).items()})
            if m.status.tripped and m.name not in self.warned:
                self.warned.add(m.name)
                if state.is_world_process_zero:
                    log.warning("training health: %s tripped at step %d: %s", m.name, m.status.step,
                                m.status.message)
        logs.update(added)


def health_callbacks(cfg: Mapping[str, Any] | None) -> list[HealthCallback]:
    """``[HealthCallback]`` for the ``health:`` config block, ``[]`` when ``health.enabled`` is false."""
    config = HealthConfig.from_mapping(cfg)
    return [HealthCallback(build_monitors(config))] if config.enabled else []
