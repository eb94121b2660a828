"""The typed configuration of ``metarl-score`` (``conf/score.yaml`` starts from it: ``score_schema``).

Field types are enforced when the config is composed; ranges and choices once, in ``__post_init__``, when
:func:`metarl.config.validated` builds these objects. The shared sections are those of ``metarl-train``
(:mod:`metarl.trainer.config`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from metarl.checks import at_least, one_of
from metarl.scoring import Objective
from metarl.trainer.config import CHAT_TEMPLATE, GenerationConfig, ModelConfig


@dataclass
class ScoreConfig:
    """Segment and score a JSONL of traces (prompt, completion, answer, optional target_tokens)."""

    input: str = MISSING
    """The JSONL file of traces."""
    output: Optional[str] = None
    """Output JSONL (null: <run_dir>/scored.jsonl)."""
    run_dir: str = MISSING
    """Hydra's output directory (runs/score/<time>); ``run_dir=X`` is the same as ``hydra.run.dir=X``."""
    segmenter: Any = MISSING
    """How completions are cut into episodes: a ``_target_`` mapping (``conf/segmenter/*.yaml``)."""
    rewards: dict[str, Any] = field(default_factory=dict)
    """name -> reward ``_target_`` mapping, or a reward function's dotted path (``+rewards.mine=my_module.fn``);
    multi-select ``conf/rewards/*.yaml``; ``rewards=[]`` segments only."""
    objective: Objective = field(default_factory=Objective)
    model: Optional[ModelConfig] = None
    """Only for model-based rewards (mc_progress, likelihood_progress) or token spans: ``model=tiny``."""
    prover: dict[str, Any] = field(default_factory=dict)
    """The meta-prover of the model-based rewards (``conf/prover/*.yaml``), checked by ProverConfig."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    verifier: Any = None
    """A built-in task whose verifier and answer extractor grade the traces (``conf/verifier/*.yaml``)."""
    grader: Any = None
    """Without a verifier: the grader, a ``_target_`` mapping (``conf/grader/*.yaml``)."""
    answer: str = "auto"
    """Answer extraction style without a verifier (auto, boxed, tag, phrase, last_number, math)."""
    verdict: dict[str, Any] = field(default_factory=dict)
    """Verdict parser options for verify episodes, e.g. ``{negative: [wrong, incorrect]}``."""
    tokenizer: Optional[str] = None
    """A tokenizer (HF name/dir, or ``char``) to add token spans without loading a model."""
    on_bad_line: str = "skip"
    """``skip`` (report the line number, write an error record) | ``fail`` (stop at the first)."""
    on_reward_error: str = "zero"
    """A failing/NaN reward sample gets 0 (``zero``) or is excluded (``nan``)."""
    max_episodes_per_trace: int = 1024
    """Episodes past this many are merged into the last one (hostile outputs)."""
    segment_timeout: float = 30.0
    """Seconds to segment one trace; past it the trace is one episode (counted)."""
    batch_size: int = 16
    """Traces scored together (model-based rewards batch across them)."""
    threads: int = 1
    """The most torch intra-op threads (0: leave as is; fewer while other processes keep CPUs busy)."""
    verbose: bool = False
    """Library chatter on the console: TRL's log dicts, Hugging Face's per-step and loading bars, transformers / TRL
    deprecation warnings, INFO log records (false: one metarl progress bar per phase, warnings and errors; the run's
    log file keeps every record). The same key in every app (train, score, eval, calibrate)."""
    chat_template: Any = "auto"
    """``auto``: prompts go through the tokenizer's chat template (model-based rewards) when it has one."""
    seed: int = 0
    """Seeds the Monte Carlo progress draws (``rewards.mc_progress.seed``)."""

    def __post_init__(self) -> None:
        one_of("on_bad_line", self.on_bad_line, ("skip", "fail"))
        one_of("chat_template", self.chat_template, CHAT_TEMPLATE)
        # on_reward_error, max_episodes_per_trace and segment_timeout: checked by the Scorer they configure
        at_least("batch_size", self.batch_size, 1, example=16)
        at_least("threads", self.threads, 0, example=1)
        at_least("seed", self.seed, 0, example=0)
