"""Trainer callbacks: held-out evaluation during training (for learning curves and token efficiency), the
training-health monitors of :mod:`metarl.monitors` run on every log, the meta-prover's calibration (a pre-flight
verdict on the first scored batch and the ``mu_calibration`` monitor), and a compact progress bar that names the
objective."""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from metarl.monitors import PREFIX, HealthConfig, Monitor, MuCalibration, build_calibration_monitor, build_monitors
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


class LoadAwareThreads(TrainerCallback):
    """Before every training step, fit torch's thread count to the CPUs other processes left free during the last
    one (:func:`metarl.utils.load_aware_threads`, at most ``cap``): a job started beside a run no longer makes each
    step wait on descheduled threads, and the run takes its threads back when the job ends. Each change is logged.
    """

    def __init__(self, cap: int) -> None:
        from metarl.utils import CpuMeter, available_cpus

        self.cpus, self.meter = available_cpus(), CpuMeter()
        self.cap = min(cap, self.cpus)

    def on_step_begin(self, args, state, control, **kwargs):
        import torch

        from metarl.utils import load_aware_threads

        others = self.meter.others()
        if others is None or self.cap <= 1:
            return
        n = load_aware_threads(self.cap, self.cpus - others)
        if n != torch.get_num_threads():
            log.warning("threads: %d -> %d at step %d (other processes kept %.1f of %d CPUs busy)",
                        torch.get_num_threads(), n, state.global_step, others, self.cpus)
            torch.set_num_threads(n)


def health_callbacks(cfg: HealthConfig | Mapping[str, Any] | None) -> list[HealthCallback]:
    """``[HealthCallback]`` for the ``health:`` config block, ``[]`` when ``health.enabled`` is false."""
    config = cfg if isinstance(cfg, HealthConfig) else HealthConfig.from_mapping(cfg)
    return [HealthCallback(build_monitors(config))] if config.enabled else []


class CalibrationWatch(TrainerCallback):
    """The meta-prover's calibration during training, for recipes whose traces carry Ĵ (``mc_progress``, the
    termination baseline). The trainer hands it every scored training batch (:meth:`on_scored_batch`): the first
    one with Ĵ gets the pre-flight verdict (:func:`metarl.calibration.preflight`: logged once, as a warning when μ
    is uninformative, and written to ``calibration_preflight.json`` in the run directory), and every one feeds the ``mu_calibration`` monitor (:class:`metarl.monitors.MuCalibration`), which warns once when it
    trips. On each training log its latest statistics are added as ``health/mu_calibration/...`` (so they land in
    ``metrics.jsonl``; pass it before the metrics writer, like :class:`HealthCallback`)."""

    def __init__(self, monitor: MuCalibration, thresholds: Any = None, run_dir: Any = None,
                 episode_correct: Callable[[Any, Any], Any] | None = None, m: int | None = None) -> None:
        self.monitor, self.thresholds, self.run_dir = monitor, thresholds, run_dir
        self.episode_correct, self.m = episode_correct, m
        self.checked = False
        self.latest: dict[str, float] = {}
        self.warned = False

    @classmethod
    def install(cls, scorer: Any, config: HealthConfig | Mapping[str, Any] | None,
                run_dir: Any = None) -> CalibrationWatch | None:
        """A watch of ``scorer``'s batches when its rewards estimate Ĵ (an ``mc_progress`` reward) and
        ``health.calibration`` is on; None otherwise. The trainer calls :meth:`on_scored_batch` with every scored
        training batch (on the main process)."""
        from metarl.calibration import Thresholds, grader_correctness

        c = config if isinstance(config, HealthConfig) else HealthConfig.from_mapping(config)
        # a Monte Carlo estimate of J (it records J and samples the policy): not the exact oracle
        mc = next((r for r in scorer.rewards if r.records_J and r.needs_engine), None)
        if not (c.enabled and c.calibration) or mc is None:
            return None
        correct = grader_correctness(scorer.grader, scorer.extract_answer)
        return cls(build_calibration_monitor(c, correct), Thresholds(c.calibration_correlation,
                                                                     c.calibration_verify_after_correct),
                   run_dir, correct, getattr(mc.fn, "m", None))

    def on_scored_batch(self, traces: Sequence[Any], step: int) -> None:
        """One scored training batch (:class:`metarl.trainer.grpo.MetaRLTrainer` calls this every step): the
        pre-flight verdict on the first with Ĵ, then the monitor."""
        from metarl.calibration import json_safe, preflight

        if not self.checked:
            result = preflight(traces, self.thresholds, self.episode_correct, m=self.m)
            if result is not None:
                self.checked = True
                cal, message = result
                (log.info if cal.informative else log.warning)("%s", message)
                if self.run_dir is not None:
                    import json
                    from pathlib import Path

                    Path(self.run_dir, "calibration_preflight.json").write_text(
                        json.dumps(json_safe({"step": step, "message": message, "calibration": cal.to_dict()}),
                                   indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        stats = self.monitor.update(step, traces)
        if stats:
            self.latest = stats
        if self.monitor.status.tripped and not self.warned:
            self.warned = True
            log.warning("training health: %s tripped at step %d: %s", self.monitor.name, self.monitor.status.step,
                        self.monitor.status.message)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "train_runtime" in logs or not self.latest or not any(k.startswith("metarl/") for k in logs):
            return
        logs.update({f"{PREFIX}{self.monitor.name}/{k}": v for k, v in self.latest.items()})


class CompactProgress(ProgressCallback):
    """The training progress bar (one metarl bar, :func:`metarl.utils.progress_bar`: steps, rate, ETA) with the
    latest log's headline numbers as its postfix, each labelled, in place of transformers' print of every log (a
    dict of some seventy keys per step)::

        training: 40%|####      | 2/5 [00:03<00:04, 1.6s/step, objective=1.56 acc=0.125 tok=79.7 ep=2.88]

    ``objective`` is the mean total return the advantages are built from (``metarl/reward/total``: the episode
    rewards' weighted sum plus alpha times the outcome term, :meth:`metarl.scoring.Scorer.totals`), not TRL's
    ``reward`` (the outcome term alone); ``acc`` the outcome accuracy, ``tok`` the mean thinking tokens, ``ep`` the
    episodes per trace. With ``verbose`` (:func:`metarl.utils.verbose`)
    every log dict is printed above the bar as well. Every logged value is in ``metrics.jsonl``."""

    SHOWN = (("objective", ("metarl/reward/total",)), ("acc", ("metarl/outcome_accuracy",)),
             ("tok", ("metarl/tokens/mean",)), ("ep", ("metarl/episodes_per_trace",)))

    def on_train_begin(self, args, state, control, **kwargs):
        from metarl.utils import progress_bar

        if state.is_world_process_zero:
            self.training_bar = progress_bar(total=state.max_steps, desc="training", unit="step")
        self.current_step = 0

    @classmethod
    def postfix(cls, logs: Mapping[str, Any]) -> str:
        """``objective=1.56 acc=0.125 tok=79.7 ep=2.88`` from a training log (the keys it has)."""
        shown = []
        for name, keys in cls.SHOWN:
            value = next((logs[k] for k in keys if isinstance(logs.get(k), int | float)
                          and not isinstance(logs.get(k), bool)), None)
            if value is not None:
                shown.append(f"{name}={float(value):.3g}")
        return " ".join(shown)

    def on_log(self, args, state, control, logs=None, **kwargs):
        from metarl.utils import verbose

        if not state.is_world_process_zero or self.training_bar is None or not logs:
            return
        if verbose():
            super().on_log(args, state, control, logs=logs, **kwargs)
        if "train_runtime" in logs:  # printed under the finished bar (on_train_end)
            self.summary = f"[metarl] trained {state.global_step} steps in {float(logs['train_runtime']):.0f} s"
            return
        shown = self.postfix(logs)
        if shown:
            self.training_bar.set_postfix_str(shown, refresh=False)

    def on_train_end(self, args, state, control, **kwargs):
        super().on_train_end(args, state, control, **kwargs)
        summary, self.summary = getattr(self, "summary", None), None
        if summary and state.is_world_process_zero:
            print(summary, flush=True)
