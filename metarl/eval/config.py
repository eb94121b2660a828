"""The typed configuration of ``metarl-eval`` (``conf/eval.yaml`` starts from it: ``eval_schema``).

Test-time strategies at a list of token budgets on held-out questions, with difficulty bins (docs/method.md §6).
Field types are enforced when the config is composed (a wrong type or an unknown key fails naming the valid
keys); ranges and choices once, in ``__post_init__``, when :func:`metarl.config.validated` builds these objects.

The option sections (``pass_at_k``, ``best_of_n``, ``revisions``, ``budget_forcing``, ``search``) hold the
keyword arguments every strategy of the class named takes, unless its own mapping in ``strategies`` sets them
(``metarl.eval.strategies.Strategy.section``): ``pass_at_k.k=[1,2,8]`` and ``search.beam_width=2`` apply to the
selected strategies. Their ranges and choices are checked by those strategies (built in ``validate``, before
any model loads), not here a second time.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING

from metarl.checks import at_least, one_of, token_counts, within
from metarl.registry import ConfigError
from metarl.trainer.config import CHAT_TEMPLATE, GenerationConfig, ModelConfig, TaskConfig


@dataclass
class PassAtKConfig:
    """``pass_at_k``: options of PassAtK (``strategies.pass_at_k``)."""

    k: list[int] = field(default_factory=lambda: [1, 4])
    """Each k is reported as its own strategy (pass@1, pass@4); every k <= n."""


@dataclass
class BestOfNConfig:
    """``best_of_n``: options of BestOfN and WeightedBestOfN."""

    verifier: Any = None
    """``score(prompt, completion, answer_text) -> float`` as a ``_target_`` mapping; null:
    ``metarl.eval.answer_scorers.SelfVerification`` (reported
    as self_verify: the policy's last <verify> verdict, 1 correct, 0 otherwise; the ``verdict`` words apply) |
    ``metarl.eval.answer_scorers.MeanLogProb`` (exp of the mean token log-prob) | your own function with
    ``_partial_: true``, e.g. ``best_of_n.verifier='{_target_: my_pkg.mod.score, _partial_: true}'``."""
    ks: Optional[list[int]] = None
    """Also report Best-of-k for each k < n as <name>@k (expected accuracy over k-subsets of the n samples),
    e.g. [1,2,4]: the compute-optimal baseline."""


@dataclass
class RevisionsConfig:
    """``revisions``: SequentialRevisions: after the stream stops, append the cue and continue."""

    rounds: int = 2
    """Revisions per chain; all rounds share one budget; the final answer is the last stated."""
    cue: Optional[str] = None
    """null: the task's revision_cue, else "<revise>" (the built-in tag format); on the command line quote tags:
    ``revisions.cue="'<revise>'"``."""


@dataclass
class BudgetForcingConfig:
    """``budget_forcing``: BudgetForcing (s1): when the stream stops early, replace its end with the continuation."""

    continuation: str = "Wait"
    """e.g. Wait, or "<revise>" for the tag format (quoted on the command line)."""
    max_continuations: Optional[int] = None
    """null: continue while the budget lasts; at the budget an answer is forced."""


@dataclass
class SearchConfig:
    """``search``: step-level search (BeamSearch, Lookahead, DVTS: metarl.eval.search)."""

    n: Optional[int] = None
    """N: the search's width (null: n)."""
    beam_width: int = 4
    """M (divides N): beam search keeps N/M paths, each with M children per step; DVTS runs N/M independent
    subtrees of M children per step."""
    lookahead: int = 1
    """k for Lookahead (only): a step is scored after rolling out k more steps."""
    lookahead_temperature: float = 0.0
    """Rollouts are greedy (Snell et al.); they count as generated tokens."""
    step: str = "episodes"
    """``episodes``: a step runs to the next stop string | ``segmenter``: one piece of search.segmenter (the ids
    after its first boundary are discarded)."""
    stop: list[str] = field(default_factory=lambda: ["</attempt>", "</verify>", "</revise>"])
    """Strings that end a step (R1 / plain text: ["\\n\\n"])."""
    segmenter: Any = None
    """With step=segmenter: a segmenter mapping as in conf/segmenter/, e.g.
    ``search.segmenter='{_target_: metarl.segmenters.ParagraphSegmenter}'``."""
    step_tokens: int = 48
    """At most this many tokens per step; every budget must hold one step."""
    max_steps: Optional[int] = None
    """Stop after this many steps (null: when every path has finished)."""
    scorer: Any = None
    """The step scorer, a ``_target_`` mapping (metarl.eval.step_scorers); null: SelfVerifyStep (self_verify: the
    policy's verdict; it verifies a step that is not a verify block: probe) | ``{_target_: ...MCValue, m: 4}``
    (μ's J by Monte Carlo, reads the gold answer: an oracle) | ...LikelihoodValue (exp log p(a*|path), an
    oracle) | ``{_target_: ...ProcessRewardModel, path: NAME_OR_DIR}`` (a process reward model) | a verifier
    mapping such as ``{_target_: metarl.eval.answer_scorers.MeanLogProb}`` | your own class with
    ``score_batch(traces, ...) -> floats``."""
    aggregate: str = "last"
    """A path's score from its step scores: last | min | product."""
    select: str = "weighted"
    """Final answer over finished paths: weighted (scores summed per answer) | best | majority."""
    on_error: str = "zero"
    """A non-finite step score: zero (counts 0) | nan (that path is excluded); counted in meta.json scorer_stats
    and the rows' scorer_faults."""


@dataclass
class ComputeOptimalConfig:
    """``compute_optimal``: strategy selection per difficulty bin (Snell et al.; metarl.eval.selection)."""

    enabled: bool = True
    """Write eval/compute_optimal.jsonl and eval/difficulty_predicted.json."""
    baseline: str = "weighted_best_of_n"
    """Best-of-N compared at matched generated tokens (its <name>@k rows too)."""
    compute: Optional[list[float]] = None
    """Generated tokens per question to select at (null: the baseline's costs)."""
    include_oracle: bool = False
    """Also select among rows that read the gold answer (pass@k>1, MCValue ...)."""
    scorer_tokens: bool = True
    """A search's compute includes the tokens its step scorer generated (self_verify probes, MCValue forced
    answers), not only its own branches."""
    predicted_verifier: Any = None
    """Verifier mapping whose mean score predicts difficulty (null: best_of_n.verifier)."""

    def __post_init__(self) -> None:
        if self.compute is not None and (not self.compute or any(not float(c) > 0 for c in self.compute)):
            raise ConfigError(f"compute_optimal.compute={self.compute!r} must be a list of positive numbers "
                              f"(generated tokens per question), e.g. compute_optimal.compute=[64,128]")


@dataclass
class DifficultyConfig:
    """``difficulty``: model-specific difficulty bins (Snell et al.)."""

    enabled: bool = True
    """Bin the questions by the model's pass@1."""
    model: Any = None
    """null: the evaluated model; else a name / checkpoint dir (e.g. tiny) or a model mapping
    (``{name_or_path: ..., gguf_file: ...}``): the base model."""
    budget: Optional[int] = None
    """Reference budget (null: the largest of budgets)."""
    n: Optional[int] = None
    """Samples per question for pass@1 (null: n); with model, budget and n equal to the evaluation's, its own
    pass@k samples are reused."""
    n_bins: int = 5
    """Quantile bins, 1 = easiest."""
    ties: str = "together"
    """together: equal pass@1 share a bin | split: exactly equal-size bins."""
    file: Optional[str] = None
    """eval/difficulty.json of an earlier run: reuse its bins (no sampling)."""

    def __post_init__(self) -> None:
        at_least("difficulty.budget", self.budget, 1, example=96, nullable=True)
        at_least("difficulty.n", self.n, 1, example=8, nullable=True)
        at_least("difficulty.n_bins", self.n_bins, 1, example=5)
        one_of("difficulty.ties", self.ties, ("together", "split"))


@dataclass
class EvalConfig:
    """The whole ``metarl-eval`` run (``conf/eval.yaml`` plus overrides)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    prover: dict[str, Any] = field(default_factory=dict)
    """The meta-prover forcing an answer at the budget (``conf/prover/*.yaml``), checked by ProverConfig."""
    grader: Any = None
    """Grader when the task has no verifier: a ``_target_`` mapping (``conf/grader/*.yaml``)."""
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    strategies: dict[str, Any] = field(default_factory=dict)
    """name -> strategy ``_target_`` mapping (multi-select ``conf/strategies/*.yaml``)."""
    name: str = "eval"
    """Run name (the analysis label when run_dir has no config.yaml yet)."""
    seed: int = 0
    """Sampling seed; each (budget, strategy generation) draws from its own derived seed."""
    data_seed: int = 0
    """Which held-out questions: built-in tasks use task.generate("test", seed=data_seed+1), the held-out rows
    of a metarl-train run with seed=data_seed."""
    threads: int = 1
    """The most torch intra-op threads (0: leave as is): never more than the CPUs available, nor than other
    processes leave free at the start (``metarl.utils.set_threads``)."""
    verbose: bool = False
    """Library chatter on the console: TRL's log dicts, Hugging Face's per-step and loading bars, transformers / TRL
    deprecation warnings, INFO log records (false: one metarl progress bar per phase, warnings and errors; the run's
    log file keeps every record). The same key in every app (train, score, eval, calibrate)."""
    chat_template: Any = "auto"
    """``auto``: plain-text prompts go through the tokenizer's chat template when it has one | true | false."""
    device: str = "auto"
    """auto (cuda if available) | cpu | cuda | cuda:1 ..."""
    run_dir: str = MISSING
    """Outputs go to run_dir/eval/ (a training run's dir is fine): Hydra's output directory; run_dir=X or
    hydra.run.dir=X."""
    overwrite: bool = False
    """Replace an earlier evaluation in run_dir/eval/ (else refuse)."""
    data: Optional[str] = None
    """A local JSONL file of questions (prompt, answer, optional id; columns renamed by task.columns) instead of
    task.source; malformed lines are reported by line number and skipped."""
    n_questions: Optional[int] = None
    """Evaluate the first N questions (null: task.n_test for built-in tasks, all rows otherwise)."""
    budgets: list[int] = field(default_factory=lambda: [32, 64, 96])
    """Token budgets: each bounds the thinking tokens of EACH sample (tokens before the forced answer, inserted
    cue/continuation text included)."""
    n: int = 8
    """Samples per question (per budget and per generation mode)."""
    temperature: float = 0.7
    """Sampling temperature (0 = greedy: all n samples identical)."""
    top_p: float = 1.0
    """Nucleus sampling."""
    length_prompt: Optional[str] = None
    """null | exact | max: write the budget into the prompt (L1: "Think for B tokens.")."""
    pass_at_k: PassAtKConfig = field(default_factory=PassAtKConfig)
    best_of_n: BestOfNConfig = field(default_factory=BestOfNConfig)
    revisions: RevisionsConfig = field(default_factory=RevisionsConfig)
    budget_forcing: BudgetForcingConfig = field(default_factory=BudgetForcingConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    compute_optimal: ComputeOptimalConfig = field(default_factory=ComputeOptimalConfig)
    difficulty: DifficultyConfig = field(default_factory=DifficultyConfig)
    answer: str = "auto"
    """How the final answer is read when the task has no extractor (a metarl.grading style; auto: the
    grader's)."""
    verdict: dict[str, Any] = field(default_factory=dict)
    """Verdict words (``{positive: [...], negative: [...]}``) for a SelfVerification verifier
    (best_of_n.verifier, compute_optimal.predicted_verifier) that does not set its own."""

    def __post_init__(self) -> None:
        self.budgets = token_counts("budgets", self.budgets, nullable=False, example="[32,64,128]")
        at_least("n", self.n, 1, example=8)
        at_least("temperature", self.temperature, 0, example=0.7, integer=False)
        within("top_p", self.top_p, 0, 1, example=1.0, low_open=True)
        at_least("seed", self.seed, 0, example=0)
        at_least("data_seed", self.data_seed, 0, example=0)
        at_least("threads", self.threads, 0, example=1)
        at_least("n_questions", self.n_questions, 1, example=64, nullable=True)
        one_of("chat_template", self.chat_template, CHAT_TEMPLATE)
        from metarl.rewards.budget import BUDGET_MODES

        one_of("length_prompt", self.length_prompt, (None, *BUDGET_MODES))
