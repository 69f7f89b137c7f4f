"""Encoder backends: throughput and accuracy of torch vs ONNX Runtime (fp32 and int8).

On the real export's distinct texts, in one process (so every figure shares the machine's
load at that moment; the load average is printed with each row):

1. **Throughput** (utterances/s, best of ``--repeat``, after a warm-up batch; model loading
   and the one-off ONNX export are not counted) of ``torch`` at each batch size with torch's
   default thread count and with ``torch.set_num_threads(os.cpu_count())``, and of ``onnx``
   and ``onnx-int8`` at each batch size.
2. **Vectors**: per-text cosine between each backend's vectors and torch's (mean, min).
3. **Local model agreement**: the local model (:class:`hl_debug.models.intent_model.LocalIntentModel`)
   trained on the ``training`` rows' vectors of each backend, and its top-label agreement
   with the live API's recorded labels (as ``benchmarks/predict_throughput.py`` computes it).

The label-issue effect is measured separately with ``benchmarks/label_noise.py --quick``
under ``HL_ENCODER_BACKEND=...`` (each backend's vectors are cached under their own identity).
Prints Markdown tables for ``benchmarks/RESULTS.md`` ("Encoder backends").

Example::

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/encoder_backends.py --batch-sizes 32,128
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/encoder_backends.py --limit 200 --backends onnx-int8 --batch-sizes 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"

from benchmarks._timing import best_of  # noqa: E402
from benchmarks.synthetic import spread  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def load_avg() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def agreement(X: np.ndarray, texts: list[str], rows: list[dict], recorded: list[dict]) -> float:
    """Top-label agreement with the recorded API labels of a local model trained on ``X``'s training rows."""
    from hl_debug.models.intent_model import LocalIntentModel

    by_text = {t: i for i, t in enumerate(texts)}
    train = [r for r in rows if r["usage"] == "training" and r["intent"]]
    model = LocalIntentModel().fit(X[[by_text[r["text"]] for r in train]], [r["intent"] for r in train])
    answered = [(it["data"]["text"], it["predictions"][0]["value"][0]["label"])
                for it in recorded if it["predictions"] and it["predictions"][0]["value"]
                and it["data"]["text"] in by_text]
    pred = model.predict(X[[by_text[t] for t, _ in answered]])
    return float(np.mean([p == lbl for p, (_, lbl) in zip(pred, answered)]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", type=Path, default=SHARED / "chatbot_intent_classifier_data.json.zip")
    ap.add_argument("--recorded", type=Path, default=SHARED / "recorded_predictions_project411.json")
    ap.add_argument("--batch-sizes", default="32,64,128")
    ap.add_argument("--backends", default="torch,onnx,onnx-int8")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="only N of the export's rows, spread over it (a quick check)")
    ap.add_argument("--cache-dir", default=None, help="ONNX export folder (default: encoders/ beside HL_DB)")
    args = ap.parse_args(argv)
    import torch

    from hl_debug.models.encoders import SentenceEncoder
    from hl_debug.steps.ingest import read_export, validate

    rows, problems = validate(read_export(args.export))
    if problems:
        raise SystemExit(f"{args.export}: {len(problems)} invalid field(s), first: {problems[0]}")
    rows = spread(rows, args.limit)
    texts = sorted({r["text"] for r in rows})
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    default_threads = torch.get_num_threads()
    print(f"{len(texts)} distinct texts; {os.cpu_count()} cores ({platform.machine()}), torch default threads "
          f"{default_threads}, load average {load_avg()} at start\n", flush=True)
    print("| backend | threads | batch | seconds | utt/s | load avg |\n|---|---|---:|---:|---:|---:|", flush=True)
    vectors: dict[str, np.ndarray] = {}
    speed: dict[str, float] = {}
    for backend in args.backends.split(","):
        enc = SentenceEncoder(backend=backend, cache_dir=args.cache_dir).fit()
        enc.transform(texts[:64])  # warm-up (and the one-off export for ONNX)
        settings = [("default", default_threads), ("cpu_count", os.cpu_count())] if backend == "torch" else [("ort", 0)]
        for label, n_threads in settings:
            if backend == "torch":
                torch.set_num_threads(n_threads)
            for bs in sizes:
                enc.set_params(batch_size=bs)
                secs, X = best_of(args.repeat, lambda enc=enc: enc.transform(texts))
                speed[f"{backend}/{label}/{bs}"] = len(texts) / secs
                vectors.setdefault(backend, X)
                print(f"| {backend} | {label} ({n_threads or 'ORT default'}) | {bs} | {secs:.1f} | "
                      f"{len(texts) / secs:.0f} | {load_avg()} |", flush=True)
        if backend == "torch":
            torch.set_num_threads(default_threads)

    recorded = json.loads(args.recorded.read_text(encoding="utf-8")) if args.recorded.exists() else None
    ref = vectors.get("torch")
    print("\n| backend | cosine to torch: mean | min | local-model agreement with API labels |\n|---|---:|---:|---:|")
    for backend, X in vectors.items():
        cos = (X * ref).sum(1) if ref is not None else np.full(len(X), np.nan)
        agree = agreement(X, texts, rows, recorded) if recorded else float("nan")
        print(f"| {backend} | {cos.mean():.5f} | {cos.min():.5f} | {agree:.4f} |", flush=True)
    print(f"\n({time.strftime('%Y-%m-%d %H:%M')}, load average {load_avg()} at end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
