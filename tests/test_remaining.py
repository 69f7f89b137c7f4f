"""Errors remaining (issue 14.4): reviewed rows known, unreviewed estimated from the posteriors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from hl_debug.scoring.error_estimate import shift_to_total
from hl_debug.scoring.remaining import errors_remaining, log_odds_shift, spread_posterior


def test_reviewed_rows_leave_the_count_and_the_progress_is_counted():
    p = np.array([0.9, 0.8, 0.5, 0.1, 0.1, 0.0])
    out = errors_remaining(p, {})
    assert out["estimated"] == pytest.approx(2.4) and out["n_reviewed"] == 0 and out["live_precision"] is None
    assert out["low"] <= out["estimated"] <= out["high"] and out["last_found"] == 0
    decided = {0: True, 1: False, 2: True}
    out = errors_remaining(p, decided, order=[1, 0, 2], last_n=2)
    assert out["estimated"] == pytest.approx(0.2)  # rows 3, 4, 5 are left
    assert out["n_found"] == 2 and out["n_reviewed"] == 3 and out["live_precision"] == pytest.approx(2 / 3)
    assert out["expected_found"] == pytest.approx(2.2)
    assert out["last_n"] == 2 and out["last_found"] == 2  # rows 0 and 2, the two latest
    assert errors_remaining(p, decided, order=[0, 2, 1], last_n=2)["last_found"] == 1
    # the calibration's own uncertainty widens the interval, and does not move the estimate
    wide = errors_remaining(p, decided, relative_bias=0.5)
    assert wide["estimated"] == out["estimated"] and wide["high"] - wide["low"] > out["high"] - out["low"]


@pytest.mark.parametrize("call, match", [
    (lambda: errors_remaining([0.5, 1.5], {}), "probabilities"),
    (lambda: errors_remaining([0.5, 0.5], {2: True}), "rows are 0..1"),
    (lambda: errors_remaining([0.5, 0.5], {0: True}, order=[1]), "no decision"),
    (lambda: errors_remaining([0.5], {}, level=1.0), "level"),
    (lambda: errors_remaining([0.5], {}, last_n=0), "last_n"),
])
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_recalibration_follows_the_decisions():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.2, 0.9, 400)
    # a reviewer finds errors at a quarter of the promised odds: the shift is negative
    truth = rng.random(400) < p / (p + 4 * (1 - p))
    a = log_odds_shift(p, truth)
    assert -2.0 < a < -0.9  # log(1/4) = -1.39
    assert log_odds_shift(p, rng.random(400) < p) == pytest.approx(0.0, abs=0.35)
    order = list(range(200))
    plain = errors_remaining(p, {i: bool(truth[i]) for i in order})
    recal = errors_remaining(p, {i: bool(truth[i]) for i in order}, recalibrate=True)
    real = truth[200:].sum()
    assert abs(recal["estimated"] - real) < abs(plain["estimated"] - real)
    assert recal["low"] <= real <= recal["high"] and recal["shift"] < 0


def calibrated_mixture(*, seed: int, n: int, mean: float, rate: float = 0.05):
    """``(wrong, score, posterior)``: 5% errors scoring N(mean, 1), the rest N(-mean, 1), and
    the exact posterior of that mixture (calibrated by construction)."""
    rng = np.random.default_rng(seed)
    wrong = rng.random(n) < rate
    score = np.where(wrong, rng.normal(mean, 1.0, n), rng.normal(-mean, 1.0, n))
    lr = np.exp(-((score - mean) ** 2) / 2 + (score + mean) ** 2 / 2)
    return wrong, score, rate * lr / (rate * lr + 1 - rate)


def test_the_estimate_tracks_the_truth_as_a_simulated_review_goes_down_the_ranking():
    # calibrated posteriors of 6,000 rows (5% errors), a reviewer working down the ranking:
    # the estimate stays within 20% of the errors left at every K, inside its interval
    wrong, score, posterior = calibrated_mixture(seed=1, n=6000, mean=2.0)
    order = np.argsort(-score).tolist()
    for K in (0, 100, 300):
        reviewed = order[:K]
        out = errors_remaining(posterior, {i: bool(wrong[i]) for i in reviewed}, order=reviewed)
        left = int(wrong.sum() - wrong[reviewed].sum())
        assert abs(out["estimated"] - left) <= 0.2 * left, (K, out["estimated"], left)
        assert out["low"] <= left <= out["high"]
        assert out["n_found"] == int(wrong[reviewed].sum())


def test_spread_posterior_keeps_the_total_and_the_order_and_moves_mass_to_the_tail():
    rng = np.random.default_rng(2)
    em = np.clip(rng.beta(0.3, 4.0, 2000), 1e-4, 1 - 1e-4)
    anchored = shift_to_total(em, 0.8 * em.sum())  # what the detector's confident-joint anchoring does
    spread = spread_posterior(anchored, float(em.sum()))
    assert spread.sum() == pytest.approx(anchored.sum())
    assert (np.argsort(spread, kind="stable") == np.argsort(anchored, kind="stable")).all()
    assert spread == pytest.approx(em * anchored.sum() / em.sum(), rel=1e-6)  # each row's EM share of the count
    top = np.argsort(-anchored)[:100]
    assert spread[top].sum() < anchored[top].sum()  # the top keeps less of the count: the tail gets it
    assert spread_posterior(anchored, float(anchored.sum())) == pytest.approx(anchored)  # nothing to undo
    # an EM count below the anchored one scales up: rows that would pass 1 stop there, the total holds
    up = spread_posterior(anchored, 0.5 * float(anchored.sum()))
    assert up.max() <= 1.0 and up.sum() == pytest.approx(anchored.sum()) and (up == 1.0).any()
    assert (np.diff(up[np.argsort(anchored, kind="stable")]) >= -1e-12).all()  # the order holds (ties at 1)


def test_spread_total_keeps_the_relative_error_of_the_count_as_the_review_goes_on():
    # errors drawn from calibrated (EM) posteriors; the count anchored 20% low by a log-odds
    # shift, as the detector's confident joint does: the shifted estimate's relative error
    # grows as the reviewer removes the top of the ranking, the spread one's stays ~ -20%
    wrong, score, em = calibrated_mixture(seed=3, n=12000, mean=1.5)
    anchored = shift_to_total(em, 0.8 * em.sum())
    order = np.argsort(-score).tolist()
    for K in (0, 150, 400):
        reviewed = order[:K]
        decided = {i: bool(wrong[i]) for i in reviewed}
        left = int(wrong.sum() - wrong[reviewed].sum())
        shifted = errors_remaining(anchored, decided, order=reviewed)
        spread = errors_remaining(anchored, decided, order=reviewed, spread_total=float(em.sum()))
        assert spread["spread"] == "scale" and shifted["spread"] == "shift"
        assert abs(spread["estimated"] / left - 0.8) < 0.08, (K, spread["estimated"], left)
        if K == 0:
            assert spread["estimated"] == pytest.approx(shifted["estimated"])
        else:
            assert shifted["estimated"] / left < spread["estimated"] / left - 0.05, (K, shifted["estimated"], left)
    with pytest.raises(ValueError, match="alternatives"):
        errors_remaining(anchored, {}, spread_total=float(em.sum()), recalibrate=True)
    with pytest.raises(ValueError, match="positive count"):
        errors_remaining(anchored, {}, spread_total=0.0)


# -- the store read, the export report and the /issues progress line ----------------------


@pytest.fixture
def signal_store(store, write_export):
    from tests.test_signals import fill_signal_store

    return fill_signal_store(store, write_export)


def test_errors_remaining_from_the_store_the_report_and_the_issues_page(signal_store, db_path):
    from hl_debug.cli import cli
    from hl_debug.signals.label_issues import ISSUES, errors_remaining_of
    from hl_debug.steps.review import record_decision
    from hl_debug.steps.signals import signals
    from webapp import create_app

    signals(signal_store, progress=False)
    rows = signal_store.table_rows(ISSUES, order="score")
    before = errors_remaining_of(signal_store)
    assert before["n_reviewed"] == 0
    assert before["estimated"] == pytest.approx(sum(r["posterior"] for r in rows))
    # fix the most suspicious row, keep the second, relabel the first again (latest counts)
    top, second = rows[0], rows[1]
    record_decision(signal_store, top["id"], "relabel", second["given_label"] if second["given_label"] !=
                    top["given_label"] else top["suggested_label"])
    record_decision(signal_store, second["id"], "keep")
    record_decision(signal_store, top["id"], "accept", top["suggested_label"])
    after = errors_remaining_of(signal_store)
    assert after["n_reviewed"] == 2 and after["n_found"] == 1 and after["last_found"] == 1
    # the reviewed rows take their share of the count as the unanchored (EM) posteriors spread it
    em = signal_store.report("label_issues")["em_errors"]
    assert em > 0 and after["spread"] == before["spread"] == "scale"
    issue_rows = signal_store.table_rows(ISSUES)
    spread = dict(zip((r["id"] for r in issue_rows), spread_posterior(
        np.array([r["posterior"] or 0.0 for r in issue_rows]), em)))
    assert after["estimated"] == pytest.approx(before["estimated"] - spread[top["id"]] - spread[second["id"]])
    r = CliRunner().invoke(cli, ["--db", str(db_path), "export", "report", "--format", "json"], obj={})
    assert r.exit_code == 0, r.output
    li = json.loads(r.output)["label_issues"]
    assert li["errors_remaining"] == pytest.approx(after["estimated"])
    assert li["errors_remaining_low"] <= li["errors_remaining"] <= li["errors_remaining_high"]
    assert li["errors_found"] == 1 and li["n_reviewed"] == 2
    html = create_app({"DB": str(db_path), "TESTING": True}).test_client().get("/issues").get_data(as_text=True)
    assert 'id="errors-remaining"' in html
    assert f"≈ <b>{after['estimated']:.0f}</b> errors remain" in html
    assert "your last 2 decisions found 1" in html
