"""The credit-option comparison of bench/calibration.py on hand-built traces, against values computed by hand."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import calibration as bc  # noqa: E402

from metarl.types import Episode, Trace  # noqa: E402


def test_mrt_termination_by_hand():
    """mrt_termination: A = R_0 + r − J_{−1} on every token, no std; dense off: A₀ = r − J_{−1}; so D = R_0.

    t0: rewards [.5, .5], r = 1, J_{−1} = 0: D = 1, A₀ = 1, A = 2 on 3 tokens
    t1: rewards [.25],    r = 0, J_{−1} = .25: D = .25, A₀ = −.25, A = 0 on 2 tokens
    t2: rewards [−.5],    r = 0, J_{−1} = .5: D = −.5, A₀ = −.5, A = −1 on 1 token
    corr(D, A₀): D − mean = [.75, 0, −.75], A₀ − mean = [11, −4, −7]/12; Σxy = .75·18/12 = 1.125, Σx² = 1.125,
    Σy² = 186/144, r = sqrt(1.125·144/186) = sqrt(27/31).
    Over tokens: D = [1, 1, 1, .25, .25, −.5] (mean .5, var 1.875/6), A = [2, 2, 2, 0, 0, −1] (mean 5/6, var
    318/216), share = (1.875/6) / (318/216) = 67.5/318.
    """
    batch = bc.CreditBatch(rewards=[[0.5, 0.5], [0.25], [-0.5]], outcomes=[1.0, 0.0, 0.0],
                           spans=[[(0, 1), (1, 3)], [(0, 2)], [(0, 1)]], groups=[0, 1, 2],
                           kinds=[["attempt", "verify"], ["attempt"], ["attempt"]],
                           termination=[[0.0, 0.5], [0.25], [0.5]])
    assert batch.num_tokens == 3
    (row,) = bc.credit_comparison(batch, [("mrt_termination", {"baseline": "mrt_termination"})])
    assert row["n_traces"] == 3 and row["n_tokens"] == 6 and row["corr_reason"] is None
    assert row["corr_first"] == pytest.approx(math.sqrt(27 / 31), abs=1e-9)
    assert row["var_share"] == pytest.approx(67.5 / 318, abs=1e-9)
    assert row["dense_first_std"] == pytest.approx(math.sqrt(1.125 / 3), abs=1e-9)


def test_mrt_one_group_by_hand():
    """mrt, one group of three one-token traces, scale_rewards=group (Bessel std, eps = 1e-4).

    G = R + r = [1.5, .25, −.5]: deviations [13, −2, −11]/12, std sqrt(294/288); dense off: G = [1, 0, 0],
    deviations [2, −1, −1]/3, std sqrt(1/3). Both advantages are centred and have Σ A² = 2 (up to eps), so
    Var(A) = 2/3; D = A − A₀ = [−.08248, .41239, −.32991]: Σ D·A₀ = −1/7, Σ D² = 2/7, so
    corr = (−1/7) / sqrt(2/7 · 2) = −1/sqrt(28) and Var(D)/Var(A) = (2/21)/(2/3) = 1/7.
    """
    batch = bc.CreditBatch(rewards=[[0.5], [0.25], [-0.5]], outcomes=[1.0, 0.0, 0.0], spans=[[(0, 1)]] * 3,
                           groups=["p", "p", "p"], kinds=[["attempt"]] * 3, termination=[[0.0]] * 3)
    (row,) = bc.credit_comparison(batch, [("mrt", {"normalize": "mrt"})])
    assert row["corr_first"] == pytest.approx(-1 / math.sqrt(28), abs=1e-3)
    assert row["var_share"] == pytest.approx(1 / 7, abs=1e-3)


def test_no_spread_has_a_reason_and_every_option_runs():
    """All outcomes equal: the outcome-only group advantage is 0, so its correlation is undefined (with a reason);
    every compared option builds on the same batch."""
    batch = bc.CreditBatch(rewards=[[0.5, -0.25], [0.0, 0.25]], outcomes=[0.0, 0.0],
                           spans=[[(0, 2), (2, 3)], [(0, 1), (1, 3)]], groups=[0, 0],
                           kinds=[["attempt", "verify"], ["attempt", "revise"]], termination=[[0.1, 0.6], [0.2, 0.2]])
    rows = bc.credit_comparison(batch)
    assert [r["option"] for r in rows] == [name for name, _ in bc.CREDIT_OPTIONS]
    mrt = rows[0]
    assert math.isnan(mrt["corr_first"]) and "no spread" in mrt["corr_reason"]


def test_credit_batch_reads_progress_and_termination_values():
    """ΔĴ from meta J_init and episode J; termination values J_{j−1}; exact=True reads J_exact instead."""
    eps = [Episode("attempt", 0, 3, "abc"), Episode("verify", 3, 5, "de")]
    for ep, (a, b), j, x in zip(eps, [(0, 3), (3, 5)], [0.5, 0.25], [1.0, 1.0]):
        ep.token_start, ep.token_end = a, b
        ep.info.update(J=j, J_exact=x)
    t = Trace("Numbers: 1 2. Target: 3.\n", "abcde", answer="1+2", episodes=eps, outcome=1.0,
              completion_ids=[1, 2, 3, 4, 5])
    t.meta.update(J_init=0.0, J_init_exact=0.5)
    b = bc.credit_batch([t])
    assert b.rewards == [[0.5, -0.25]] and b.termination == [[0.0, 0.5]] and b.spans == [[(0, 3), (3, 5)]]
    assert b.num_tokens == 5 and b.kinds == [["attempt", "verify"]] and b.groups == [t.prompt]
    x = bc.credit_batch([t], exact=True)
    assert x.rewards == [[0.5, 0.0]] and x.termination == [[0.5, 1.0]]
