"""Step scorers for step-level search: how promising is a partial solution after its newest step.

A step scorer is a **batched trace reward** of :mod:`metarl.rewards` (an object with ``score_batch``,
arguments matched by name): ``score_batch(traces, ...) -> list[float]``, one score per trace, the score
of the trace's newest step. The search hands it one :class:`~metarl.types.Trace` per partial path —
``prompt`` (text), ``completion`` (the path so far), the gold ``answer``, ``prompt_ids`` /
``completion_ids`` and one episode spanning the completion — and the names ``engine``, ``model``,
``tokenizer``, ``prover``, ``grader``, ``extract_answer``. Scores go through
:func:`metarl.rewards.apply_reward`, so faults are handled as for every estimator: a non-finite or
non-numeric score becomes 0 (``on_error="zero"``) or NaN (``"nan"``: the path is excluded from the
search), and is counted in ``Reward.stats`` and on the trace (``meta["reward_faults"]``); a scorer
that fails on a whole batch raises ``RewardError`` naming it.

A step scorer is a ``_target_`` mapping (``search.scorer``), built with
:func:`metarl.registry.instantiate_callable`; an object with ``score_batch`` is used as it is, and a
verifier ``score(prompt, completion, answer_text) -> float`` of :mod:`metarl.eval.answer_scorers` (e.g.
``{_target_: metarl.eval.answer_scorers.MeanLogProb}``) is adapted (:class:`VerifierStepScore`). Built-ins:

* :class:`MCValue` (``mc_value``; ``{_target_: metarl.eval.step_scorers.MCValue, m: 4}``) — μ's success
  probability J after the path (MRT's J, the Monte Carlo step label PRMs are trained on): ``m`` forced
  answers per path through :meth:`metarl.engine.Engine.branch` (:class:`metarl.rewards.progress.MCProgress`),
  Ĵ = fraction graded correct. **Reads the gold answer**: an oracle scorer (``oracle = True``), an upper
  bound, not a deployable verifier;
* :class:`LikelihoodValue` (``likelihood_value``) — J on the probability scale from likelihood progress:
  exp L with L = log p_θ(a* | x, path, suffix) (:class:`metarl.rewards.progress.LikelihoodProgress`); also
  an oracle;
* :class:`SelfVerifyStep` (``self_verify``, the default) — the policy's own verdict: a path whose newest
  step is a verify block scores its verdict (1 positive, 0 otherwise); any other path, with ``probe``
  (default), has the policy verify it — the cue ``"<verify>"`` is inserted and the policy writes one greedy
  step to ``"</verify>"`` (through :meth:`metarl.engine.Engine.expand`) whose verdict is the score; without
  ``probe``: the last verdict in the path (0 if none);
* :class:`ProcessRewardModel` (``prm``; ``{_target_: metarl.eval.step_scorers.ProcessRewardModel, path:
  NAME_OR_DIR}``) — a process reward model by Hugging Face name or local directory.

The names in parentheses are the scorers' ``name`` attributes: the reward name under which a search's
step scores and fault counts are reported (``meta.json`` ``scorer_stats``).

Compute: tokens a scorer generates (forced answers, verification probes) are put in
``trace.meta["scorer_tokens"]``; the search reports their sum apart from the policy's search tokens.

Aggregation of a path's step scores s_1..s_T (:func:`aggregate`): ``last`` = s_T, ``min`` = min_t s_t,
``product`` = Π_t s_t (scores in [0, 1]).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from metarl.registry import ConfigError, instantiate_callable, plain
from metarl.rewards import Reward
from metarl.types import Trace

SELF_VERIFY_STEP: Mapping[str, Any] = MappingProxyType({"_target_": "metarl.eval.step_scorers.SelfVerifyStep"})
"""The default step scorer's spec (the policy's own verdict)."""

AGGREGATES = ("last", "min", "product")


def aggregate(scores: Sequence[float], how: str) -> float:
    """A path's score from its step scores: ``last`` (s_T), ``min`` (min_t s_t) or ``product`` (Π_t s_t);
    NaN when any step score is NaN (an excluded step) or there is none.

    >>> aggregate([0.9, 0.5, 0.8], "last"), aggregate([0.9, 0.5, 0.8], "min"), aggregate([0.5, 0.5], "product")
    (0.8, 0.5, 0.25)
    """
    if how not in AGGREGATES:
        raise ConfigError(f"aggregate={how!r}: use one of {', '.join(AGGREGATES)}")
    if not scores or any(math.isnan(s) for s in scores):
        return math.nan
    if how == "last":
        return float(scores[-1])
    if how == "min":
        return float(min(scores))
    return float(math.prod(scores))


def _single_episode(trace: Trace) -> None:
    """Give a path trace one episode spanning its completion (what the progress estimators read)."""
    from metarl.types import Episode

    n = len(trace.completion_ids or [])
    trace.episodes = [Episode("other", 0, len(trace.completion), trace.completion, token_start=0, token_end=n)]


class MCValue:
    """J after the path by Monte Carlo: ``m`` forced answers of μ, fraction correct (an oracle: uses a*).

    ``extract``: as :class:`metarl.rewards.progress.MCProgress` (``auto``, ``raw``, ``boxed``, ``context``,
    ``full`` or a callable). ``seed``: reproducible forced answers (call k uses ``seed + k``).
    """

    name = "mc_value"
    level = "trace"
    oracle = True

    def __init__(self, m: int = 4, extract: Any = "auto", seed: int | None = 0) -> None:
        from metarl.rewards.progress import MCProgress

        self.progress = MCProgress(m=m, extract=extract, seed=seed)

    def score_batch(self, traces: Sequence[Trace], engine: Any, grader: Callable[..., bool],
                    extract_answer: Callable[[str], str | None] | None = None) -> list[float]:
        for t in traces:
            _single_episode(t)
        rates = self.progress.success_rates(traces, engine, grader, extract_answer)
        seen: set[tuple[int, ...]] = set()
        for t in traces:  # forced answers generated: this path's m, and the prompt's m once per prompt
            tokens = t.episodes[0].info.get("forced_tokens", 0)
            key = tuple(t.prompt_ids or ())
            if key not in seen:
                seen.add(key)
                tokens += t.meta.get("J_init_info", {}).get("forced_tokens", 0)
            t.meta["scorer_tokens"] = t.meta.get("scorer_tokens", 0) + tokens
        return [js[-1] for js in rates]


class LikelihoodValue:
    """J on the probability scale from likelihood: exp log p_θ(a* | x, path, suffix) (an oracle: uses a*).

    ``answer_template`` writes a* after the suffix (``"{answer}</answer>"`` for the tag format);
    ``mode`` / ``batch_size`` as :class:`metarl.rewards.progress.LikelihoodProgress`. No tokens generated.
    """

    name = "likelihood_value"
    level = "trace"
    oracle = True

    def __init__(self, answer_template: str = "{answer}", mode: str = "one_pass", batch_size: int = 8) -> None:
        from metarl.rewards.progress import LikelihoodProgress

        self.progress = LikelihoodProgress(answer_template=answer_template, mode=mode, batch_size=batch_size)

    def score_batch(self, traces: Sequence[Trace], model: Any, tokenizer: Any, prover: Any = None) -> list[float]:
        for t in traces:
            _single_episode(t)
        return [math.exp(ls[-1]) for ls in self.progress.log_likelihoods(traces, model, tokenizer, prover)]


class SelfVerifyStep:
    """The policy's own verdict on the path (see the module docstring).

    tag: the verify block's tag; positive / negative: verdict words (``metarl.grading.parse_verdict``);
    probe: have the policy verify a path whose newest step is not a verify block; cue: the text that opens
    a verification (default ``"<tag>"``); probe_tokens: length bound of a probe.
    """

    name = "self_verify"
    level = "trace"
    oracle = False

    def __init__(self, tag: str = "verify", probe: bool = True, cue: str | None = None, probe_tokens: int = 32,
                 positive: Sequence[str] | None = None, negative: Sequence[str] | None = None) -> None:
        from metarl.eval.answer_scorers import SelfVerification

        if int(probe_tokens) < 1:
            raise ConfigError(f"self_verify probe_tokens={probe_tokens!r} must be >= 1")
        kwargs = {k: tuple(v) for k, v in (("positive", positive), ("negative", negative)) if v is not None}
        self.verdict = SelfVerification(tag=tag, **kwargs)
        self.tag, self.probe, self.probe_tokens = tag, bool(probe), int(probe_tokens)
        self.cue = cue if cue is not None else f"<{tag}>"

    def score_batch(self, traces: Sequence[Trace], engine: Any = None) -> list[float]:
        from metarl.engine import GREEDY
        from metarl.engine.streams import Stream

        scores = [self.verdict(t.prompt, t.completion, None) for t in traces]
        closing = f"</{self.tag}>"
        todo = [i for i, t in enumerate(traces) if self.probe and not t.completion.rstrip().endswith(closing)]
        if not todo:
            return scores
        if engine is None:
            raise ValueError("self_verify with probe=true needs the generation engine (the policy verifies the path)")
        cue = engine.encode(self.cue)
        probes = []
        for i in todo:
            s = Stream(list(traces[i].prompt_ids or []), list(traces[i].completion_ids or []))
            s.mask, s.thinking = [1] * len(s.ids), len(s.ids)
            s.add(cue, policy=False)
            probes.append(s)
        cap = max(s.thinking for s in probes) + self.probe_tokens
        children = engine.expand(probes, 1, cap, GREEDY, stop=(closing,), step_tokens=self.probe_tokens)
        for i, parent, (child,) in zip(todo, probes, children):
            step = child.ids[len(parent.ids):]
            traces[i].meta["scorer_tokens"] = traces[i].meta.get("scorer_tokens", 0) + len(step)
            scores[i] = self.verdict("", self.cue + engine.decode(step), None)
        return scores


class VerifierStepScore:
    """A verifier ``score(prompt, completion, answer_text) -> float`` of :mod:`metarl.eval.answer_scorers` as a
    step scorer: it scores the path so far, its answer read by the task's extractor."""

    level = "trace"
    oracle = False

    def __init__(self, verifier: Callable[..., float]) -> None:
        from metarl.eval.answer_scorers import verifier_name

        self.verifier, self.name = verifier, verifier_name(verifier)

    def bind(self, model: Any, tokenizer: Any) -> None:
        bind = getattr(self.verifier, "bind", None)
        if callable(bind):
            bind(model, tokenizer)

    def score_batch(self, traces: Sequence[Trace], extract_answer: Callable[[str], str | None] | None = None
                    ) -> list[float]:
        return [float(self.verifier(t.prompt, t.completion, extract_answer(t.completion) if extract_answer else None))
                for t in traces]


class ProcessRewardModel:
    """A process reward model: the score of the path's newest step from a separate model.

    path: a Hugging Face name or a local directory. head: ``sequence`` (``AutoModelForSequenceClassification``:
    one score for the text), ``token`` (``AutoModelForTokenClassification``: the score at the last token, the
    step's end), ``lm`` (a causal LM: p(good) of ``good_token`` vs ``bad_token`` at the last position, as
    Math-Shepherd reads its step tag), or ``auto`` (from the config's ``architectures``). A head with one
    output is read as sigmoid(logit); with several, as softmax(logits)[positive_label]. template: the
    PRM's input, with ``{prompt}`` and ``{completion}``; step_tag: text appended after the path (e.g. the
    PRM's step separator). Loaded by :meth:`load` (called when the search starts, before any generation);
    a model that cannot be loaded is a ``ConfigError`` naming ``path``.
    """

    name = "prm"
    level = "trace"
    oracle = False
    HEADS = ("auto", "sequence", "token", "lm")

    def __init__(self, path: str, head: str = "auto", template: str = "{prompt}{completion}", step_tag: str = "",
                 positive_label: int = 1, good_token: str | None = None, bad_token: str | None = None,
                 batch_size: int = 16, device: str | None = None, dtype: str = "float32",
                 trust_remote_code: bool = False) -> None:
        if not path or not isinstance(path, str):
            raise ConfigError(f"prm: path={path!r}; give a Hugging Face name or a local directory of the PRM")
        if head not in self.HEADS:
            raise ConfigError(f"prm: head={head!r}; use one of {', '.join(self.HEADS)}")
        try:
            template.format(prompt="", completion="")
        except (KeyError, IndexError) as e:
            raise ConfigError(f"prm: template={template!r} may only use {{prompt}} and {{completion}} ({e})") from None
        if int(batch_size) < 1:
            raise ConfigError(f"prm: batch_size={batch_size!r} must be >= 1")
        self.path, self.head, self.template, self.step_tag = path, head, template, step_tag
        self.positive_label, self.good_token, self.bad_token = int(positive_label), good_token, bad_token
        self.batch_size, self.device, self.dtype = int(batch_size), device, dtype
        self.trust_remote_code = trust_remote_code
        self.model: Any = None
        self.tokenizer: Any = None
        self.token_ids: tuple[int, int] | None = None

    def load(self) -> None:
        """Load the PRM and its tokenizer (once); ``ConfigError`` naming ``path`` when that fails."""
        if self.model is not None:
            return
        import torch
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForSequenceClassification,
            AutoModelForTokenClassification,
            AutoTokenizer,
        )

        from metarl.models.loading import DTYPES

        try:
            config = AutoConfig.from_pretrained(self.path, trust_remote_code=self.trust_remote_code)
            head = self.head
            if head == "auto":
                archs = " ".join(getattr(config, "architectures", None) or [])
                head = ("token" if "TokenClassification" in archs else "sequence" if "SequenceClassification" in archs
                        else "lm" if "CausalLM" in archs else "")
                if not head:
                    raise ValueError(f"architectures {archs or 'unknown'} name no sequence-classification, "
                                     "token-classification or causal-LM head; set prm.head")
            cls = {"sequence": AutoModelForSequenceClassification, "token": AutoModelForTokenClassification,
                   "lm": AutoModelForCausalLM}[head]
            tok = AutoTokenizer.from_pretrained(self.path, trust_remote_code=self.trust_remote_code)
            model = cls.from_pretrained(self.path, dtype=DTYPES.get(self.dtype, torch.float32),
                                        trust_remote_code=self.trust_remote_code)
        except ConfigError:
            raise
        except Exception as e:  # a wrong name, a missing directory, an unreadable checkpoint
            raise ConfigError(f"step scorer prm: cannot load the process reward model path={self.path!r} "
                              f"({type(e).__name__}: {str(e)[:200]}); give a Hugging Face name or a local directory "
                              "with a sequence-classification, token-classification or causal-LM checkpoint") from None
        if head == "lm":
            if not self.good_token or not self.bad_token:
                raise ConfigError("prm: head=lm needs good_token and bad_token (e.g. '+' and '-' as Math-Shepherd)")
            ids = [tok(t, add_special_tokens=False)["input_ids"] for t in (self.good_token, self.bad_token)]
            if any(len(i) != 1 for i in ids):
                raise ConfigError(f"prm: good_token / bad_token must be one token each, got ids {ids}")
            self.token_ids = (ids[0][0], ids[1][0])
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token or tok.unk_token
        tok.padding_side = "right"
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, self.tokenizer, self.head = model.to(device).eval(), tok, head

    def bind(self, model: Any, tokenizer: Any) -> None:
        """Called by ``metarl-eval`` once the policy is loaded: load the PRM before any generation."""
        self.load()

    def _read(self, logits: Any) -> list[float]:
        import torch

        if self.head == "lm":
            pair = logits[:, list(self.token_ids)].float()
            return pair.softmax(-1)[:, 0].tolist()
        logits = logits.float()
        if logits.shape[-1] == 1:
            return torch.sigmoid(logits[:, 0]).tolist()
        if not 0 <= self.positive_label < logits.shape[-1]:
            raise ValueError(f"prm: positive_label={self.positive_label} but the head has {logits.shape[-1]} labels")
        return logits.softmax(-1)[:, self.positive_label].tolist()

    def score_batch(self, traces: Sequence[Trace]) -> list[float]:
        import torch

        self.load()
        texts = [self.template.format(prompt=t.prompt, completion=t.completion) + self.step_tag for t in traces]
        device = next(self.model.parameters()).device
        out: list[float] = []
        with torch.no_grad():
            for b in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(texts[b:b + self.batch_size], return_tensors="pt", padding=True)
                enc = {k: v.to(device) for k, v in enc.items()}
                logits = self.model(**enc).logits
                if self.head != "sequence":  # the score at each row's last real token
                    last = enc["attention_mask"].sum(-1) - 1
                    logits = logits[torch.arange(logits.shape[0], device=device), last]
                out += self._read(logits)
        return out


def build_step_scorer(spec: Any, key: str = "search.scorer") -> Reward:
    """A step scorer as a batched trace :class:`~metarl.rewards.Reward` from a ``_target_`` mapping, an object
    with ``score_batch``, or a verifier (a ``_target_`` mapping or a callable ``score(prompt, completion,
    answer_text)``). Errors are :class:`~metarl.registry.ConfigError` naming ``key``.

    >>> build_step_scorer({"_target_": "metarl.eval.step_scorers.SelfVerifyStep", "probe": False}).name
    'self_verify'
    >>> build_step_scorer({"_target_": "metarl.eval.answer_scorers.MeanLogProb"}).fn  # doctest: +ELLIPSIS
    <metarl.eval.step_scorers.VerifierStepScore object at ...>
    >>> build_step_scorer("mc_value")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    metarl.registry.ConfigError: search.scorer='mc_value': a step scorer is a mapping with `_target_` ...
    """
    spec = plain(spec)
    target = spec.get("_target_") if isinstance(spec, Mapping) else None
    try:
        if hasattr(spec, "score_batch"):  # an estimator object
            fn: Any = spec
        elif callable(spec) and not isinstance(spec, str | Mapping):  # a verifier function or object
            fn = VerifierStepScore(spec)
        else:
            fn = instantiate_callable(spec, "step scorer", key)
            if not hasattr(fn, "score_batch"):
                if not callable(fn):
                    raise ConfigError(f"{key}: {target} built {fn!r}, which has no score_batch and is not a "
                                      "verifier score(prompt, completion, answer_text)")
                fn = VerifierStepScore(fn)
    except (TypeError, ValueError) as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"{key}: {target or spec!r}: {e}") from None
    if getattr(fn, "level", "trace") != "trace":
        raise ConfigError(f"{key}: step scorer {target!r} has level {fn.level!r}; a step scorer scores whole paths "
                          "(level 'trace')")
    name = getattr(fn, "name", None) or (target if isinstance(target, str) else type(fn).__name__)
    return Reward(str(name), fn, "trace", batched=True)


def is_oracle(reward: Reward) -> bool:
    """Whether the scorer reads the gold answer (its search is an upper bound, not a deployable method)."""
    return bool(getattr(reward.fn, "oracle", False))
