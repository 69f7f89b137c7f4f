"""The label-issue detector's stacker: lbfgs (the solver before) against newton-cholesky, same run.

:class:`~hl_debug.scoring.stackers.AnchoredLogisticRegression` is refitted ~38 times per
detector fit (its folds, the reweighting passes, 20 bootstrap resamples), on a few thousand
synthetic rows of ~6 columns, one of them scaled x30. lbfgs at scikit-learn's default
tolerance needed 200-400 iterations there and stopped short of the optimum; Newton steps
reach it in ~11. This fits the whole :class:`~hl_debug.scoring.label_detector.LabelIssueDetector`
with each solver on the same rows, alternating, and prints the CPU seconds of the fit (one BLAS
thread, the detector's default; ``process_time``, less sensitive to other jobs than wall time), AUPRC on the planted
flips, the flagged count, the estimated number of errors, the overlap of the top 100 and the
largest posterior difference.

Cases: banking77 (13,083 rows, 77 intents) and a 150-intent proxy of it (the 73 largest intents
split in two by k-means on their vectors, as ``make_many_intents_export.py`` does), each with 5%
uniform planted flips, no API evidence.

Run::

    python benchmarks/stacker_solver.py            # both cases, 2 repeats
    python benchmarks/stacker_solver.py --quick    # 3,000 banking rows, one repeat (the smoke test)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _case(intents: int, rows: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(X, given labels, flipped mask, n_classes)``: banking77's annotated rows, its 73 largest
    intents split in two when ``intents`` is 150, 5% uniform flips (seed 0)."""
    from sklearn.cluster import KMeans

    from benchmarks.cases import banking

    case = banking(flip_rate=0, unannotated=0)
    keep = np.flatnonzero(case.annotated)
    if rows is not None:
        keep = np.sort(np.random.default_rng(0).choice(keep, size=min(rows, len(keep)), replace=False))
    X = case.vectors[keep].astype(np.float32)
    names = np.array([case.labels[i] for i in keep], dtype=object)
    y = np.unique(names, return_inverse=True)[1]
    K = int(y.max()) + 1
    if intents > K:
        for c in np.argsort(-np.bincount(y), kind="stable")[: intents - K]:
            r = np.flatnonzero(y == c)
            half = KMeans(n_clusters=2, n_init=2, random_state=0).fit_predict(X[r])
            y[r[half == 1]] = K
            K += 1
    rng = np.random.default_rng(0)
    flipped = rng.random(len(y)) < 0.05
    given = y.copy()
    given[flipped] = (y[flipped] + rng.integers(1, K, int(flipped.sum()))) % K
    return X, given, flipped, K


def lbfgs_stacker() -> Any:
    """The stacker as it was before newton-cholesky: lbfgs at scikit-learn's default tol."""
    from hl_debug.scoring.stackers import AnchoredLogisticRegression

    return AnchoredLogisticRegression(solver="lbfgs", tol=1e-4)


def run(intents: int, *, rows: int | None = None, repeats: int = 2) -> list[dict]:
    from sklearn.metrics import average_precision_score

    from hl_debug.neighbors import knn
    from hl_debug.scoring.label_detector import LabelIssueDetector

    X, given, flipped, K = _case(intents, rows)
    neighbors = knn(X, 20)
    solvers = {"lbfgs (before)": lbfgs_stacker(), "newton-cholesky (shipped)": None}
    cpu: dict[str, list[float]] = {name: [] for name in solvers}
    fitted: dict[str, LabelIssueDetector] = {}
    for _ in range(repeats):
        for name, meta in solvers.items():
            t = time.process_time()
            fitted[name] = LabelIssueDetector(use_api=False, meta_model=meta).fit(X, given, n_classes=K,
                                                                                 neighbors=neighbors)
            cpu[name].append(time.process_time() - t)
    before, after = fitted.values()
    top = [set(np.argsort(-d.scores_, kind="stable")[:100].tolist()) for d in (before, after)]
    out = []
    for name, det in fitted.items():
        out.append({"case": f"{intents} intents", "rows": len(X), "flips": int(flipped.sum()), "solver": name,
                    "cpu_s": float(np.median(cpu[name])), "auprc": float(average_precision_score(flipped, det.scores_)),
                    "flagged": int(det.flagged_.sum()), "estimated": float(det.posterior_.sum()),
                    "top100_shared": len(top[0] & top[1]),
                    "max_posterior_diff": float(np.abs(before.posterior_ - after.posterior_).max())})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="3,000 banking rows, 77 intents, one repeat")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    load = os.getloadavg()[0]
    cells = [(77, 3000)] if args.quick else [(77, None), (150, None)]
    rows = [r for intents, n in cells for r in run(intents, rows=n, repeats=1 if args.quick else args.repeats)]
    print("| case | rows | planted flips | stacker solver | detector fit CPU s | AUPRC | flagged | estimated errors | "
          "top-100 shared | max posterior diff |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['rows']:,} | {r['flips']} | {r['solver']} | {r['cpu_s']:.1f} | {r['auprc']:.4f} | "
              f"{r['flagged']} | {r['estimated']:.0f} | {r['top100_shared']} | {r['max_posterior_diff']:.4f} |")
    print(f"\nload average {load:.2f} at start, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
