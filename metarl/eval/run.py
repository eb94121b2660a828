"""``metarl-eval`` from a composed config: strategies × budgets on held-out questions, with difficulty bins.

Everything checkable without a model (budgets, strategies, questions, run directory) is checked first,
so a typo fails in a second with a message naming the key. Then the policy is loaded, every strategy
runs at every budget (:func:`metarl.eval.evaluate.evaluate_strategies`), questions are binned by the
difficulty model's pass@1 (:mod:`metarl.eval.difficulty`), and the run directory gets
``eval/results.jsonl``, ``eval/samples.jsonl``, ``eval/summary.csv``, ``eval/difficulty.json``,
``eval/config.yaml`` and ``eval/meta.json``; a table of accuracy per strategy and budget is printed.
With ``compute_optimal.enabled`` it also writes ``eval/difficulty_predicted.json`` (Snell et al.'s
predicted difficulty: bins of the mean verifier score of each question's samples) and
``eval/compute_optimal.jsonl`` (:mod:`metarl.eval.selection`: per difficulty source, bin and compute, the
strategy chosen on the selection split, its accuracy on the evaluation split, and best-of-N at matched
generated tokens), which ``analysis.report`` plots.
"""
from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from metarl.config import answer_tools, build_prover, build_task_of, plain, validated
from metarl.engine import check_backend, make_backend, uses_chat
from metarl.eval.difficulty import (compute_difficulty, counts_from_samples, read_difficulty,
                                    write_difficulty)
from metarl.eval.evaluate import Evaluation, evaluate_strategies, sample_and_grade, sample_records
from metarl.eval.outputs import attach_bins, format_table, summarize, write_jsonl, write_summary_csv
from metarl.eval.questions import load_questions
from metarl.eval.sampling import PARALLEL, UNLIMITED_ROUNDS, Generation, PolicySampler
from metarl.eval.strategies import Question, Strategy, bind_verifiers, build_strategies
from metarl.registry import ConfigError

log = logging.getLogger("metarl")

DEFAULT_REVISION_CUE = "<revise>"
"""Revision cue when neither ``revisions.cue`` nor the task's ``revision_cue`` is set (the tag format)."""
OUTPUT_FILES = ("results.jsonl", "samples.jsonl", "summary.csv", "difficulty.json", "meta.json", "config.yaml",
                "difficulty_predicted.json", "compute_optimal.jsonl")


@dataclass
class EvalPlan:
    """What :func:`validate` resolved: questions, strategies and answer tools, ready for a model."""

    task: Any
    questions: list[Question]
    data_problems: list[str]
    strategies: list[Strategy]
    budgets: list[int]
    n: int
    grader: Any
    extract: Any
    prover: Any  # metarl.prover.ProverConfig: forces an answer at the budget
    config: Any = None  # the typed EvalConfig (metarl/eval/config.py), read with its types from here on


def strategy_sections(cfg: DictConfig, task: Any) -> dict[str, dict[str, Any]]:
    """The option sections strategies take their keyword arguments from (``Strategy.section``): ``pass_at_k``,
    ``best_of_n`` (the run's ``verdict`` words go into a self-verification verifier), ``revisions`` (a null
    cue: the task's revision cue), ``budget_forcing`` and ``search``."""
    bon = {"verifier": best_of_n_verifier(cfg), "ks": plain(cfg.best_of_n.get("ks"))}
    rev = dict(plain(cfg.revisions) or {})
    rev["cue"] = rev.get("cue") or getattr(task, "revision_cue", None) or DEFAULT_REVISION_CUE
    return {"pass_at_k": {"k": plain(cfg.pass_at_k.get("k"))}, "best_of_n": bon, "revisions": rev,
            "budget_forcing": dict(plain(cfg.budget_forcing) or {}),
            "search": {k: v for k, v in (plain(cfg.get("search")) or {}).items()
                       if not (k == "scorer" and v is None)}}  # a null scorer: the search's own (SelfVerifyStep)


def best_of_n_verifier(cfg: DictConfig, spec: Any = None) -> Any:
    """``spec`` (default ``best_of_n.verifier``) with the run's ``verdict`` words when it is self-verification."""
    from metarl.eval.answer_scorers import with_verdict

    if spec is None:
        spec = plain(cfg.best_of_n.get("verifier"))
    return with_verdict(spec, plain(cfg.get("verdict")) or {})


def validate(cfg: DictConfig) -> EvalPlan:
    """Check the config and build everything that needs no model; raise ``ConfigError`` naming the key."""
    ec = validated(cfg, "eval")  # types, ranges and choices (metarl/eval/config.py), before anything is built
    budgets = sorted(set(ec.budgets))
    n = ec.n
    if ec.temperature == 0 and n > 1:
        log.warning("temperature=0 decodes greedily: all n=%d samples of a question are identical", n)
    task = build_task_of(cfg)
    strategies = build_strategies(plain(cfg.get("strategies")), n, strategy_sections(cfg, task))
    for s in strategies:
        check_budgets = getattr(s, "check_budgets", None)
        if callable(check_budgets):
            check_budgets(budgets)
    co = ec.compute_optimal
    if co.enabled and co.predicted_verifier is not None:
        from metarl.eval.answer_scorers import build_verifier
        from metarl.registry import target_of

        spec = co.predicted_verifier
        if target_of(spec) is None:  # no importable _target_: the error now, not after sampling (it builds later)
            build_verifier(spec, key="compute_optimal.predicted_verifier")
    questions, problems = load_questions(plain(cfg.task), task, data=ec.data, data_seed=ec.data_seed,
                                         limit=ec.n_questions)
    grader, extract, _ = answer_tools(task, cfg.get("grader"), cfg.get("answer", "auto"), cfg.get("verdict"))
    check_backend(ec.generation.backend)
    prover = build_prover(cfg)
    return EvalPlan(task, questions, problems, strategies, budgets, n, grader, extract, prover, ec)


def prepare_run_dir(run_dir: str, overwrite: bool) -> Path:
    """Create ``run_dir/eval``; refuse to overwrite an earlier evaluation unless ``overwrite``."""
    from metarl.runlog import check_writable

    root = check_writable(run_dir)
    out = root / "eval"
    existing = [f for f in OUTPUT_FILES if (out / f).exists()]
    if existing and not overwrite:
        raise ConfigError(f"run_dir {str(root)!r} already holds an evaluation (eval/{existing[0]}); choose a new "
                          "run_dir or pass overwrite=true")
    for f in existing:
        (out / f).unlink()
    out.mkdir(exist_ok=True)
    return root


def _load_policy(model_cfg: dict[str, Any], device: str):
    import torch

    from metarl.models.loading import load_model_and_tokenizer

    model_cfg = dict(model_cfg)
    model_cfg.pop("lora", None)
    model, tok = load_model_and_tokenizer(**model_cfg)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    model.eval()
    return model, tok


def check_context(model, tok, questions: list[Question], budget: int, prover, chat: bool = False) -> None:
    """The longest prompt plus the largest budget, the suffix and a forced answer must fit the model."""
    from metarl.engine import as_chat, prompt_ids_for

    limit = getattr(model.config, "max_position_embeddings", None)
    if not limit:
        return
    longest = max(len(prompt_ids_for(tok, as_chat(q.prompt) if chat else q.prompt)) for q in questions)
    suffix = max(len(tok(prover.suffix_for(f), add_special_tokens=False)["input_ids"]) for f in (False, True))
    need = longest + budget + suffix + prover.answer_tokens
    if need > limit:
        raise ConfigError(f"budgets: the longest prompt ({longest} tokens) plus the largest budget {budget}, the "
                          f"suffix and a forced answer need {need} positions, but the model has {limit}; lower the "
                          "budgets (or prover.answer_tokens)")


def _difficulty_model_cfg(cfg: DictConfig) -> dict[str, Any] | None:
    spec = plain(cfg.difficulty.get("model"))
    if spec is None:
        return None
    base = {k: v for k, v in (plain(cfg.model) or {}).items() if k in ("dtype", "trust_remote_code")}
    if isinstance(spec, str):
        return {**base, "name_or_path": spec}
    if isinstance(spec, dict) and spec.get("name_or_path"):
        return {**base, **spec}
    raise ConfigError(f"difficulty.model={spec!r}: give a model name / directory or a mapping with name_or_path")


def difficulty(cfg: DictConfig, plan: EvalPlan, ev: Evaluation, policy_sampler: PolicySampler,
               run_dir: Path, prompt_for) -> tuple[dict[str, int] | None, dict[str, Any]]:
    """Question bins: from ``difficulty.file``, the evaluation's own parallel samples, or a fresh sampling
    with the difficulty model. Returns ``({question_id: bin}, info)`` and writes ``eval/difficulty.json``."""
    d = cfg.difficulty
    if not d.enabled:
        return None, {"enabled": False}
    if d.get("file"):
        return read_difficulty(d.file), {"file": str(d.file)}
    budget, n = int(d.budget or max(plan.budgets)), int(d.n or plan.n)
    model_cfg = _difficulty_model_cfg(cfg)
    reuse = model_cfg is None and budget in plan.budgets and n == plan.n and \
        any(s.generation == PARALLEL for s in plan.strategies)
    if reuse:
        records = [r for r in ev.samples if r["generation"] == PARALLEL.name and r["budget"] == budget]
        source = "evaluated model (samples of the evaluation)"
    else:
        sampler = policy_sampler
        if model_cfg is not None:
            ec = plan.config
            model, tok = _load_policy(model_cfg, ec.device)
            sampler = PolicySampler(make_backend(ec.generation, model, tok), plan.prover,
                                    temperature=ec.temperature, top_p=ec.top_p, chat=uses_chat(tok, ec.chat_template))
        gen = Generation("difficulty")
        graded = sample_and_grade(plan.questions, sampler, budget, n, gen, seed=plan.config.seed,
                                  extract=plan.extract, grade=plan.grader, prompt_for=prompt_for)
        records = [r for q, ss in zip(plan.questions, graded) for r in sample_records(q, ss, budget, gen.name,
                                                                                       seed=plan.config.seed)]
        ev.samples += records
        source = model_cfg["name_or_path"] if model_cfg else "evaluated model"
    entries = compute_difficulty(counts_from_samples(records), n_bins=int(d.n_bins), ties=str(d.ties))
    info = {"model": source, "budget": budget, "n": n, "n_bins": int(d.n_bins), "ties": str(d.ties)}
    write_difficulty(run_dir / "eval" / "difficulty.json", entries, **info)
    return {e.question_id: e.difficulty_bin for e in entries}, info


def predicted_bins(cfg: DictConfig, plan: EvalPlan, ev: Evaluation, dinfo: dict[str, Any], out: Path,
                   model: Any, tok: Any) -> tuple[dict[str, int] | None, str]:
    """Snell et al.'s predicted difficulty: bins of the mean verifier score of each question's samples at the
    difficulty reference budget (the difficulty model's samples when it has its own, else the parallel ones);
    writes ``eval/difficulty_predicted.json``. Returns (bins or None, a note)."""
    from metarl.eval.selection import predicted_difficulty
    from metarl.eval.answer_scorers import build_verifier, verifier_name

    co, d = cfg.compute_optimal, cfg.difficulty
    own = plain(co.get("predicted_verifier"))
    key = "compute_optimal.predicted_verifier" if own is not None else "best_of_n.verifier"
    verifier = build_verifier(best_of_n_verifier(cfg, own), model=model, tokenizer=tok, key=key)
    bind = getattr(verifier, "bind", None)
    if callable(bind):
        bind(model, tok)
    name = verifier_name(verifier)
    budget = int(dinfo.get("budget") or d.budget or max(plan.budgets))
    gens = ("difficulty",) if any(r["generation"] == "difficulty" for r in ev.samples) else ("parallel",)
    records = [r for r in ev.samples if r["generation"] in gens and r["budget"] == budget]
    if not records:
        return None, f"no parallel samples at budget {budget} to predict difficulty from (add a parallel strategy)"
    prompts = {q.id: q.prompt for q in plan.questions}
    scores: dict[str, list[float]] = {}
    for r in records:
        v = r["scores"].get(name)
        if v is None:
            v = float(verifier(prompts[str(r["question_id"])], r["completion"], r["extracted"]))
        scores.setdefault(str(r["question_id"]), []).append(float(v))
    table = predicted_difficulty(scores, n_bins=int(d.n_bins), ties=str(d.ties))
    (out / "difficulty_predicted.json").write_text(json.dumps(
        {"verifier": name, "budget": budget, "generation": gens[0], "n_bins": int(d.n_bins),
         "questions": [{"question_id": q, "mean_score": m, "difficulty_bin": b} for q, (m, b) in table.items()]},
        indent=1))
    return {q: b for q, (_, b) in table.items()}, f"verifier {name} on {gens[0]} samples at budget {budget}"


def compute_optimal_outputs(cfg: DictConfig, plan: EvalPlan, ev: Evaluation, bins: dict[str, int] | None,
                            dinfo: dict[str, Any], out: Path, model: Any, tok: Any) -> dict[str, Any]:
    """``eval/compute_optimal.jsonl`` from the result rows (:func:`metarl.eval.selection.compute_optimal`)."""
    from metarl.eval.selection import compute_optimal

    co = plan.config.compute_optimal
    if not co.enabled:
        return {"enabled": False}
    notes: list[str] = []
    sources: dict[str, dict[str, int]] = {}
    if bins:
        sources["oracle"] = bins
    else:
        notes.append("no oracle difficulty bins (difficulty.enabled=false)")
    predicted, note = predicted_bins(cfg, plan, ev, dinfo, out, model, tok)
    notes.append(f"predicted difficulty: {note}")
    if predicted:
        sources["predicted"] = predicted
    if not sources:
        return {"enabled": True, "notes": notes}
    recs = compute_optimal(ev.rows, sources, seed=plan.config.seed, baseline=co.baseline,
                           compute=co.compute or None, include_oracle=co.include_oracle,
                           scorer_tokens=co.scorer_tokens, notes=notes.append)
    if not any(r["kind"] == "choice" for r in recs):
        notes.append(f"no compute-optimal choice: is the baseline {co.baseline!r} among the strategies?")
    write_jsonl(out / "compute_optimal.jsonl", recs)
    for n_ in notes:
        print(f"[metarl-eval] compute-optimal: {n_}", file=sys.stderr, flush=True)
    return {"enabled": True, "baseline": co.baseline, "sources": sorted(sources), "records": len(recs),
            "notes": notes}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate as the config says; return ``{"run_dir", "summary", "meta"}`` (also written to eval/)."""
    from metarl.rewards.budget import budget_prompt
    from metarl.utils import seed_everything, set_threads

    t0 = time.time()
    plan = validate(cfg)
    ec = plan.config  # the typed config: every option below is read from it, with its type
    set_threads(ec.threads)
    seed_everything(ec.seed)
    run_dir = prepare_run_dir(str(cfg.run_dir), ec.overwrite)  # resolved here (${hydra:...} interpolations)
    (run_dir / "eval" / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    if not (run_dir / "config.yaml").exists():  # never clobber a training run's config
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    for p in plan.data_problems:
        print(f"[metarl-eval] data problem: {p}", file=sys.stderr, flush=True)

    model, tok = _load_policy(plain(cfg.model), ec.device)
    chat = uses_chat(tok, ec.chat_template)
    check_context(model, tok, plan.questions, max(plan.budgets), plan.prover, chat)
    bind_verifiers(plan.strategies, model, tok)
    sampler = PolicySampler(make_backend(ec.generation, model, tok), plan.prover, temperature=ec.temperature,
                            top_p=ec.top_p, chat=chat)
    mode = ec.length_prompt
    prompt_for = (lambda q, b: budget_prompt(q.prompt, b, mode)) if mode else None
    print(f"[metarl-eval] {len(plan.questions)} questions, budgets {plan.budgets}, n={plan.n}, strategies "
          f"{[name for s in plan.strategies for name in s.names()]}", flush=True)
    ev = evaluate_strategies(plan.questions, plan.strategies, plan.budgets, sampler, n=plan.n, extract=plan.extract,
                             grade=plan.grader, seed=ec.seed, prompt_for=prompt_for,
                             progress=lambda m: print(f"[metarl-eval] {m}", flush=True))
    bins, dinfo = difficulty(cfg, plan, ev, sampler, run_dir, prompt_for)
    unbinned = attach_bins(ev.rows, bins)
    if bins is not None and unbinned:
        print(f"[metarl-eval] {unbinned} result rows have no difficulty bin (question not in the difficulty file)",
              file=sys.stderr, flush=True)
    summary = summarize(ev.rows, seed=ec.seed)
    out = run_dir / "eval"
    co_info = compute_optimal_outputs(cfg, plan, ev, bins, dinfo, out, model, tok)
    write_jsonl(out / "results.jsonl", ev.rows)
    write_jsonl(out / "samples.jsonl", ev.samples)
    write_summary_csv(out / "summary.csv", summary)
    meta = {"model": plain(cfg.model).get("name_or_path"), "questions": len(plan.questions), "budgets": plan.budgets,
            "n": plan.n, "strategies": [name for s in plan.strategies for name in s.names()],
            "generations": {s.generation.name: {"continuation": s.generation.continuation,
                                                "max_rounds": None if s.generation.max_rounds >= UNLIMITED_ROUNDS
                                                else s.generation.max_rounds} for s in plan.strategies},
            "difficulty": dinfo, "data_problems": plan.data_problems, "grader_stats": dict(plan.grader.stats),
            "compute_optimal": co_info,
            "scorer_stats": {s.name: dict(s.scorer.stats) for s in plan.strategies if hasattr(s, "scorer")},
            "seconds": round(time.time() - t0, 1)}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(format_table(summary), flush=True)
    print(f"[metarl-eval] wrote {out}/results.jsonl, samples.jsonl, summary.csv"
          + (", difficulty.json" if dinfo.get("budget") else ""), flush=True)
    return {"run_dir": str(run_dir), "summary": summary, "meta": meta}
