"""Obj-1 rewards: final outcome, generation correctness and verification correctness.

``grader(prediction, answer, prompt) -> bool`` and ``extract_answer(text) -> str | None`` come from the
scoring configuration (``metarl.grading``, or a task's own verifier); ``parse_verdict(text) -> bool | None``
reads the verdict a verify episode states. An episode reward returns ``None`` where it does not apply
(e.g. generation correctness on a verify episode), or where the grader cannot tell whether the episode's
answer is right (:meth:`metarl.grading.Grader.judge` says undetermined): no value is recorded for that episode.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from metarl.rewards import reward
from metarl.types import Episode

GENERATION_KINDS = ("attempt", "revise")


def _truth(grader: Callable, prediction: str | None, answer: str, prompt: str) -> bool | None:
    """Whether ``prediction`` is right: the grader's ``judge`` verdict where it has one (None: it cannot tell),
    else the plain callable's answer.

    >>> _truth(lambda p, a, prompt="": p == a, "7", "7", "")
    True
    """
    judge = getattr(grader, "judge", None)
    if judge is None:
        return bool(grader(prediction, answer, prompt))
    return judge(prediction, answer, prompt)[0]


@reward("trace")
def outcome(outcome: float | None) -> float | None:
    """r(x, y): 1.0 if the final answer stated in the completion is correct, else 0.0 (None without a gold answer).

    The scorer grades every trace once (``trace.outcome``: its grader on its answer extractor's reading of
    the completion); this reward records that grade under its name. It is the objective's default outcome term
    (``objective.outcome_reward: null``), scaled by ``objective.alpha``.

    >>> outcome(1.0), outcome(None)
    (1.0, None)
    """
    return None if outcome is None else float(outcome)


@reward("episode")
def generation_correctness(episode: Episode, answer: str | None, grader: Callable, extract_answer: Callable,
                           prompt: str = "") -> float | None:
    """Attempt / revise episodes: 1.0 if the answer stated in the episode is correct, else 0.0.

    >>> grade = lambda p, a, prompt="": p == a
    >>> generation_correctness(Episode("attempt", 0, 3, "7+5"), "7+5", grade, lambda t: t)
    1.0
    >>> generation_correctness(Episode("verify", 0, 7, "correct"), "7+5", grade, lambda t: t) is None
    True
    """
    if episode.kind not in GENERATION_KINDS or answer is None:
        return None
    truth = _truth(grader, extract_answer(episode.text), answer, prompt)
    return None if truth is None else float(truth)


@reward("episode")
def verification_correctness(episode: Episode, previous: Sequence[Episode], answer: str | None,
                             grader: Callable, extract_answer: Callable, parse_verdict: Callable,
                             prompt: str = "", wrong: float = 0.0) -> float | None:
    """Verify episodes: 1.0 if the stated verdict matches the true correctness of the most recent
    attempt/revise episode, else ``wrong`` (0.0, or -1.0 to penalise). No stated verdict counts as wrong;
    a verify episode with no attempt before it, or whose attempt the grader cannot grade, gets no reward.

    >>> grade = lambda p, a, prompt="": p == a
    >>> verdict = lambda t: {"correct": True, "incorrect": False}.get(t.strip())
    >>> att = Episode("attempt", 0, 3, "7+5")
    >>> verification_correctness(Episode("verify", 3, 12, "incorrect"), [att], "8+4", grade, lambda t: t, verdict)
    1.0
    >>> verification_correctness(Episode("verify", 3, 10, "correct"), [att], "8+4", grade, lambda t: t, verdict,
    ...                          wrong=-1.0)
    -1.0
    """
    if episode.kind != "verify" or answer is None:
        return None
    checked = next((e for e in reversed(previous) if e.kind in GENERATION_KINDS), None)
    if checked is None:
        return None
    truth = _truth(grader, extract_answer(checked.text), answer, prompt)
    if truth is None:  # the grader cannot tell whether the checked answer is right: no verdict can be judged
        return None
    verdict = parse_verdict(episode.text)
    if verdict is None:
        return float(wrong)
    return 1.0 if bool(verdict) == truth else float(wrong)
