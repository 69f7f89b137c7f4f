"""Encoder determinism: is a text's vector the same whatever its batch, and at what speed?

On the bundled export's distinct texts, in one process (so every figure shares the machine's
load; the load average is printed), for each backend (default: torch, onnx, onnx-int8,
onnx-int8-token):

1. **Self-cosine**: the texts are embedded four times — two shuffled orders at each of two
   batch sizes (``--batch-sizes``, default 32 and 128) — and each text's vectors compared
   with those of the first run: min and median cosine, max absolute difference.
2. **Speed**: utterances/s at the last batch size, best of those runs and ``--repeat`` more;
   the rounds are interleaved over the backends so a burst of load hits them all alike.
3. **Agreement**: mean / min cosine of each text's vector to torch's.
4. **Findings**: near-duplicate pairs (distinct texts at cosine >= 0.99) and train/eval leak
   pairs (a text with a ``training`` row and another with a ``validation``/``testing`` row at
   cosine >= 0.95), from :func:`hl_debug.neighbors.knn`, and how many of torch's each
   backend misses.
5. **Effect on the label-issue finding** (``--findings``): uniform flips planted at 5% in the
   annotated rows (``--seeds`` seeds), scored on each backend's vectors with the same
   5-fold logistic regression: AUPRC of cleanlab's self-confidence and of hl-debug's
   :class:`~hl_debug.scoring.label_detector.LabelIssueDetector`, and the accuracy of a
   k-NN (k = 10) vote on the evaluation rows trained on the training rows.

Prints Markdown tables for ``benchmarks/RESULTS.md``. ``--quick`` takes a few hundred texts and
no extra repeats (a CI smoke test).

Example::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/encoder_determinism.py --repeat 2
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/encoder_determinism.py --repeat 0 --findings --seeds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DUPLICATE_AT, LEAK_AT, K = 0.99, 0.95, 30


def load_avg() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def pairs_at(X: np.ndarray, threshold: float) -> set[tuple[int, int]]:
    """Unordered pairs ``(i, j)``, ``i < j``, of rows at cosine >= ``threshold`` (among each row's K nearest)."""
    from hl_debug.neighbors import knn

    idx, sim = knn(X, min(K, len(X) - 1))
    if (sim[:, -1] >= threshold).any():
        print(f"warning: some rows have more than {K} neighbours at >= {threshold}; counts are lower bounds")
    rows, cols = np.nonzero(sim >= threshold)
    return {(min(i, j), max(i, j)) for i, j in zip(rows.tolist(), idx[rows, cols].tolist())}


def leak_pairs(X: np.ndarray, in_train: np.ndarray, in_eval: np.ndarray) -> set[tuple[int, int]]:
    """Pairs at >= LEAK_AT with one text in ``training`` and the other in an evaluation split."""
    return {(i, j) for i, j in pairs_at(X, LEAK_AT)
            if (in_train[i] and in_eval[j]) or (in_eval[i] and in_train[j])}


def finding_effect(X_text: np.ndarray, pos: dict[str, int], rows: list[dict], seeds: int) -> dict[str, float]:
    """Label-issue AUPRC (cleanlab self-confidence, hl-debug's detector) with 5% planted uniform
    flips over ``seeds`` seeds, and k-NN accuracy on the evaluation rows, on one backend's vectors."""
    from sklearn.metrics import average_precision_score
    from sklearn.neighbors import KNeighborsClassifier

    from hl_debug.domain import EVAL_SPLITS
    from hl_debug.scoring.label_detector import LabelIssueDetector
    from hl_debug.scoring.label_issues import cleanlab_scores, encode_labels, inject_noise, out_of_fold_probabilities

    annotated = [r for r in rows if r.get("intent") and r["text"] in pos]
    X = X_text[[pos[r["text"]] for r in annotated]]
    classes = sorted({r["intent"] for r in annotated})
    y = encode_labels([r["intent"] for r in annotated], classes)
    cl, hl = [], []
    for seed in range(seeds):
        noisy, flipped = inject_noise(y, rate=0.05, kind="uniform", n_classes=len(classes), random_state=seed)
        probs = out_of_fold_probabilities(X, noisy, n_classes=len(classes), random_state=seed)
        cl.append(average_precision_score(flipped, -cleanlab_scores(noisy, probs)))
        det = LabelIssueDetector(random_state=seed).fit(X, noisy, n_classes=len(classes))
        hl.append(average_precision_score(flipped, det.scores_))
    train = np.array([r["usage"] == "training" for r in annotated])
    test = np.array([r["usage"] in EVAL_SPLITS for r in annotated])
    knn = KNeighborsClassifier(10, metric="cosine").fit(X[train], y[train])
    return {"cleanlab": float(np.mean(cl)), "hl": float(np.mean(hl)), "knn_acc": float(knn.score(X[test], y[test]))}


def shuffled(enc, texts: list[str], seed: int, batch_size: int) -> tuple[float, np.ndarray]:  # noqa: ANN001
    """Seconds taken and the vectors (in ``texts``' order) of one shuffled run."""
    order = np.random.default_rng(seed).permutation(len(texts))
    enc.batch_size = batch_size
    t0 = time.perf_counter()
    X = enc.transform([texts[i] for i in order])
    secs = time.perf_counter() - t0
    out = np.empty_like(X)
    out[order] = X
    return secs, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", type=Path, default=SHARED / "chatbot_intent_classifier_data.json.zip")
    ap.add_argument("--backends", default="torch,onnx,onnx-int8,onnx-int8-token")
    ap.add_argument("--batch-sizes", default="32,128", help="two batch sizes; speed is timed at the last")
    ap.add_argument("--repeat", type=int, default=2, help="extra timed runs per backend (interleaved)")
    ap.add_argument("--quick", action="store_true", help="300 texts, no extra repeats (smoke test)")
    ap.add_argument("--findings", action="store_true", help="also measure the effect on the label-issue finding")
    ap.add_argument("--seeds", type=int, default=3, help="planted-flip seeds for --findings")
    ap.add_argument("--cache-dir", default=None, help="ONNX export folder (default: the user cache)")
    args = ap.parse_args(argv)

    from hl_debug.domain import EVAL_SPLITS
    from hl_debug.models.encoders import SentenceEncoder
    from hl_debug.steps.ingest import read_export, validate

    rows, problems = validate(read_export(args.export))
    if problems:
        raise SystemExit(f"{args.export}: {len(problems)} invalid field(s), first: {problems[0]}")
    texts = sorted({r["text"] for r in rows})
    if args.quick:
        texts, args.repeat = texts[:: max(1, len(texts) // 300)][:300], 0
    pos = {t: i for i, t in enumerate(texts)}
    in_train, in_eval = np.zeros(len(texts), bool), np.zeros(len(texts), bool)
    for r in rows:
        if r["text"] in pos:
            in_train[pos[r["text"]]] |= r["usage"] == "training"
            in_eval[pos[r["text"]]] |= r["usage"] in EVAL_SPLITS
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    backends = args.backends.split(",")
    print(f"{len(texts)} distinct texts, {os.cpu_count()} cores, load average {load_avg()} at start", flush=True)

    encoders = {}
    for b in backends:
        encoders[b] = SentenceEncoder(backend=b, cache_dir=args.cache_dir).fit()
        encoders[b].transform(texts[:64])  # warm-up (and the one-off ONNX export)
    runs: dict[str, list[np.ndarray]] = {b: [] for b in backends}
    best: dict[str, float] = {b: float("inf") for b in backends}
    plan = [(seed, bs) for bs in sizes for seed in (0, 1)] + [(2 + r, sizes[-1]) for r in range(args.repeat)]
    for n, (seed, bs) in enumerate(plan):  # round-robin: one run of every backend per round
        for b in backends:
            secs, X = shuffled(encoders[b], texts, seed, bs)
            if n < 2 * len(sizes):
                runs[b].append(X)
            if bs == sizes[-1]:
                best[b] = min(best[b], secs)
        print(f"round {n + 1}/{len(plan)} (batch {bs}) done, load average {load_avg()}", flush=True)

    ref = runs["torch"][0] if "torch" in runs else None
    found = {b: (pairs_at(runs[b][0], DUPLICATE_AT), leak_pairs(runs[b][0], in_train, in_eval)) for b in backends}
    print(f"\n| backend | utt/s (batch {sizes[-1]}, best of {len(plan) - len(sizes)}) | x torch | self-cos min "
          f"| self-cos median | max abs diff | cos to torch: mean | min | near-dup pairs >= {DUPLICATE_AT} "
          f"(missed vs torch) | leak pairs >= {LEAK_AT} (missed vs torch) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b in backends:
        first = runs[b][0]
        cos = np.min([(first * X).sum(1) for X in runs[b][1:]], axis=0)
        diff = max(float(np.abs(first - X).max()) for X in runs[b][1:])
        speed = len(texts) / best[b]
        ratio = f"{best['torch'] / best[b]:.2f}" if "torch" in best else "-"
        to_ref = (first * ref).sum(1) if ref is not None else np.full(len(texts), np.nan)
        dups, leaks = found[b]
        missed = (f" ({len(found['torch'][0] - dups)})", f" ({len(found['torch'][1] - leaks)})") \
            if "torch" in found else ("", "")
        print(f"| {b} | {speed:.0f} | {ratio} | {cos.min():.4f} | {np.median(cos):.4f} | {diff:.2g} | "
              f"{to_ref.mean():.4f} | {to_ref.min():.4f} | {len(dups)}{missed[0]} | {len(leaks)}{missed[1]} |")
    if args.findings:
        print(f"\n| backend | label-issue AUPRC, cleanlab self-confidence | hl-debug detector | "
              f"k-NN accuracy on evaluation rows |  (5% uniform flips, {args.seeds} seeds)")
        print("|---|---:|---:|---:|")
        for b in backends:
            e = finding_effect(runs[b][0], pos, rows, args.seeds)
            print(f"| {b} | {e['cleanlab']:.4f} | {e['hl']:.4f} | {e['knn_acc']:.4f} |", flush=True)
    print(f"\n({time.strftime('%Y-%m-%d %H:%M')}, load average {load_avg()} at end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
