"""The local model at many intents: its sigmoid calibration against scikit-learn's, same run.

The calibrated local model (:class:`~hl_debug.models.intent_model.LocalIntentModel`: logistic
regression, C=10, lbfgs, sigmoid calibration on ``calibration_folds`` folds, one BLAS thread) is
fitted on the training rows of a case twice: with scikit-learn's ``CalibratedClassifierCV``
(what it was until round 5: one L-BFGS run per intent and fold for the sigmoids) and with the
shipped :class:`~hl_debug.models.calibration.SigmoidCalibratedCV` (the same folds and fold
models, every sigmoid fitted at once). Figures: fit seconds, accuracy against the given labels
and the true intents on the annotated non-training rows, the share of rows whose top-1 intent
(and top-3 set) is the same, the largest probability difference and the mean top-1 confidence.

Run::

    python benchmarks/linear_models.py                 # banking77: 9,632 training rows, 77 intents
    python benchmarks/linear_models.py --db /tmp/hl-debug-bench/bench-many-intents-23k.json.zip.db \\
        --truth /tmp/many-intents-23k.json.zip.truth.json   # a run's database (its vectors and rows)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rows(case_name: str, db: Path | None, truth: Path | None) -> tuple[str, np.ndarray, np.ndarray, np.ndarray,
                                                                         np.ndarray]:
    """``(name, X, given, true, split)`` of a case or of a run's database (true = given without truth)."""
    if db is None:
        from benchmarks.cases import banking, grown

        case = banking() if case_name == "banking" else grown(rows=20000)
        return (case.name, case.vectors, np.array([v or "" for v in case.labels], dtype=object),
                np.array([v or "" for v in case.true], dtype=object), np.array(case.splits, dtype=object))
    from hl_debug.steps.signals import load_context
    from hl_debug.storage import Store

    store = Store(str(db))
    ctx = load_context(store, encoder=str(store.get_meta("active_encoder")), api=None)
    given = np.array([v or "" for v in ctx.labels], dtype=object)
    true = given.copy()
    if truth is not None:
        known = json.loads(truth.read_text(encoding="utf-8"))["true_intent"]
        true = np.array([known.get(str(int(i)), g) for i, g in zip(ctx.ids, given)], dtype=object)
    return db.name, np.asarray(ctx.vectors), given, true, np.array(ctx.splits, dtype=object)


def run(case_name: str = "banking", *, db: Path | None = None, truth: Path | None = None) -> dict:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression

    from hl_debug.models import intent_model as im

    name, X, given, true, split = _rows(case_name, db, truth)
    train, held = (split == "training") & (given != ""), (split != "training") & (given != "")
    y = given[train].astype(str)
    folds = im.calibration_folds(np.unique(y, return_counts=True)[1])
    out: dict = {"case": name, "train_rows": int(train.sum()), "intents": len(set(y)), "folds": folds}
    probs = {}
    for label, clf in (("sklearn", CalibratedClassifierCV(LogisticRegression(C=10.0, max_iter=2000),
                                                          method="sigmoid", cv=folds)),
                       ("shipped", None)):
        model = im.LocalIntentModel()
        t = time.perf_counter()
        if clf is None:
            model.fit(X[train], y)
        else:  # the same fit with scikit-learn's calibration (LocalIntentModel's wrapping, done by hand)
            with model._threads():
                model.classifier_ = clf.fit(X[train].astype(np.float32), y)
            model.classes_, model.n_features_in_ = np.asarray(clf.classes_), X.shape[1]
        out[f"{label}_fit_s"] = round(time.perf_counter() - t, 1)
        out[f"{label}_type"] = type(model.classifier_).__name__
        P = model.predict_proba(X)
        probs[label] = P
        pred = model.classes_[P.argmax(1)]
        out[f"{label}_acc_given"] = round(float(np.mean(pred[held] == given[held])), 4)
        out[f"{label}_acc_true"] = round(float(np.mean(pred[held] == true[held])), 4)
        out[f"{label}_mean_conf"] = round(float(P.max(1).mean()), 4)
    a, b = probs["sklearn"], probs["shipped"]
    top3 = lambda P: np.sort(np.argsort(-P, axis=1)[:, :3], axis=1)  # noqa: E731
    out["top1_same"] = round(float(np.mean(a.argmax(1) == b.argmax(1))), 4)
    out["top3_set_same"] = round(float(np.mean((top3(a) == top3(b)).all(axis=1))), 4)
    out["max_abs_prob_diff"] = float(np.abs(a - b).max())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=("banking", "grown"), default="banking")
    parser.add_argument("--db", type=Path, default=None, help="a run's database instead of a case")
    parser.add_argument("--truth", type=Path, default=None, help="the export's truth file (true intents), with --db")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(run(args.case, db=args.db, truth=args.truth), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
