"""Sentence-embedding throughput (utterances/s) on the real export, and the analyze stages' times.

Embeds the export's distinct texts with the configured encoder (default: the bundled
all-MiniLM-L6-v2) at several batch sizes, after one warm-up batch, and reports
utterances per second (model loading is timed separately). With ``--analyze`` it then
times each stage of the analyze step on those vectors (exact kNN graph, UMAP 5-D, UMAP
2-D, HDBSCAN, cluster statistics) and reports the number of clusters and the noise share.
Each figure is the best of ``--repeat`` runs. Prints Markdown tables (copied into the
``## Map`` section of ``benchmarks/RESULTS.md``).

Example::

    HF_HUB_OFFLINE=1 python benchmarks/embed_throughput.py --batch-sizes 32,64,128 --analyze
    HF_HUB_OFFLINE=1 python benchmarks/embed_throughput.py --limit 200 --batch-sizes 32 --analyze   # a quick check
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data" / "chatbot_intent_classifier_data.json.zip"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--export", type=Path, default=REAL)
    ap.add_argument("--encoder", default=None, help="sentence-transformers name/path (default: HL_ENCODER or bundled)")
    ap.add_argument("--batch-sizes", default="32,64,128")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--limit", type=int, default=None, help="only N of the export's rows, spread over it (a quick check)")
    ap.add_argument("--analyze", action="store_true", help="also time the analyze stages")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(ROOT))
    import torch

    from benchmarks._timing import best_of
    from benchmarks.synthetic import spread
    from hl_debug.models.encoders import SentenceEncoder
    from hl_debug.steps.ingest import read_export, validate

    rows, problems = validate(read_export(args.export))
    if problems:
        raise SystemExit(f"{args.export}: {len(problems)} invalid field(s), first: {problems[0]}")
    rows = spread(rows, args.limit)
    texts = sorted({r["text"] for r in rows})
    out: list[str] = []
    t0 = time.perf_counter()
    enc = SentenceEncoder(args.encoder).fit()
    load_s = time.perf_counter() - t0
    enc.transform(texts[:32])  # warm-up
    out += [f"Encoder `{enc.identity}`, {len(texts)} distinct texts, torch threads {torch.get_num_threads()}, "
            f"model load {load_s:.1f} s.", "",
            "| batch size | seconds | utterances/s |", "|---:|---:|---:|"]
    print("\n".join(out), flush=True)
    X = None
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        enc.set_params(batch_size=bs)
        secs, X = best_of(args.repeat, lambda: enc.transform(texts))
        out.append(f"| {bs} | {secs:.1f} | {len(texts) / secs:.0f} |")
        print(out[-1], flush=True)

    if args.analyze:
        from hl_debug.models.map import (
            MapAnalyzer,
            default_cluster_selection_epsilon,
            default_min_cluster_size,
            default_min_samples,
            import_umap,
        )
        from hl_debug.neighbors import knn_graph
        from hl_debug.scoring import clusters as cl

        by_text = {t: i for i, t in enumerate(texts)}
        V = X[[by_text[r["text"]] for r in rows]]  # one vector per utterance, as analyze sees them
        intents = [r["intent"] for r in rows]
        usages = [r["usage"] for r in rows]
        m = MapAnalyzer()
        umap = import_umap()
        stages: list[tuple[str, float]] = []
        secs, knn = best_of(args.repeat, lambda: knn_graph(V, 15))
        stages.append(("exact cosine kNN graph (k=15, scikit-learn)", secs))
        shared = (knn[0], knn[1], None)
        import warnings

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
            t0 = time.perf_counter()
            m.umap_model(5, 0.0, 15, shared).fit_transform(V)
            stages.append(("UMAP 5-D, first call (includes numba JIT)", time.perf_counter() - t0))
            secs, reduced = best_of(args.repeat, lambda: m.umap_model(5, 0.0, 15, shared).fit_transform(V))
            stages.append(("UMAP 5-D (clustering)", secs))
            secs, xy = best_of(args.repeat, lambda: m.umap_model(2, 0.1, 15, shared).fit_transform(V))
            stages.append(("UMAP 2-D (map)", secs))
        mcs = default_min_cluster_size(len(V))
        ms = default_min_samples(mcs)
        eps = default_cluster_selection_epsilon(len(V))
        secs, h = best_of(args.repeat, lambda: m.hdbscan_model(mcs, ms, eps).fit(reduced))
        stages.append((f"HDBSCAN (min_cluster_size={mcs}, min_samples={ms}, cluster_selection_epsilon={eps:g})", secs))
        labels = h.labels_

        def stats():
            s = cl.cluster_stats(labels, intents, usages, points_2d=xy)
            cl.cluster_keywords([r["text"] for r in rows], labels)
            return s

        secs, _ = best_of(args.repeat, stats)
        stages.append(("cluster statistics + c-TF-IDF keywords", secs))
        noise = float((labels == -1).mean())
        out += ["", f"Analyze stages on {len(V)} utterances (umap-learn {umap.__version__}): "
                f"{labels.max() + 1} clusters, noise {100 * noise:.1f}%.", "",
                "| stage | seconds |", "|---|---:|"]
        out += [f"| {name} | {secs:.2f} |" for name, secs in stages]
        print("\n".join(out[-len(stages) - 5:]), flush=True)
    print(f"\n({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, {platform.processor() or platform.machine()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
