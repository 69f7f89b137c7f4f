"""The two engines side by side on one machine: embedding, the local model's scoring and the
out-of-fold folds, local vs Ray, in the same run (issue 16.6).

Takes ``--rows`` texts of the grown export (``benchmarks.cases.grown``, 20,000 by default),
then for each piece of per-row work the engines run — embedding with the default encoder,
scoring those vectors with the fitted local model, the label-issue step's 5-fold
``cross_val_predict`` — times it on the ``local`` engine and on a local Ray of ``--workers``
CPUs (actors / tasks), checks both give the same numbers, and reports the per-worker
throughput: what a cluster of W such workers would do, W times over, where the work is
per-row (embedding, scoring) — and the cost at 10M rows it implies. Ray's start-up is timed
apart (paid once per process).

Run:  python benchmarks/engine_scaling.py [--rows 20000] [--workers 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

log = logging.getLogger("benchmarks.engine_scaling")
TEN_MILLION = 10_000_000


def _timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _collect(batches, n: int) -> np.ndarray:
    """Results of an engine's ``(rows, values)`` batches, put back in row order."""
    out = None
    for rows, values in batches:
        values = np.asarray(values)
        if out is None:
            out = np.zeros((n, *values.shape[1:]), dtype=values.dtype)
        out[rows] = values
    assert out is not None
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray (actors and tasks)")
    ap.add_argument("--batch-size", type=int, default=512)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from benchmarks import cases
    from hl_debug.engines import LocalEngine, get_engine
    from hl_debug.models.encoders import SentenceEncoder
    from hl_debug.models.intent_model import LocalIntentModel
    from hl_debug.scoring.label_issues import out_of_fold_probabilities
    from hl_debug.threads import limit_threads

    case = cases.grown(max(args.rows, 2_327), flip_rate=0.0)
    keep = [i for i, label in enumerate(case.labels) if label][: args.rows]
    texts = [case.texts[i] for i in keep]
    labels = np.array([case.labels[i] for i in keep])
    classes, y = np.unique(labels, return_inverse=True)
    by_length = np.argsort([len(t) for t in texts], kind="stable")  # as the embed step hands them over
    texts = [texts[i] for i in by_length]
    y = y[by_length]
    encoder = SentenceEncoder().fit()
    encoder.transform(texts[:32])  # load and warm up outside the timings
    local, ray = LocalEngine(), get_engine("ray", num_cpus=args.workers, concurrency=args.workers)
    start_s, _ = _timed(ray.start)
    load = os.getloadavg()
    print(f"engine scaling, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {len(texts):,} texts "
          f"({case.name}), {len(classes)} intents, {os.cpu_count()} cores, Ray with {args.workers} CPUs "
          f"(started in {start_s:.1f} s), load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")

    rows = []
    t_local, X = _timed(lambda: _collect(local.encode(encoder, texts, batch_size=args.batch_size), len(texts)))
    t_ray, X_ray = _timed(lambda: _collect(ray.encode(encoder, texts, batch_size=args.batch_size), len(texts)))
    rows.append(("embed (all-MiniLM-L6-v2, ONNX fp32)", t_local, t_ray, float(np.abs(X - X_ray).max())))
    log.info("embed: local %.1f s, ray %.1f s", t_local, t_ray)

    model = LocalIntentModel().fit(X, classes[y])
    t_local, P = _timed(lambda: _collect(local.predict_proba(model, X, batch_size=4096), len(texts)))
    t_ray, P_ray = _timed(lambda: _collect(ray.predict_proba(model, X, batch_size=4096), len(texts)))
    rows.append(("score (local model predict_proba)", t_local, t_ray, float(np.abs(P - P_ray).max())))
    log.info("score: local %.1f s, ray %.1f s", t_local, t_ray)

    # as the signals step runs them: one BLAS thread in this process (Ray's tasks get one each)
    with limit_threads(1), local.parallel(n_bytes=X.nbytes):
        t_local, oof = _timed(lambda: out_of_fold_probabilities(X, y, n_classes=len(classes)))
    with limit_threads(1), ray.parallel():
        t_ray, oof_ray = _timed(lambda: out_of_fold_probabilities(X, y, n_classes=len(classes)))
    rows.append(("out-of-fold folds (5-fold cross_val_predict)", t_local, t_ray, float(np.abs(oof - oof_ray).max())))
    log.info("folds: local %.1f s, ray %.1f s", t_local, t_ray)

    n, w = len(texts), args.workers
    print(f"| work | local (s) | Ray, {w} workers (s) | Ray / local | per Ray worker (rows/s) | max abs difference |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, a, b, diff in rows:
        print(f"| {name} | {a:.1f} | {b:.1f} | {b / a:.2f} | {n / b / w:,.0f} | {diff:.1e} |")
    print("\nEmbedding at 10M rows from its per-worker figure (embedding only; the driver's store writes, "
          "kNN, map and signals are not included; scoring is left out: at this size its time is the Ray "
          "job's fixed start, not a per-row cost):\n")
    print("| work | 1 worker | 16 workers | 64 workers |")
    print("|---|---:|---:|---:|")
    for name, _, b, _ in rows[:1]:
        per_worker = n / b / w
        cells = [f"{TEN_MILLION / (per_worker * k) / 3600:.2f} h" for k in (1, 16, 64)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    import ray as ray_module

    ray_module.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
