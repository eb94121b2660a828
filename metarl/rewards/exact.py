"""Exact progress: an ORACLE progress reward for tasks whose state a prefix reveals programmatically.

Monte Carlo progress (:class:`metarl.rewards.progress.MCProgress`) estimates J_j, the chance that the
meta-prover forced to answer after prefix z_{0:j} is correct, from m sampled forced answers of the policy: its
ΔI carries Monte Carlo noise and whatever the policy does after the termination suffix. A task that can read
the state of a prefix (the answers tried, the verdicts given, the candidates left) can instead compute J exactly
for an *ideal* meta-prover (:meth:`metarl.tasks.base.Task.exact_success`; the built-in subset-sum task does,
for the tag and the R1 format). ``exact_progress`` uses it:

    ΔI_j = J_j − J_{j−1},   J_{−1} = J of the prompt alone,   J exact on every prefix.

This is an oracle, not an estimator a method could use on a real task: it knows the task's answer key. It is
there so that a researcher can tell estimator noise (and a miscalibrated meta-prover) from credit assignment:
train once with ``rewards=[exact_progress]`` and once with ``rewards=[mc_progress]``, or set ``m`` here to
replace J by Ĵ = Binomial(m, J)/m, the noise of an m-sample estimator of a perfectly calibrated meta-prover,
and see what that noise alone does to learning.

The task reaches the reward through the configuration (``conf/rewards/exact_progress.yaml``: ``task`` is the
run's ``task.task``, or ``verifier`` for ``metarl-score``); a task that does not implement ``exact_success`` is
refused when the reward is built, before any model loads.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from metarl.registry import ConfigError
from metarl.types import Trace


def implements_exact_success(task: Any) -> bool:
    """Whether ``task`` overrides :meth:`metarl.tasks.base.Task.exact_success` (the base returns None).

    >>> from metarl.tasks import SubsetSumTask
    >>> implements_exact_success(SubsetSumTask()), implements_exact_success(object())
    (True, False)
    """
    from metarl.tasks.base import Task

    method = getattr(type(task), "exact_success", None)
    return callable(method) and method is not Task.exact_success


class ExactProgress:
    """ORACLE progress: ΔI_j = J_j − J_{j−1}, J exact from the task (:meth:`~metarl.tasks.base.Task.exact_success`).

    Args:
        task: the task whose ``exact_success(prompt, prefix)`` gives J (a task object or a ``_target_`` mapping,
            e.g. ``conf/task/subset_sum.yaml``'s ``task``).
        m: None (J exact) or the number of forced answers an estimator would sample: Ĵ = Binomial(m, J)/m, drawn
            once per distinct (prompt, prefix) of a call (as Monte Carlo progress samples a context shared by the
            traces of a group once).
        seed: makes the binomial draws reproducible: call ``k`` of `score_batch` draws with seed ``seed + k``
            (the config passes the run's ``seed``); None: fresh randomness. Unused when ``m`` is None.
        rule: which ideal meta-prover J is the success of, passed to ``task.exact_success``: ``"believed"`` (the
            answer last verified correct, else the pending one, else a guess among the candidates left) or
            ``"last"`` (the last answer stated, whatever its verdict: the rule the tiny warm starts' forced
            answers follow, so J is the exact value of what their Monte Carlo Ĵ estimates).
        record_j: write J into ``episode.info["J"]`` / ``trace.meta["J_init"]`` (what the termination baseline,
            rollouts.jsonl and the information-gain analysis read). Set it false to keep Monte Carlo progress's
            Ĵ there when both rewards are configured; the exact values are always in ``J_exact``.

    Prefixes: j = −1 (the prompt alone, prefix ``""``) and the completion up to the end of every episode.

    Side outputs, where :class:`~metarl.rewards.progress.MCProgress` writes its Ĵ: ``episode.info["J"]`` (J, or Ĵ
    with ``m``), ``["J_se"]`` (0 when exact, sqrt(Ĵ(1−Ĵ)/m) with ``m``), ``["J_exact"]``; ``trace.meta["J_init"]``,
    ``["J_init_se"]``, ``["J_init_exact"]``.

    >>> from metarl.tasks import SubsetSumTask
    >>> from metarl.types import Episode
    >>> text = "<attempt>3+5</attempt><verify>3+5=8!=20 incorrect</verify><revise>8+12</revise>"
    >>> cuts = [0, 22, 57, len(text)]
    >>> trace = Trace("Numbers: 3 8 5 12. Target: 20.\\n", text, answer="8+12",
    ...               episodes=[Episode("other", a, b, text[a:b]) for a, b in zip(cuts, cuts[1:])])
    >>> [round(d, 4) for d in ExactProgress(SubsetSumTask()).score_batch([trace])[0]]
    [-0.1667, 0.2, 0.8]
    >>> trace.meta["J_init"], [e.info["J"] for e in trace.episodes]
    (0.16666666666666666, [0.0, 0.2, 1.0])
    """

    name = "exact_progress"
    level = "episode"
    #: Writes J where the termination baseline reads it (``metarl.trainer.run`` accepts it for that baseline).
    records_J = True

    def __init__(self, task: Any, m: int | None = None, seed: int | None = None, record_j: bool = True,
                 rule: str = "believed"):
        if isinstance(task, Mapping):
            from metarl.tasks import build_task

            task = build_task(task)
        if task is None:
            raise ConfigError("exact_progress needs a task that computes J exactly, and this run has none "
                              "(task.task is null: a dataset source): use a built-in task (task=subset_sum), or "
                              "for metarl-score verifier=subset_sum; otherwise use rewards=[mc_progress]")
        if not implements_exact_success(task):
            raise ConfigError(f"exact_progress needs the task to implement exact_success(prompt, prefix) -> float "
                              f"(metarl.tasks.base.Task), and {type(task).__name__} does not: implement it "
                              f"(docs/plugins.md) or use rewards=[mc_progress] (a Monte Carlo estimate)")
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise ConfigError(f"exact_progress m={m!r}: null (J exact) or an integer >= 1 (binomial draws from J)")
        if rule not in ("believed", "last"):
            raise ConfigError(f"exact_progress rule={rule!r}: use believed (the answer last verified correct) or last "
                              f"(the last answer stated, as the tiny warm starts' meta-prover answers)")
        self.task = task
        self.rule = rule
        self.m = m
        self.seed = seed
        self.record_j = self.records_J = bool(record_j)  # record_j=false: it writes no J (J_exact only)
        self._calls = 0

    def _exact(self, trace: Trace, prefix: str, index: int) -> float:
        j = self.task.exact_success(trace.prompt, prefix, rule=self.rule)
        if j is None or not 0.0 <= float(j) <= 1.0:
            raise ValueError(f"trace {index}: {type(self.task).__name__}.exact_success returned {j!r} for a prefix "
                             f"of {len(prefix)} characters; it must return a probability in [0, 1]")
        return float(j)

    def success_rates(self, traces: Sequence[Trace]) -> list[list[float]]:
        """J_j (or Ĵ_j with ``m``) for j = −1 .. n−1 of every trace, and the side outputs on the records."""
        rng = None
        if self.m is not None:
            rng = np.random.default_rng(None if self.seed is None else int(self.seed) + self._calls)
        self._calls += 1
        drawn: dict[tuple[str, str], float] = {}  # one draw per distinct (prompt, prefix) of this call
        rates: list[list[float]] = []
        for i, trace in enumerate(traces):
            prefixes = [""] + [trace.completion[:ep.end] for ep in trace.episodes]
            exact = [self._exact(trace, p, i) for p in prefixes]
            if rng is None:
                js, ses = exact, [0.0] * len(exact)
            else:
                js = []
                for p, j in zip(prefixes, exact):
                    key = (repr(trace.prompt), p)
                    if key not in drawn:
                        drawn[key] = int(rng.binomial(self.m, j)) / self.m
                    js.append(drawn[key])
                ses = [math.sqrt(j * (1.0 - j) / self.m) for j in js]
            trace.meta["J_init_exact"] = exact[0]
            if self.record_j:
                trace.meta["J_init"], trace.meta["J_init_se"] = js[0], ses[0]
            for ep, j, se, x in zip(trace.episodes, js[1:], ses[1:], exact[1:]):
                ep.info["J_exact"] = x
                if self.record_j:
                    ep.info.update(J=j, J_se=se)
            rates.append(js)
        return rates

    def score_batch(self, traces: Sequence[Trace]) -> list[list[float]]:
        """ΔI_j = J_j − J_{j−1} for every episode of every trace."""
        return [[b - a for a, b in zip(js, js[1:])] for js in self.success_rates(traces)]
