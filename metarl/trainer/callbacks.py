"""Trainer callbacks: held-out evaluation during training (for learning curves and token efficiency), the
training-health monitors of :mod:`metarl.monitors` run on every log, and a compact progress bar."""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

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


class CompactProgress(ProgressCallback):
    """The training progress bar, with a few numbers of the latest log as its postfix (reward, outcome accuracy,
    mean completion tokens, episodes per trace), in place of transformers' print of every log (a dict of some
    seventy keys per step). Every logged value is in ``metrics.jsonl``."""

    SHOWN = (("reward", "reward"), ("acc", "metarl/outcome_accuracy"), ("tokens", "metarl/tokens/mean"),
             ("episodes", "metarl/episodes_per_trace"))

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        if "train_runtime" in logs:
            self.training_bar.write(f"[metarl] trained {state.global_step} steps in {float(logs['train_runtime']):.0f} s")
            return
        shown = {name: f"{float(logs[key]):.3g}" for name, key in self.SHOWN
                 if isinstance(logs.get(key), int | float) and not isinstance(logs.get(key), bool)}
        if shown:
            self.training_bar.set_postfix(shown, refresh=False)

