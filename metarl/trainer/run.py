"""One training run from a composed config: validate, load, train, evaluate, write the run directory.

Everything that can be checked without a model is checked first (``validate``), so a typo in a config
fails in a second with a message naming the key, not after minutes of loading.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from metarl.config import build_scorer, build_task_of, validated
from metarl.engine import check_backend
from metarl.registry import ConfigError
from metarl.trainer.data import flatten_chat, load_rows, requires

log = logging.getLogger("metarl")


@dataclass
class Plan:
    """What ``validate`` resolved: the typed config (:class:`metarl.trainer.config.TrainConfig`, read with its
    types from here on), the components and data, ready for a model."""

    config: Any  # TrainConfig
    scorer: Any
    task: Any
    train_rows: list[dict[str, Any]]
    test_rows: list[dict[str, Any]]
    prover: Any  # metarl.prover.ProverConfig, the run's one meta-prover


def validate(cfg: DictConfig) -> Plan:
    """Check the config and build everything that needs no model; raise ``ConfigError`` naming the key."""
    try:
        return _validate(cfg)
    except MissingMandatoryValue as e:
        key = e.full_key or "a key"
        hint = (" (a .jsonl/.json/.parquet/.csv file or directory, or a hub dataset name)"
                if key == "task.source" else "")
        raise ConfigError(f"{key} is required but has no value (???): set it, e.g. {key}=...{hint}") from None


def _validate(cfg: DictConfig) -> Plan:
    tc = validated(cfg, "train")  # types, ranges and choices first (metarl/trainer/config.py), before anything is built
    tr = tc.trainer
    try:
        run_dir = cfg.get("run_dir")
    except InterpolationResolutionError:  # e.g. ${hydra:...} outside a Hydra app: run() resolves it later
        run_dir = None
    if run_dir and not tr.resume and (Path(str(run_dir)) / "metrics.jsonl").exists():
        raise ConfigError(f"run_dir {str(run_dir)!r} already holds a run; pass trainer.resume=true to continue it "
                          f"or choose a new run_dir")
    check_backend(tc.generation.backend)
    task = build_task_of(cfg)
    scorer = build_scorer(cfg, task=task)
    if scorer.objective.termination_baseline and not any(r.records_J for r in scorer.rewards):
        raise ConfigError(f"objective.baseline={scorer.objective.baseline} needs the Monte Carlo progress estimator: "
                          "add rewards=[mc_progress] (weight 0 if it should not add a dense term), or the exact "
                          "oracle rewards=[exact_progress]")
    train, test = load_rows(cfg, task)
    for r in scorer.rewards:
        if not r.batched and requires(r.fn, "target_tokens"):
            missing = sum(row.get("target_tokens") is None for row in train)
            if missing:
                raise ConfigError(f"rewards.{r.name} needs a length target N (target_tokens) for every prompt, but "
                                  f"{missing} of {len(train)} training rows have none: set budget.prompt_mode=exact "
                                  f"(or max) and budget.target_tokens (an int or a list), or give the dataset a "
                                  f"target_tokens column")
    return Plan(tc, scorer, task, train, test, scorer.prover)


def check_context(plan: Plan, tokenizer, model) -> None:
    """The prompt plus the cap (and a forced answer) must fit the model's context."""
    limit = getattr(model.config, "max_position_embeddings", None)
    if not limit:
        return
    longest = 0
    for r in plan.train_rows[:2000]:
        p = r["prompt"]
        if isinstance(p, str):
            text = p
        else:
            try:
                text = tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
            except ValueError as e:
                raise ConfigError(f"task.system_prompt is set, so prompts are chat messages, but the model's "
                                  f"tokenizer cannot format them ({str(e)[:120]}); use a chat model or set "
                                  f"task.system_prompt=null") from None
        longest = max(longest, len(tokenizer(text, add_special_tokens=False)["input_ids"]))
    suffix = max(len(tokenizer(plan.prover.suffix_for(final), add_special_tokens=False)["input_ids"])
                 for final in (False, True))
    cap = plan.config.budget.cap
    need = longest + cap + suffix + plan.prover.answer_tokens
    if need > limit:
        raise ConfigError(f"budget.cap={cap}: the longest prompt ({longest} tokens) plus the cap, the "
                          f"termination suffix and a forced answer (prover.answer_tokens={plan.prover.answer_tokens}) "
                          f"need {need} positions, but the model has {limit}; lower budget.cap or prover.answer_tokens")


def grpo_config(tc: Any, run_dir: Path):
    """TRL's ``GRPOConfig`` from the typed config (``trainer.args`` passes any other GRPOConfig field through)."""
    from trl import GRPOConfig

    from metarl.utils import checkpointing_key

    tr = tc.trainer
    args = dict(
        output_dir=str(run_dir / "checkpoints"), max_steps=tr.max_steps, learning_rate=tr.learning_rate,
        lr_scheduler_type=tr.lr_scheduler_type, warmup_steps=tr.warmup_steps,
        per_device_train_batch_size=tr.per_device_train_batch_size,
        gradient_accumulation_steps=tr.gradient_accumulation_steps, num_generations=tr.num_generations,
        temperature=tr.temperature, top_p=tr.top_p, beta=tr.beta, loss_type=tr.loss_type, epsilon=tr.epsilon,
        num_iterations=tr.num_iterations, max_grad_norm=tr.max_grad_norm, logging_steps=tr.logging_steps,
        save_steps=tr.save_steps, save_strategy="steps", save_total_limit=tr.save_total_limit,
        report_to=list(tr.report_to), use_vllm=tc.generation.backend == "vllm",
        max_completion_length=tc.budget.cap, seed=tc.seed, data_seed=tc.seed, use_cpu=tr.use_cpu, bf16=tr.bf16,
        scale_rewards=tc.objective.scale_rewards, disable_tqdm=False,
    )
    args[checkpointing_key(GRPOConfig)] = tr.gradient_checkpointing
    if args["use_vllm"]:
        args["vllm_mode"] = tr.vllm_mode
        # metarl's engine hands TRL token ids without vLLM's sampling log-probs (inserted text has none), so TRL's
        # importance-sampling correction of the vLLM/trainer mismatch has nothing to use
        args["vllm_importance_sampling_correction"] = False
    args.update(tr.args)
    try:
        return GRPOConfig(**args)
    except TypeError as e:
        raise ConfigError(f"trainer: {e} (trainer.args passes GRPOConfig fields through)") from None


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train (and evaluate before/after) as the config says; return the summary written to summary.json."""
    from datasets import Dataset

    from metarl.engine import as_chat, make_backend, uses_chat
    from metarl.engine.hf import HFBackend
    from metarl.eval.heldout import evaluate_policy
    from metarl.models.loading import load_model_and_tokenizer, to_accelerator
    from metarl.trainer.callbacks import CalibrationWatch, LoadAwareThreads, health_callbacks
    from metarl.runlog import RunLog, check_writable, last_complete_checkpoint
    from metarl.trainer.grpo import MetaRLTrainer
    from metarl.trainer.rollout import Rollout
    from metarl.utils import available_cpus, seed_everything, set_threads

    plan = validate(cfg)
    tc = plan.config  # the typed config: every option below is read from it, with its type
    health = health_callbacks(tc.health)
    threads = set_threads(tc.threads)
    seed_everything(tc.seed)
    run_dir = check_writable(cfg.run_dir)  # resolved here (${hydra:...} interpolations)
    args = grpo_config(tc, run_dir)  # GRPOConfig errors surface before any model loads
    run_log = RunLog(run_dir)
    resume_from, finished = None, False
    if tc.trainer.resume:
        resume_from = last_complete_checkpoint(run_dir / "checkpoints")
        if resume_from is None:
            log.warning("trainer.resume=true but %s has no complete checkpoint: starting from step 0", run_dir)
        else:
            step = json.loads((resume_from / "trainer_state.json").read_text())["global_step"]
            finished = step >= tc.trainer.max_steps
            if finished and (run_dir / "summary.json").exists():  # a finished run: resuming changes nothing
                print(f"[metarl] {run_dir} already finished (step {step} of trainer.max_steps="
                      f"{tc.trainer.max_steps}); nothing to train", flush=True)
                return json.loads((run_dir / "summary.json").read_text())
            for name in ("metrics.jsonl", "rollouts.jsonl", "eval/curve.jsonl"):
                run_log.truncate_after(name, step)
            print(f"[metarl] resuming from {resume_from} (step {step})", flush=True)
    elif (run_dir / "metrics.jsonl").exists():
        raise ConfigError(f"run_dir {str(run_dir)!r} already holds a run; pass trainer.resume=true to continue it "
                          f"or choose a new run_dir")
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))

    model_cfg = dataclasses.asdict(tc.model)
    lora = model_cfg.pop("lora", None)
    t0 = time.time()
    model, tok = load_model_and_tokenizer(**model_cfg)
    if getattr(tok, "chat_template", None) is None:  # a base model: chat messages become plain text
        plan.train_rows, plan.test_rows = flatten_chat(plan.train_rows), flatten_chat(plan.test_rows)
    elif uses_chat(tok, tc.chat_template):  # instruct and reasoning models: every prompt through the template
        plan.train_rows, plan.test_rows = ([{**r, "prompt": as_chat(r["prompt"])} for r in rows]
                                           for rows in (plan.train_rows, plan.test_rows))
    check_context(plan, tok, model)
    scorer = dataclasses.replace(plan.scorer, tokenizer=tok)  # the scorer maps episodes to the policy's tokens
    peft_config = None
    if lora:
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", **lora)

    ro = tc.rollout  # every recipe's rollouts go through the engine (rollout=single included)
    rollout = Rollout(mode=ro.mode, cap=tc.budget.cap, force_answer=ro.force_answer, prover=plan.prover,
                      episode_stop=ro.episode_stop, max_episodes=ro.max_episodes, episode_tokens=ro.episode_tokens,
                      feedback=ro.feedback, continuation=ro.continuation, max_continuations=ro.max_continuations,
                      grader=scorer.grader, extract_answer=scorer.extract_answer, backend=tc.generation.backend,
                      batch_size=tc.generation.batch_size, terminate=ro.terminate, prefix_source=ro.prefix_source,
                      segment=scorer.segment)

    summary: dict[str, Any] = {"name": cfg.name, "run_dir": str(run_dir), "seed": tc.seed, "threads": threads}
    if threads < min(tc.threads, available_cpus()):
        print(f"[metarl] threads: {threads} of threads={tc.threads} (other processes keep the other CPUs busy; "
              f"training takes them back when they are free)", flush=True)
    ev = tc.evaluate
    budgets = sorted({tc.budget.cap, *ev.budgets})
    test_rows = plan.test_rows[: ev.n]
    evaluate = ev.enabled and bool(test_rows)
    eval_temperature = ev.temperature
    eval_samples = ev.samples if eval_temperature > 0 else 1
    eval_kind = "greedy" if eval_temperature == 0 else f"sampled{eval_samples}"

    def held_out(policy, phase: str, quiet: bool = False) -> dict[int, dict[str, Any]]:
        out = {}
        # the run's backend before and after training (vLLM: a standalone engine on the policy's weights); during
        # training the policy itself (a second engine per evaluation would cost more than it saves)
        backend = HFBackend(policy, tok, tc.generation.batch_size) if quiet else \
            make_backend(tc.generation, policy, tok)
        for b in budgets:
            per = f" x {eval_samples} samples" if eval_samples > 1 else ""
            res = evaluate_policy(backend, test_rows, cap=b, scorer=scorer, samples=eval_samples,
                                  temperature=eval_temperature, seed=tc.seed, return_traces=True,
                                  desc=f"held-out evaluation {phase} training, cap {b} ({len(test_rows)} problems{per})")
            traces = res.pop("traces")
            res["correct"] = res.pop("per_question")  # each question's mean correctness over its samples
            out[b] = res
            if quiet:  # evaluation during training: only the learning curve (eval/curve.jsonl)
                continue
            k = res["samples"]
            run_log.append("eval/results.jsonl", [
                {"step": trainer_step(), "phase": phase, "question_id": str(r.get("id", i)),
                 "strategy": f"{eval_kind}/{phase}", "budget": b, "correct": res["correct"][i],
                 "tokens": sum(t.thinking_tokens for t in traces[i * k:(i + 1) * k]) / k, "n": k,
                 "c": int(sum(t.outcome or 0 for t in traces[i * k:(i + 1) * k]))}
                for i, r in enumerate(test_rows)])
            print(f"[metarl] held-out {phase} training, cap {b}: {_fmt(res)}", flush=True)
        if hasattr(backend, "close"):
            backend.close()
        return out

    state = {"step": 0}

    def trainer_step() -> int:
        return state["step"]

    (run_dir / "eval").mkdir(exist_ok=True)
    before = run_dir / "eval" / "before.json"  # kept apart, so that a resumed run's summary still has it
    if evaluate and resume_from is None:
        model = to_accelerator(model, tc.trainer.use_cpu)  # on the trainer's device, not the CPU it loaded to
        summary["before"] = held_out(model, "before")
        before.write_text(json.dumps(summary["before"]))
    elif evaluate and before.exists():
        summary["before"] = {int(b): r for b, r in json.loads(before.read_text()).items()}

    vllm = tc.generation.backend == "vllm"
    if vllm:  # TRL's engine loads the policy from its name_or_path: a Hugging Face directory of these weights
        from metarl.engine.vllm import model_dir_for, patch_cpu_weight_sync, patch_trl_engine_for_cpu

        model.name_or_path = model.config._name_or_path = str(model_dir_for(model, tok))
        patch_trl_engine_for_cpu(dtype=str(model.dtype).split(".")[-1])  # CPU only: eager, no chunked prefill
    # μ's calibration (mc_progress): a verdict on the first scored batch with Ĵ, then the mu_calibration monitor
    watch = CalibrationWatch.install(scorer, tc.health, run_dir)
    trainer = MetaRLTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(plan.train_rows), processing_class=tok,
        scorer=scorer, rollout=rollout, run_log=run_log, rollouts_every=tc.rollouts_every,
        rollouts_per_step=tc.rollouts_per_step, peft_config=peft_config,
        callbacks=health + ([watch] if watch else []) + ([LoadAwareThreads(tc.threads)] if tc.threads > 1
                                                         else []),  # health first: its keys reach metrics.jsonl
    )
    if vllm:
        patch_cpu_weight_sync(trainer)  # on CPU TRL's weight sync cannot load into vLLM's repacked weights
    if evaluate and ev.every > 0:
        from metarl.trainer.callbacks import HeldOutCurve

        trainer.add_callback(HeldOutCurve(lambda m: held_out(trainer.accelerator.unwrap_model(m), "during",
                                                             quiet=True), run_log, ev.every))
    if resume_from is not None and finished:  # trained to the end, stopped before the final save: finish only
        from transformers import TrainerState

        trainer._load_from_checkpoint(str(resume_from))
        trainer.state = TrainerState.load_from_json(str(resume_from / "trainer_state.json"))
    else:  # (HF's Trainer resumed at max_steps trains one more step)
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    state["step"] = trainer.state.global_step
    summary["train_seconds"] = round(time.time() - t0, 1)
    summary["steps"] = trainer.state.global_step
    final = run_dir / "final"
    trainer.save_model(str(final))
    tok.save_pretrained(str(final))
    if evaluate:
        summary["after"] = held_out(trainer.accelerator.unwrap_model(trainer.model), "after")
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"[metarl] run directory: {run_dir} (metrics.jsonl, rollouts.jsonl, summary.json, final/)", flush=True)
    return summary


def _fmt(s: dict[str, Any]) -> str:
    per = f", {s['samples']} samples each" if s.get("samples", 1) > 1 else ""
    return (f"accuracy {s['accuracy']:.3f} ± {s['accuracy_se']:.3f} ({s['n']} problems{per}), tokens {s['tokens']:.1f}, "
            f"episodes/trace {s['episodes_per_trace']:.2f}, verification accuracy "
            f"{s['verification_accuracy'] if s['verification_accuracy'] is not None else float('nan'):.3f}")
