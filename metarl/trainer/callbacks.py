"""Trainer callbacks: held-out evaluation during training (for learning curves and token efficiency)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

from metarl.runlog import RunLog


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
