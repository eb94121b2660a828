"""``MetaRLTrainer``: TRL's ``GRPOTrainer`` with episode segmentation, dense episode rewards and a
(B, T) per-token advantage.

After TRL generates a batch, every completion becomes a ``Trace``; the ``Scorer`` segments it and scores
every episode (model-based estimators reuse the policy, batched over the whole batch); the objective's
outcome term is returned to TRL as the single reward column (so TRL's logging, NaN handling and gathering
apply unchanged). Then, if dense credit is on, the per-trace episode rewards are gathered from all
processes, ``metarl.credit.build_advantages`` turns them into per-token advantages with group
normalisation over the *global* batch, and each process keeps its own rows. TRL's loss (grpo, dr_grpo,
dapo, ..., clipping, KL) consumes the (B, T) tensor as is.

With dense credit off (no episode reward in the objective and the group baseline) nothing of TRL's
advantage is touched: the trainer reduces exactly to TRL GRPO.
"""
from __future__ import annotations

import functools
import math
import os
from collections import defaultdict
from typing import Any

import torch
from accelerate.utils import gather, gather_object
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

from trl import GRPOTrainer  # noqa: E402

from metarl.credit import STOP_KIND, build_advantages, split_stop_tokens, stop_token_ids  # noqa: E402
from metarl.rewards.obj1 import verification_correctness  # noqa: E402
from metarl.runlog import RunLog, mark_complete  # noqa: E402
from metarl.scoring import Scorer, termination_values  # noqa: E402
from metarl.trainer.callbacks import CompactProgress  # noqa: E402
from metarl.trainer.rollout import trainer_backend  # noqa: E402
from metarl.types import Trace  # noqa: E402


TRACE_KEY = "metarl_trace"
"""The key under which :meth:`MetaRLTrainer._calculate_rewards` puts each input's scored ``Trace``."""


def outcome_reward_func(scorer: Scorer):
    """A TRL reward function giving the objective's outcome term for each completion (plain TRL GRPO uses it)."""

    def outcome(prompts, completions, answer, **kwargs):
        texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
        ps = [p if isinstance(p, str) else str(p) for p in prompts]
        targets = kwargs.get("target_tokens") or [None] * len(texts)
        ids = kwargs.get("completion_ids") or [None] * len(texts)
        traces = [Trace(prompt=p, completion=c, answer=None if a is None else str(a), target_tokens=n,
                        completion_ids=i) for p, c, a, n, i in zip(ps, texts, answer, targets, ids)]
        scorer.score(traces)
        return [scorer.outcome_term(t) for t in traces]

    outcome.__name__ = scorer.objective.outcome_reward or "outcome"
    return outcome


class MetaRLTrainer(GRPOTrainer):
    """GRPO with dense episode rewards. Extra arguments:

    scorer: segments and scores traces (segmenter, rewards, grader, objective).
    rollout: a ``metarl.trainer.rollout.Rollout`` (multi-episode / budget forcing / forced answer at the cap),
        or None for TRL's own generation.
    cap: the compute cap C in thinking tokens (for logging; generation enforces it).
    run_log: where ``metrics.jsonl`` / ``rollouts.jsonl`` go; rollouts_every / rollouts_per_step: how often and
        how many scored traces are written.
    generation_backend: ``transformers`` or ``vllm``: the engine backend of the Monte Carlo branches (the
        rollout names its own).
    """

    def __init__(self, *args, scorer: Scorer, rollout=None, cap: int | None = None, run_log: RunLog | None = None,
                 rollouts_every: int = 10, rollouts_per_step: int = 8, answer_column: str = "answer",
                 generation_backend: str = "transformers", **kwargs):
        self.scorer = scorer
        self.generation_backend = generation_backend
        self.cap = cap
        self.run_log = run_log
        self.rollouts_every = rollouts_every
        self.rollouts_per_step = rollouts_per_step
        self.answer_column = answer_column
        kwargs.setdefault("reward_funcs", [outcome_reward_func(scorer)])
        callbacks = list(kwargs.pop("callbacks", None) or [])
        if run_log is not None:
            callbacks.append(RunLogCallback(run_log))
        super().__init__(*args, rollout_func=rollout, callbacks=callbacks, **kwargs)
        if self.pop_callback(ProgressCallback) is not None:  # a bar with a few numbers, not every log printed
            self.add_callback(CompactProgress)
        if scorer.tokenizer is None:
            tok = self.processing_class
            scorer.tokenizer = getattr(tok, "tokenizer", tok)

    # ------------------------------------------------------------------ switches
    @property
    def dense_credit(self) -> bool:
        return bool(self.scorer.dense_rewards) or self.scorer.objective.termination_baseline

    # ------------------------------------------------------------------ generation / scoring hooks
    # State flows through TRL's own inputs: the gold answer is each input's `answer` column, the rollout's
    # extra fields (thinking_tokens, forced) are merged into the inputs by TRL, and each scored trace goes back
    # into its input under TRACE_KEY, where this hook reads it after TRL's scoring.
    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        traces = [x[TRACE_KEY] for x in inputs]
        mode = "train" if self.model.training else "eval"
        summaries = gather_object([self._summary(t) for t in traces])
        self._log_trace_metrics(summaries, mode)
        if mode == "train" and self.dense_credit:
            out["advantages"] = self._dense_advantages(summaries, out["completion_ids"].shape[1], mode)
        if mode == "train" and self.run_log is not None and self.accelerator.is_main_process:
            step = self.state.global_step + 1
            if self.rollouts_every > 0 and (step == 1 or step % self.rollouts_every == 0):
                records = [{"step": step, **t.to_dict()} for t in traces[: self.rollouts_per_step]]
                for r in records:
                    r.pop("prompt_ids", None)
                    r.pop("completion_ids", None)
                    r["meta"].pop("input", None)
                self.run_log.append("rollouts.jsonl", records)
        return out

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        prompt_ids, _, _ = self._tokenize_prompts(prompts)  # the ids generation started from (TRL's own tokenizer path)
        traces = []
        for i, (x, p, c, ids) in enumerate(zip(inputs, prompts, completions, completion_ids_list, strict=True)):
            answer = x.get(self.answer_column)
            trace = Trace(
                prompt=p if isinstance(p, str) else self._render_prompt(p),
                completion=c if isinstance(c, str) else c[-1]["content"],
                answer=None if answer is None else str(answer),
                target_tokens=x.get("target_tokens"),
                completion_ids=list(ids),
                prompt_ids=list(prompt_ids[i]),
            )
            trace.meta["thinking_tokens"] = int(x.get("thinking_tokens", len(ids)))
            trace.meta["forced"] = bool(x.get("forced", False))
            # the row as TRL passes it to a reward function (metarl.rewards.trl_functions); not in rollouts.jsonl
            trace.meta["input"] = {k: v for k, v in x.items() if k not in ("completion", "completion_ids", TRACE_KEY)}
            traces.append(trace)
            x[TRACE_KEY] = trace
        model, state = self.accelerator.unwrap_model(self.model), {"global_step": self.state.global_step}
        if any(r.needs_engine for r in self.scorer.rewards):
            with trainer_backend(self, self.generation_backend) as backend:
                self.scorer.score(traces, model=model, backend=backend, state=state)
        else:
            self.scorer.score(traces, model=model, state=state)
        local = torch.tensor([[self.scorer.outcome_term(t)] for t in traces], dtype=torch.float32,
                             device=self.accelerator.device)
        return gather(local)

    def _render_prompt(self, messages) -> str:
        tok = self.scorer.tokenizer
        try:
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception:
            return "\n".join(m.get("content", "") if isinstance(m.get("content"), str) else "" for m in messages)

    # ------------------------------------------------------------------ credit
    @functools.cached_property
    def _stop_ids(self) -> frozenset[int]:
        """Token ids that end a completion (EOS, pad): the stop step of :func:`split_stop_tokens`."""
        return stop_token_ids(self.scorer.tokenizer, self.accelerator.unwrap_model(self.model))

    def _summary(self, t: Trace) -> dict[str, Any]:
        eps = t.episodes
        spans = [(e.token_start, e.token_end) for e in eps]
        ids = t.completion_ids or []
        if t.answer_token_start is not None and t.answer_token_start < len(ids):
            # the answer region after the thought (R1 style) is never an episode: like the stop step, it earns
            # no dense reward and is credited with what follows it, the outcome term
            credit_spans = [*spans, (t.answer_token_start, len(ids))]
        else:
            credit_spans = split_stop_tokens(spans, ids, self._stop_ids)
        stop_step = len(credit_spans) > len(spans)
        dense = self.scorer.episode_dense(t)
        s: dict[str, Any] = {
            # the stop step (trailing EOS) earns no dense reward: it is credited with what follows it
            "dense": [*dense, 0.0] if dense and stop_step else dense,
            "outcome_term": self.scorer.outcome_term(t),
            "spans": credit_spans,
            "credit_kinds": [e.kind for e in eps] + ([STOP_KIND] if stop_step else []),
            "outcome": t.outcome,
            "episodes": len(eps),
            "kinds": [e.kind for e in eps],
            "thinking_tokens": t.meta.get("thinking_tokens", t.num_tokens),
            "forced": t.meta.get("forced", False),
            "rewards": {k: v for k, v in t.rewards.items()},
            "episode_rewards": [dict(e.rewards) for e in eps],
            "errors": len(t.meta.get("reward_errors", [])),
            "faults": dict(t.meta.get("reward_faults", {})),
        }
        if self.scorer.objective.termination_baseline:
            s["termination"] = termination_values(t)
            if stop_step:  # J after the last episode: the value of stopping there
                s["termination"].append(float(eps[-1].info.get("J", s["termination"][-1])))
        s["verify"] = [verification_correctness(e, eps[:i], t.answer, self.scorer.grader, self.scorer.extract_answer,
                                                self.scorer.parse_verdict, t.prompt)
                       for i, e in enumerate(eps) if e.kind == "verify"]
        return s

    def _dense_advantages(self, summaries: list[dict[str, Any]], local_width: int, mode: str) -> torch.Tensor:
        obj = self.scorer.objective
        n = len(summaries)
        num_generations = self.num_generations if mode == "train" else self.num_generations_eval
        span_ends = [s["spans"][-1][1] or 0 for s in summaries if s["spans"]]
        width = max([local_width, *span_ends])  # other processes may have padded to a different width
        adv = build_advantages(
            [s["dense"] for s in summaries],
            [s["outcome_term"] for s in summaries],
            [s["spans"] for s in summaries],
            [i // num_generations for i in range(n)],
            width,
            alpha=obj.alpha, gamma=obj.gamma, normalize=obj.normalize, scale_rewards=obj.scale_rewards,
            baseline=obj.baseline, episode_kinds=[s["credit_kinds"] for s in summaries], credit=obj.credit,
            termination_values=([[obj.alpha * b for b in s["termination"]] for s in summaries]
                                if obj.termination_baseline else None),
        )
        local_n = n // self.accelerator.num_processes
        rows = slice(self.accelerator.process_index * local_n, (self.accelerator.process_index + 1) * local_n)
        return adv[rows, :local_width].to(self.accelerator.device)

    # ------------------------------------------------------------------ metrics
    def _log_trace_metrics(self, summaries: list[dict[str, Any]], mode: str) -> None:
        m = self._metrics[mode]
        if not summaries:
            return
        outcomes = [s["outcome"] for s in summaries if s["outcome"] is not None]
        if outcomes:
            m["metarl/outcome_accuracy"].append(sum(outcomes) / len(outcomes))
        m["metarl/episodes_per_trace"].append(sum(s["episodes"] for s in summaries) / len(summaries))
        toks = [s["thinking_tokens"] for s in summaries if s["thinking_tokens"] is not None]
        if toks:
            m["metarl/tokens/mean"].append(sum(toks) / len(toks))
            if self.cap:
                m["metarl/tokens/mean_over_cap"].append(sum(toks) / len(toks) / self.cap)
                m["metarl/tokens/cap_fraction"].append(sum(t >= self.cap for t in toks) / len(toks))
                m["metarl/tokens/max"].append(max(toks))
        m["metarl/forced_fraction"].append(sum(bool(s["forced"]) for s in summaries) / len(summaries))
        verdicts = [v for s in summaries for v in s["verify"] if v is not None]
        if verdicts:
            m["metarl/verification_accuracy"].append(sum(v > 0 for v in verdicts) / len(verdicts))
        # faults of estimators and segmenters on single samples (isolated: 0 or NaN reward; see metarl.rewards)
        m["metarl/reward_errors"].append(float(sum(s["errors"] for s in summaries)))
        for kind in ("timeouts", "nonfinite", "segment"):
            name = "segment_fallbacks" if kind == "segment" else f"reward_{kind}"
            m[f"metarl/{name}"].append(float(sum(s.get("faults", {}).get(kind, 0) for s in summaries)))
        trace_vals: dict[str, list[float]] = defaultdict(list)
        for s in summaries:
            for k, v in s["rewards"].items():
                if v is not None and math.isfinite(v):
                    trace_vals[k].append(v)
        for k, vals in trace_vals.items():
            m[f"metarl/reward/{k}"].append(sum(vals) / len(vals))
        ep_vals: dict[str, list[float]] = defaultdict(list)
        for s in summaries:
            for kind, rewards in zip(s["kinds"], s["episode_rewards"]):
                for k, v in rewards.items():
                    if v is not None and math.isfinite(v):
                        ep_vals[f"{k}"].append(v)
                        ep_vals[f"{k}/{kind}"].append(v)
        for k, vals in ep_vals.items():
            mean = sum(vals) / len(vals)
            m[f"metarl/episode_reward/{k}"].append(mean)
            if "/" not in k and len(vals) > 1:
                var = sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)
                m[f"metarl/episode_reward/{k}/std"].append(math.sqrt(var))


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
