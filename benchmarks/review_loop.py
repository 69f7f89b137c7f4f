"""Review-loop benchmark: does reviewing the flagged label issues, then retraining, improve the model?

On banking77 with 5% planted uniform flips (:func:`benchmarks.cases.banking`), a simulated
reviewer works down hl-debug's ranked label-issue list (the shipped
:class:`~hl_debug.scoring.label_detector.LabelIssueDetector`, ranked by its score, as the
``label_issues`` table is): for each row it accepts the suggested label when the row was
truly flipped and keeps the given label otherwise. After K = 0, 100, 300, 600 decisions the local
model is retrained on the effective labels with the shipped training-set rule
(:func:`hl_debug.steps.retrain.training_mask`: training rows and newly labelled rows, out of
scope excluded) and the shipped model (:class:`~hl_debug.models.intent_model.LocalIntentModel`
with its defaults), and scored on the testing rows against their CLEAN labels. Baselines in the
same run, with the same vectors and model:

* **oracle** — every planted flip fixed (to its true label): the most any review can gain;
* **random** — the reviewer decides K rows drawn at random among the annotated rows;
* **flagged, training rows** — the flagged list restricted to training rows (fixes to
  validation/testing labels never change what a retrain learns; they make its evaluation honest).

With 5% flips there are ~600 planted errors, ~80% of them in training rows: K = 300 can fix at
most half of them, so "share of the oracle's gain" at K = 300 is bounded by how unequal the
errors' harm is.

Reported per seed and K: test accuracy (clean labels), the paired-bootstrap 95% interval of
the accuracy change against K = 0 (:func:`hl_debug.scoring.compare.paired_metrics`), the share
of the oracle's gain recovered, and the errors-remaining estimate against the truth (the planted
errors among the rows not reviewed yet). The estimate is calib's
``hl_debug.scoring.remaining.errors_remaining`` when it is importable; otherwise a stand-in
labelled as such (the sum of the unreviewed rows' calibrated posteriors).

Run::

    python benchmarks/review_loop.py                 # full banking77, seeds 0,1,2
    python benchmarks/review_loop.py --quick         # 3,000 rows, one seed (< 1 min)
    python benchmarks/review_loop.py --rows 4000 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks import cases  # noqa: E402
from hl_debug.models.intent_model import LocalIntentModel  # noqa: E402
from hl_debug.scoring.compare import paired_metrics  # noqa: E402
from hl_debug.scoring.label_detector import LabelIssueDetector  # noqa: E402
from hl_debug.scoring.label_issues import encode_labels  # noqa: E402
from hl_debug.steps.retrain import training_mask  # noqa: E402

log = logging.getLogger("review_loop")

KS = (0, 100, 300, 600)
#: The reviewers simulated: the flagged list (every split, as the label_issues table lists it), the
#: same list restricted to training rows (the only fixes a retrain learns from), random rows.
ARMS = ("flagged", "flagged, training rows", "random")

try:  # calib's estimator (issue 14.4); the stand-in below is used until it lands
    from hl_debug.scoring.remaining import errors_remaining as _errors_remaining  # type: ignore[import-not-found]
    ESTIMATOR = "errors_remaining (calib)"
except ImportError:  # pragma: no cover - depends on the merge order
    _errors_remaining = None
    ESTIMATOR = "STAND-IN: sum of unreviewed posteriors"


def estimate_remaining(posterior: np.ndarray, decided_wrong: dict[int, bool], order: list[int],
                       relative_bias: float = 0.0) -> dict:
    """The errors-remaining estimate after the decisions in ``decided_wrong`` (see module doc);
    ``relative_bias`` widens its interval as the label_issues signal does (the detector's own
    relative uncertainty of the count)."""
    if _errors_remaining is not None:
        return _errors_remaining(posterior, decided_wrong, order=order, relative_bias=relative_bias)
    unreviewed = np.ones(len(posterior), dtype=bool)
    unreviewed[list(decided_wrong)] = False
    return {"estimated": float(posterior[unreviewed].sum()), "low": None, "high": None}


def review(labels: np.ndarray, true: np.ndarray, suggested: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Labels after the reviewer decided ``rows`` (indices into the annotated rows): the
    suggestion where the row was truly wrong, the given label otherwise."""
    out = labels.copy()
    wrong = labels[rows] != true[rows]
    out[rows[wrong]] = suggested[rows[wrong]]
    return out


def fit_and_score(X: np.ndarray, usage: np.ndarray, original: np.ndarray, effective: np.ndarray,
                  rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Retrain the shipped local model on the effective labels; its answers on ``rows`` and
    the probabilities it gives them (columns: ``model.classes_``), as ``(labels, proba)``."""
    train = training_mask(usage, original, effective)
    model = LocalIntentModel().fit(X[train], effective[train].astype(str))
    proba = model.predict_proba(X[rows])
    return model.classes_[np.argmax(proba, axis=1)], _true_proba(proba, model.classes_)


_TRUTH: dict[str, np.ndarray] = {}


def _true_proba(proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Probability each row's clean label gets (for the log loss; 0 for an unseen intent)."""
    y = _TRUTH["eval"]
    index = {c: k for k, c in enumerate(classes.tolist())}
    cols = np.array([index.get(v, -1) for v in y])
    out = np.where(cols >= 0, proba[np.arange(len(y)), np.maximum(cols, 0)], 0.0)
    return out


def _scores(pred: np.ndarray, p_true: np.ndarray, y: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Accuracy on the testing rows, and accuracy and log loss on validation + testing."""
    return {"accuracy": float(np.mean(pred[test] == y[test])), "accuracy_eval": float(np.mean(pred == y)),
            "nll_eval": float(-np.mean(np.log(np.clip(p_true, 1e-6, 1))))}


def run_seed(seed: int, rows: int | None, ks: tuple[int, ...]) -> dict:
    t0 = time.perf_counter()
    case = cases.banking(seed=seed, flip_rate=0.05, rows=rows)
    X = case.vectors
    usage = np.array(case.splits, dtype=object)
    original = np.array(case.labels, dtype=object)
    true = np.array(case.true, dtype=object)
    ann = np.flatnonzero(case.annotated)
    classes = case.intents
    det = LabelIssueDetector(random_state=seed, use_api=False).fit(X[ann], encode_labels(original[ann].tolist(),
                                                                                            classes),
                                                                   n_classes=len(classes))
    suggested = np.array(classes, dtype=object)[det.suggested_]
    order = np.argsort(-det.scores_, kind="stable")  # the label_issues table's order
    # held out from training: validation + testing rows, scored against their CLEAN labels
    evaluation = np.flatnonzero(np.isin(usage, ["validation", "testing"]) & np.not_equal(true, None))
    test = usage[evaluation] == "testing"  # the testing rows among them
    y_eval = true[evaluation]
    _TRUTH["eval"] = y_eval
    rng = np.random.default_rng(1000 + seed)
    random_order = rng.permutation(len(ann))
    lab_ann, true_ann = original[ann], true[ann]
    n_planted = int((lab_ann != true_ann).sum())

    def effective_of(ann_labels: np.ndarray) -> np.ndarray:
        eff = original.copy()
        eff[ann] = ann_labels
        return eff

    base_pred, base_p = fit_and_score(X, usage, original, original, evaluation)
    base = _scores(base_pred, base_p, y_eval, test)
    base_acc = base["accuracy"]
    oracle_pred, oracle_p = fit_and_score(X, usage, original, effective_of(true_ann), evaluation)
    oracle = _scores(oracle_pred, oracle_p, y_eval, test)
    oracle_acc = oracle["accuracy"]
    out = {"seed": seed, "n": len(case), "n_annotated": len(ann), "n_test": int(test.sum()),
           "n_eval": len(evaluation), "planted": n_planted, "flagged": int(det.flagged_.sum()),
           "accuracy_k0": base_acc, "oracle": oracle_acc, "oracle_scores": oracle, "base_scores": base,
           "oracle_delta": paired_metrics(y_eval[test], base_pred[test], oracle_pred[test], seed=seed)["accuracy"],
           "by_k": []}
    for k in ks:
        row: dict = {"k": k}
        train_order = order[usage[ann][order] == "training"]
        for name, ranking in zip(ARMS, (order, train_order, random_order)):
            picked = ranking[:k]
            labels = review(lab_ann, true_ann, suggested, picked)
            pred, p_true = (base_pred, base_p) if k == 0 else fit_and_score(X, usage, original,
                                                                            effective_of(labels), evaluation)
            sc = _scores(pred, p_true, y_eval, test)
            acc = sc["accuracy"]
            delta = paired_metrics(y_eval[test], base_pred[test], pred[test], n_boot=1000, seed=seed)["accuracy"]
            decided = {int(i): bool(lab_ann[i] != true_ann[i]) for i in picked}
            bias = ((det.estimated_errors_high_ - det.estimated_errors_low_) / 2 / det.estimated_errors_
                    if det.estimated_errors_ else 0.0)
            est = estimate_remaining(det.posterior_, decided, [int(i) for i in picked], bias)
            gain = oracle_acc - base_acc
            row[name] = {**sc, "delta_low": delta["low"], "delta_high": delta["high"],
                         "recovered": (acc - base_acc) / gain if gain > 0 else None,
                         "recovered_eval": ((sc["accuracy_eval"] - base["accuracy_eval"])
                                            / (oracle["accuracy_eval"] - base["accuracy_eval"])
                                            if oracle["accuracy_eval"] > base["accuracy_eval"] else None),
                         "recovered_nll": ((base["nll_eval"] - sc["nll_eval"]) / (base["nll_eval"] - oracle["nll_eval"])
                                           if oracle["nll_eval"] < base["nll_eval"] else None),
                         "found": int(sum(decided.values())),
                         # what the estimate estimates: errors among the rows not reviewed yet
                         "remaining_true": int(((lab_ann != true_ann) & ~np.isin(np.arange(len(ann)), picked)).sum()),
                         "still_wrong": int((labels != true_ann).sum()),  # plus wrong suggestions accepted
                         "remaining_est": est["estimated"], "remaining_low": est.get("low"),
                         "remaining_high": est.get("high")}
        out["by_k"].append(row)
        f = row["flagged"]
        log.info("seed %d K=%d: flagged acc %.4f (found %d), random acc %.4f; remaining %d est %.1f", seed, k,
                 f["accuracy"], f["found"], row["random"]["accuracy"], f["remaining_true"], f["remaining_est"])
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def table(runs: list[dict]) -> str:
    """Per seed and K: test accuracy (clean labels) with the paired 95% CI of its change from
    K = 0, per reviewer; the oracle; errors remaining (truth / estimate) after the flagged list."""
    lines = ["| seed | K | " + " | ".join(f"{arm}: test acc. (Δ 95% CI, pts)" for arm in ARMS)
             + " | oracle | errors remaining after the flagged list: true / est. | est. error |",
             "|---|---|" + "---|" * len(ARMS) + "---|---|---|"]
    for r in runs:
        for row in r["by_k"]:
            f = row["flagged"]

            def acc(x: dict) -> str:
                return f"{x['accuracy']:.4f} ({100 * x['delta_low']:+.1f}, {100 * x['delta_high']:+.1f})"

            rel = (f["remaining_est"] - f["remaining_true"]) / f["remaining_true"] if f["remaining_true"] else None
            lines.append(f"| {r['seed']} | {row['k']} | " + " | ".join(acc(row[arm]) for arm in ARMS)
                         + f" | {r['oracle']:.4f} | {f['remaining_true']} / {f['remaining_est']:.0f} | "
                         f"{'–' if rel is None else f'{100 * rel:+.0f}%'} |")
    return "\n".join(lines)


def heldout_table(runs: list[dict]) -> str:
    """Means over seeds on the validation + testing rows (twice the testing rows: less noise),
    with the log loss of the clean labels (a proper score, more sensitive to label noise)."""
    lines = ["| K | arm | accuracy, val+test (mean over seeds) | recovered | log loss, val+test | recovered |",
             "|---|---|---|---|---|---|"]
    o_acc = np.mean([r["oracle_scores"]["accuracy_eval"] for r in runs])
    o_nll = np.mean([r["oracle_scores"]["nll_eval"] for r in runs])
    b_acc = np.mean([r["base_scores"]["accuracy_eval"] for r in runs])
    b_nll = np.mean([r["base_scores"]["nll_eval"] for r in runs])
    for j, row in enumerate(runs[0]["by_k"]):
        for arm in ARMS if row["k"] else ARMS[:1]:
            acc = np.mean([r["by_k"][j][arm]["accuracy_eval"] for r in runs])
            nll = np.mean([r["by_k"][j][arm]["nll_eval"] for r in runs])
            rec_a = (acc - b_acc) / (o_acc - b_acc) if o_acc > b_acc else None
            rec_n = (b_nll - nll) / (b_nll - o_nll) if o_nll < b_nll else None
            lines.append(f"| {row['k']} | {arm} | {acc:.4f} | {_pct(rec_a)} | {nll:.4f} | {_pct(rec_n)} |")
    lines.append(f"| all | oracle | {o_acc:.4f} | 100% | {o_nll:.4f} | 100% |")
    return "\n".join(lines)


def summary(runs: list[dict]) -> str:
    k = max(row["k"] for row in runs[0]["by_k"])
    rec = [row["flagged"]["recovered"] for r in runs for row in r["by_k"] if row["k"] == k]
    rnd = [row["random"]["recovered"] for r in runs for row in r["by_k"] if row["k"] == k]
    found = [row["flagged"]["found"] for r in runs for row in r["by_k"] if row["k"] == k]
    errs = [abs(row["flagged"]["remaining_est"] - row["flagged"]["remaining_true"]) / row["flagged"]["remaining_true"]
            for r in runs for row in r["by_k"] if row["flagged"]["remaining_true"]]
    fmt = ", ".join
    return (f"K={k}: oracle gain recovered by the flagged list {fmt(_pct(v) for v in rec)} "
            f"(mean {_pct(float(np.mean([v for v in rec if v is not None])) if any(v is not None for v in rec) else None)}),"
            f" by random review {fmt(_pct(v) for v in rnd)} (test rows; per seed); errors the flagged list found "
            f"{fmt(str(v) for v in found)} of {runs[0]['planted']} planted; errors-remaining estimate ({ESTIMATOR}) "
            f"worst relative error {100 * max(errs):.0f}% over every seed and K.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3,000 banking rows, K = 0, 30, 100, one seed")
    ap.add_argument("--rows", type=int, default=None, help="banking rows (default: all)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--ks", default=None, help="comma-separated review budgets (default 0,100,300,600)")
    ap.add_argument("--json", type=Path, default=None, help="write the per-seed results here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows, seeds = args.rows, [int(s) for s in args.seeds.split(",")]
    ks = tuple(int(k) for k in args.ks.split(",")) if args.ks else KS
    if args.quick:
        rows, seeds, ks = rows or 3000, seeds[:1], (0, 30, 100)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    runs = [run_seed(s, rows, ks) for s in seeds]
    print(table(runs))
    print()
    print(heldout_table(runs))
    print()
    print("oracle vs K=0 on the testing rows (paired 95% CI, pts): " + ", ".join(
        f"seed {r['seed']} {100 * r['oracle_delta']['delta']:+.2f} ({100 * r['oracle_delta']['low']:+.2f}, "
        f"{100 * r['oracle_delta']['high']:+.2f})" for r in runs))
    print(summary(runs))
    n = runs[0]["n"]
    print(f"\nbanking77 uniform 5% flips, {n:,} rows, seeds {args.seeds if not args.quick else seeds[0]}, "
          f"{time.perf_counter() - t0:.0f} s, load average {load:.2f} at start, {time.strftime('%Y-%m-%d')}.")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
