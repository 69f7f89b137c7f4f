"""The local model at many intents: calibration folds by rows x intents, against the previous rule, same run.

The calibrated local model (:class:`~hl_debug.models.intent_model.LocalIntentModel`: logistic
regression, C=10, lbfgs, sigmoid calibration on ``cv`` folds, one BLAS thread) is fitted on the
training rows of a case twice: with the previous fold rule (5 folds up to 10,000 training rows)
and with the shipped one (3 folds also above 120,000 training rows x intents). Figures: fit
seconds, accuracy of each against the given labels and the true intents on the non-training
annotated rows, and the share of rows whose top-1 intent (and top-3 set) is the same.

Run::

    python benchmarks/linear_models.py                 # banking77: 9,632 training rows, 77 intents
    python benchmarks/linear_models.py --case grown    # the grown 20k export: 12 intents (3 folds either way)
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


def run(case_name: str = "banking") -> dict:
    from benchmarks.cases import banking, grown
    from hl_debug.models import intent_model as im

    case = banking() if case_name == "banking" else grown(rows=20000)
    X = case.vectors
    given = np.array([v or "" for v in case.labels], dtype=object)
    true = np.array([v or "" for v in case.true], dtype=object)
    split = np.array(case.splits, dtype=object)
    train, held = (split == "training") & (given != ""), (split != "training") & (given != "")
    out: dict = {"case": case.name, "train_rows": int(train.sum()), "intents": len(set(given[train]))}
    probs = {}
    for name, work in (("previous", float("inf")), ("shipped", im.LARGE_TRAINING_WORK)):
        old, im.LARGE_TRAINING_WORK = im.LARGE_TRAINING_WORK, work
        try:
            folds = im.calibration_folds(np.unique(given[train], return_counts=True)[1])
            t = time.perf_counter()
            model = im.LocalIntentModel().fit(X[train], given[train].astype(str))
            out[f"{name}_fit_s"] = round(time.perf_counter() - t, 1)
        finally:
            im.LARGE_TRAINING_WORK = old
        P = model.predict_proba(X)
        probs[name] = P
        pred = model.classes_[P.argmax(1)]
        out[f"{name}_folds"] = folds
        out[f"{name}_acc_given"] = round(float(np.mean(pred[held] == given[held])), 4)
        out[f"{name}_acc_true"] = round(float(np.mean(pred[held] == true[held])), 4)
    a, b = probs["previous"], probs["shipped"]
    top3 = lambda P: np.sort(np.argsort(-P, axis=1)[:, :3], axis=1)  # noqa: E731
    out["top1_same"] = round(float(np.mean(a.argmax(1) == b.argmax(1))), 4)
    out["top3_set_same"] = round(float(np.mean((top3(a) == top3(b)).all(axis=1))), 4)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=("banking", "grown"), default="banking")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    print(json.dumps(run(args.case), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
