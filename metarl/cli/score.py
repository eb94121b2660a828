"""``metarl-score``: segment and score a JSONL file of traces from any model.

    metarl-score input=metarl/data/sample_traces.jsonl      # tag segmenter, outcome reward
    metarl-score input=r1.jsonl segmenter=mrt rewards=[]    # MRT episodes only, no model
    metarl-score input=t.jsonl verifier=subset_sum rewards=[outcome,verification_correctness]
    metarl-score input=t.jsonl model=tiny rewards=[likelihood_progress]

Each input line is ``{"prompt", "completion", "answer", "target_tokens"?, "task"?}``; a line's ``task`` names the
built-in task whose verifier and answer extractor grade it (``conf/verifier/<task>.yaml``, e.g. ``subset_sum``);
``verifier=NAME`` grades the lines that name none, and ``grader=`` (default ``math``) the rest. Where the grader
cannot tell whether an answer is right (the math grader on an expression answer such as ``7+6``, a verifier
that cannot read the problem) the outcome is null and ``meta.ungraded`` says why; the summary counts these
and the traces without an ``answer``. Each output line is the same
trace with ``episodes: [{kind, start, end, text, rewards}]`` (``start``/``end`` are character offsets into
``completion``; with ``prover.think_end``, e.g. ``prover=r1``, episodes cover the thinking and
``answer_region: {start, end, text}`` is the answer after it), ``outcome``, ``rewards`` (trace rewards and
the ``dense`` / ``total`` of the objective) and ``line`` (the input line number). A malformed line is
reported with its number and, with ``on_bad_line=skip``, written as ``{"line", "error"}`` so the output
keeps one line per input line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from metarl.cli.common import apply_verbosity, prepare_command_line
from metarl.config import build_scorer, conf_dir, plain, validated
from metarl.engine import as_chat, check_backend, make_backend, prompt_ids_for, uses_chat
from metarl.registry import ConfigError
from metarl.types import Trace


class BadLine(ValueError):
    pass


def parse_line(line: str, number: int) -> Trace:
    """A ``Trace`` from one JSONL line, or ``BadLine`` saying what is wrong with it."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise BadLine(f"line {number}: not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(rec, dict):
        raise BadLine(f"line {number}: expected a JSON object, got {type(rec).__name__}")
    for key in ("prompt", "completion"):
        if not isinstance(rec.get(key), str):
            got = "missing" if key not in rec else type(rec[key]).__name__
            raise BadLine(f"line {number}: `{key}` must be a string ({got})")
    answer = rec.get("answer")
    if answer is not None and not isinstance(answer, str | int | float):
        raise BadLine(f"line {number}: `answer` must be a string or number, got {type(answer).__name__}")
    target = rec.get("target_tokens")
    if target is not None and (not isinstance(target, int) or isinstance(target, bool) or target < 0):
        raise BadLine(f"line {number}: `target_tokens` must be a non-negative integer, got {target!r}")
    ids = rec.get("completion_ids")
    if ids is not None and not (isinstance(ids, list) and all(isinstance(i, int) for i in ids)):
        raise BadLine(f"line {number}: `completion_ids` must be a list of integers")
    task = rec.get("task")
    if task is not None and (not isinstance(task, str) or task not in known_tasks()):
        raise BadLine(f"line {number}: `task` must name a built-in task, one of {', '.join(known_tasks())} "
                      f"(conf/verifier/), got {task!r}")
    extra = {k: v for k, v in rec.items() if k not in ("prompt", "completion", "answer", "target_tokens",
                                                        "completion_ids", "episodes", "rewards", "outcome")}
    t = Trace(prompt=rec["prompt"], completion=rec["completion"], answer=None if answer is None else str(answer),
              target_tokens=target, completion_ids=ids)
    t.meta["input"] = extra
    return t


def known_tasks() -> list[str]:
    """The tasks a line's ``task`` field may name: the files of ``conf/verifier/``."""
    return sorted(p.stem for p in (Path(conf_dir()) / "verifier").glob("*.yaml"))


def _task_spec(name: str) -> Any:
    from omegaconf import OmegaConf

    return plain(OmegaConf.load(Path(conf_dir()) / "verifier" / f"{name}.yaml"))


def _record(t: Trace, number: int) -> dict[str, Any]:
    d = t.to_dict()
    extra = d["meta"].pop("input", {})
    d.pop("completion_ids", None)
    d.pop("prompt_ids", None)
    if t.answer_start is not None:  # R1 style: the answer after the thought, never an episode
        d["answer_region"] = {"start": t.answer_start, "end": len(t.completion), "text": t.completion[t.answer_start:]}
    return {"line": number, **extra, **d}


def score_file(cfg: DictConfig) -> dict[str, Any]:
    from metarl.utils import progress_bar, set_threads

    validated(cfg, "score")  # types, ranges and choices (metarl/scoring_config.py), before anything is read
    set_threads(int(cfg.threads))
    src = Path(cfg.input)
    if not src.is_file():
        raise ConfigError(f"input={str(src)!r} is not a file; pass input=PATH to a JSONL of traces")
    check_backend(str(cfg.generation.backend))
    from metarl.tasks import build_task

    default_task = build_task(plain(cfg.verifier)) if cfg.get("verifier") else None
    scorer = build_scorer(cfg, task=default_task)
    scorer.on_ungraded = "null"  # refuse to guess: an answer the grader cannot judge is not a confident 0 or 1
    model_cfg = plain(cfg.get("model"))
    chat = False
    if model_cfg:
        from metarl.models.loading import load_model_and_tokenizer, to_accelerator

        model_cfg.pop("lora", None)
        scorer.model, scorer.tokenizer = load_model_and_tokenizer(**model_cfg)
        scorer.model = to_accelerator(scorer.model).eval()  # a GPU when there is one
        if any(r.needs_engine for r in scorer.rewards):
            scorer.backend = make_backend(cfg.generation, scorer.model, scorer.tokenizer)
        chat = uses_chat(scorer.tokenizer, cfg.chat_template)
    elif cfg.get("tokenizer"):
        scorer.tokenizer = _tokenizer(cfg.tokenizer)
    needs = [r.name for r in scorer.rewards if r.needs_model or r.needs_engine]
    if needs and scorer.model is None:
        raise ConfigError(f"rewards {needs} need a model: add model=tiny or model=hf model.name_or_path=NAME")
    scorers = {None: scorer}  # a line's `task` -> the scorer grading with that task's verifier

    def scorer_for(task: str | None):
        if task not in scorers:
            other = build_scorer(cfg, task=build_task(_task_spec(task)))
            for key in ("model", "tokenizer", "backend", "on_ungraded"):
                setattr(other, key, getattr(scorer, key))
            other.state = scorer.state
            scorers[task] = other
        return scorers[task]

    out_path = Path(cfg.output) if cfg.output else Path(cfg.run_dir) / "scored.jsonl"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    counts = {"lines": 0, "scored": 0, "bad": 0, "no_answer": 0, "ungraded": 0}
    batch: list[tuple[int, Trace]] = []
    failed = {"segmenter": 0}

    def flush(f) -> None:
        if batch:
            for _, t in batch:  # instruct / reasoning models read the prompt through their chat template
                if chat and t.prompt_ids is None:
                    t.prompt_ids = prompt_ids_for(scorer.tokenizer, as_chat(t.prompt))
            groups: dict[str | None, list[Trace]] = {}
            for _, t in batch:
                groups.setdefault(t.meta["input"].get("task"), []).append(t)
            for task, traces in groups.items():
                scorer_for(task).score(traces)
            for n, t in batch:
                f.write(json.dumps(_record(t, n), ensure_ascii=False) + "\n")
                counts["no_answer"] += t.answer is None
                counts["ungraded"] += "ungraded" in t.meta
                failed["segmenter"] += t.meta.get("segment_fault") == "error"
            counts["scored"] += len(batch)
            batch.clear()

    with open(src, "rb") as f:
        total = sum(1 for _ in f)
    # Lines are split on b"\n" only (JSONL); invalid UTF-8 bytes are replaced by U+FFFD and reported by line
    # number; lone surrogates (valid JSON escapes) are written back as the same escapes (backslashreplace).
    with open(src, "rb") as fin, open(out_path, "w", encoding="utf-8", errors="backslashreplace") as fout:
        # a bar for long inputs, and for any input a model scores (seconds per trace, not microseconds)
        heavy = any(r.needs_model or r.needs_engine for r in scorer.rewards)
        for number, raw in enumerate(progress_bar(fin, total=total, desc=f"scoring {src.name}", unit="trace",
                                                  disable=total < 200 and not heavy), start=1):
            counts["lines"] += 1
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                line = raw.decode("utf-8", errors="replace")
                print(f"metarl-score: {src}: line {number}: invalid UTF-8 bytes (first at byte {e.start}) were "
                      f"replaced by U+FFFD before scoring", file=sys.stderr)
            try:
                if not line.strip():
                    raise BadLine(f"line {number}: empty line")
                trace = parse_line(line, number)
                if scorer.tokenizer is not None:
                    _check_tokenizable(trace.completion, number)
            except BadLine as e:
                flush(fout)  # the lines before a bad one are kept, whatever on_bad_line says
                if cfg.on_bad_line == "fail":
                    fout.flush()
                    raise ConfigError(f"{src}: {e} (on_bad_line=skip would skip it); the {counts['scored']} "
                                      f"lines before it are in {out_path}") from None
                print(f"metarl-score: skipping {src}:{e}", file=sys.stderr)
                fout.write(json.dumps({"line": number, "error": str(e)}) + "\n")
                counts["bad"] += 1
                continue
            batch.append((number, trace))
            if len(batch) >= int(cfg.batch_size):
                flush(fout)
        flush(fout)
    if counts["scored"] and failed["segmenter"] == counts["scored"]:
        from metarl.rewards import RewardError

        raise RewardError(f"the segmenter failed on every one of the {counts['scored']} traces (meta.reward_errors "
                          f"in {out_path} says how); fix it or choose another with segmenter=...")
    rewards = [r for s in scorers.values() for r in s.rewards]
    errors = {r.name: r.stats for r in rewards
              if r.stats["errors"] or r.stats["nonfinite"] or r.stats.get("timeouts")}
    if counts["no_answer"]:
        n = counts["no_answer"]
        print(f"metarl-score: warning: {n} trace{'s' if n > 1 else ''} {'have' if n > 1 else 'has'} no `answer`: "
              f"{'their' if n > 1 else 'its'} outcome is null (not graded); give each line an \"answer\"",
              file=sys.stderr)
    if counts["ungraded"]:
        print(f"metarl-score: warning: {counts['ungraded']} trace(s) could not be graded (outcome null; "
              f"meta.ungraded says why): give such lines a \"task\" ({', '.join(known_tasks())}) or pass "
              f"verifier=NAME / grader=NAME", file=sys.stderr)
    print(f"metarl-score: {counts['scored']} traces scored ({counts['ungraded']} ungraded, {counts['no_answer']} "
          f"without an answer), {counts['bad']} bad lines skipped, {counts['lines']} lines read -> {out_path}"
          + (f"; reward errors: {errors}" if errors else ""), file=sys.stderr)
    return {**counts, "output": str(out_path)}


def _check_tokenizable(text: str, number: int) -> None:
    """``BadLine`` for text no tokenizer accepts: lone surrogates (valid JSON escapes such as ``\\ud800``).

    Token spans are then found from the text itself (offsets of a fast tokenizer), so characters outside
    the tokenizer's vocabulary are fine; ids given in the line (``completion_ids``) are used as they are.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadLine(f"line {number}: the completion holds a lone surrogate ({text[e.start]!r} at char {e.start}), "
                      f"which is not text a tokenizer accepts; fix the line or score without a tokenizer") from None


def _tokenizer(spec: str):
    if spec == "char":
        from metarl.models.tiny import build_char_tokenizer

        return build_char_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(spec)


@hydra.main(version_base=None, config_path=conf_dir(), config_name="score")
def _main(cfg: DictConfig) -> None:
    apply_verbosity(cfg)  # verbose=false: one bar per phase, no library chatter
    from metarl.rewards import RewardError
    from metarl.runlog import discard_unused_run_dir

    try:
        score_file(cfg)
    except (ConfigError, RewardError) as e:  # a bad config, or a component failing on every input: exit 2
        discard_unused_run_dir()
        print(f"metarl-score: error: {e}", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    prepare_command_line("score")  # plug-ins in the current directory; run_dir= is Hydra's output directory
    _main()


if __name__ == "__main__":
    main()
