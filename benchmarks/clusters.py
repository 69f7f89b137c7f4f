"""Clusters benchmark: do the map's clusters respect the true intents, and do their suspects hold the flips?

For each case of ``benchmarks/cases.py`` — banking77 with 5% planted flips (uniform and
towards the most confusable intent; 77 intents, 13k rows), the bundled export grown to 20k
and 100k rows (3% flips) and the bundled export with 5% uniform flips — one exact cosine
15-NN graph and one 5-D clustering UMAP are built exactly as ``analyze`` builds them, then
clustered two ways in the same run:

* **baseline** — the previous rule: HDBSCAN with ``min_cluster_size = min(sqrt(n)/3,
  2.3 n^0.25)``, ``min_samples`` a third of it, ``cluster_selection_epsilon = 0.3 *
  clip(log10(n / 2500), 0, 1)``; suspects = every minority-label row of a cluster (label !=
  the cluster's majority, clusters with >= 5 annotated rows);
* **hl-debug** — the shipped :class:`~hl_debug.models.map.MapAnalyzer` defaults (sub-topic
  sized clusters, a smaller epsilon, epsilon merges mixing more than 3 intents split back and
  any cluster still mixing them cut down HDBSCAN's condensed tree) fitted with the annotated
  labels, and the shipped suspects
  (:func:`hl_debug.scoring.clusters.rank_impure_clusters`: minority-label rows of a cluster
  or its nearest noise points whose label at most 30% of their 10 nearest annotated
  neighbours share, ``likely_error``).

Figures, against the true intents: **majority %** — share of the true intents that are the
majority (true) intent of at least one cluster; **>3 mixed** — clusters in which more than
3 true intents each hold over 10% of the rows, and in brackets how many of those mix only
*genuinely overlapping* intents: the intents form a connected graph when two intents are
joined if at least 3% of either's rows have the other as the majority intent of their 10
nearest neighbours in the encoder space (a property of the data, not of the clustering);
**flips in suspects %** — recall of the planted flips; **richness ×** — the suspects' flip
rate over the annotated rows' flip rate; **noise %**; **ARI / NMI** of the clusters against
the true intents (rows with a known true intent; noise counts as one group); **clusters**;
**cut** — clusters the condensed-tree cut replaced, the clusters they became and the rows it
made noise; **time** — seconds for the kNN graph, the UMAP and the clustering (the baseline's
time includes the same shared kNN and UMAP).

For the bundled export (no planted flips) the script also checks the readings of
``docs/FINDINGS.md`` under the shipped rule: the stop/cancel commands spread over
``new_application``/``card_issue``/``chat_settings`` in one label-impure cluster, the
credit-limit cluster mixing ``credit_question`` and ``finances``, and the "who built you"
topic as the first unannotated region.

Run::

    python benchmarks/clusters.py            # all cases (~10 min on 2 cores; the 100k embed once before)
    python benchmarks/clusters.py --quick    # banking77, 3,000 rows (well under a minute)
    python benchmarks/clusters.py --cases banking,bundled
    python benchmarks/clusters.py --cases banking --seed 7    # another UMAP seed
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score  # noqa: E402

from benchmarks import cases  # noqa: E402
from hl_debug.models.map import MapAnalyzer  # noqa: E402
from hl_debug.neighbors import knn_graph  # noqa: E402
from hl_debug.scoring import clusters as cl  # noqa: E402

log = logging.getLogger("benchmarks.clusters")

K_GRAPH = 15  # analyze's graph: max(n_neighbors 15, k_neighbors 10 + 1)
K_AGREEMENT = 10  # analyze's stored neighbours (--k-neighbors)
OVERLAP_CONFUSION = 0.03
MIXED_SHARE, MIXED_MAX = 0.10, 3
ALL_CASES = ("banking", "grown20k", "grown100k", "bundled")


# -- the previous rule (the baseline) -----------------------------------------------------


def baseline_parameters(n: int) -> tuple[int, int, float]:
    """``(min_cluster_size, min_samples, cluster_selection_epsilon)`` of the rule before this benchmark."""
    mcs = max(5, min(round(min(math.sqrt(n) / 3, 2.3 * n ** 0.25)), max(n // 2, 2)))
    eps = round(0.3 * min(max(math.log10(max(n, 1) / 2500), 0.0), 1.0), 4)
    return mcs, max(2, mcs // 3), eps


class Precomputed:
    """A stand-in UMAP that returns a projection computed once (both rules cluster the same one)."""

    def __init__(self, embedding: np.ndarray) -> None:
        self.embedding = embedding

    def fit_transform(self, X: np.ndarray) -> np.ndarray:
        return self.embedding


# -- figures ------------------------------------------------------------------------------


def knn_confusion(true: list[str | None], idx: np.ndarray) -> dict[tuple[str, str], float]:
    """``{(a, b): share of a's rows whose 10 nearest neighbours' majority true intent is b}`` (a != b)."""
    votes: dict[str, Counter] = {}
    for i, t in enumerate(true):
        if t is None:
            continue
        around = Counter(true[j] for j in idx[i, 1:K_AGREEMENT + 1] if true[j] is not None)
        if around:
            votes.setdefault(t, Counter())[around.most_common(1)[0][0]] += 1
    return {(a, b): v / sum(c.values()) for a, c in votes.items() for b, v in c.items() if a != b}


def overlapping(intents: list[str], confusion: dict[tuple[str, str], float]) -> bool:
    """Whether ``intents`` form one connected graph of genuinely overlapping pairs."""
    def joined(a: str, b: str) -> bool:
        return max(confusion.get((a, b), 0.0), confusion.get((b, a), 0.0)) >= OVERLAP_CONFUSION

    seen, stack = {intents[0]}, [intents[0]]
    while stack:
        a = stack.pop()
        for b in intents:
            if b not in seen and joined(a, b):
                seen.add(b)
                stack.append(b)
    return len(seen) == len(intents)


def figures(case: cases.Case, labels: np.ndarray, suspects: np.ndarray,
            confusion: dict[tuple[str, str], float]) -> dict[str, float]:
    true = case.true
    known = np.array([t is not None for t in true])
    majority, mixed, explained = set(), 0, 0
    for c in np.unique(labels[labels != cl.NOISE]):
        counts = Counter(true[i] for i in np.flatnonzero((labels == c) & known))
        if not counts:
            continue
        majority.add(counts.most_common(1)[0][0])
        total = sum(counts.values())
        big = sorted(t for t, v in counts.items() if v / total > MIXED_SHARE)
        if len(big) > MIXED_MAX:
            mixed += 1
            explained += overlapping(big, confusion)
            log.info("%s: cluster %d mixes %s (%d rows; overlapping: %s)", case.name, c,
                     {t: counts[t] for t in big}, int((labels == c).sum()), overlapping(big, confusion))
    flips = case.flipped
    n_flips = int(flips.sum())
    caught = int((suspects & flips).sum())
    base_rate = n_flips / max(int(case.annotated.sum()), 1)
    t = [true[i] for i in np.flatnonzero(known)]
    return {
        "majority": 100 * len(majority) / len({x for x in true if x is not None}),
        "mixed": mixed, "explained": explained,
        "recall": 100 * caught / n_flips if n_flips else math.nan,
        "richness": (caught / max(int(suspects.sum()), 1)) / base_rate if n_flips else math.nan,
        "noise": 100 * float((labels == cl.NOISE).mean()),
        "ari": adjusted_rand_score(t, labels[known]), "nmi": normalized_mutual_info_score(t, labels[known]),
        "n_clusters": len(np.unique(labels[labels != cl.NOISE])), "n_suspects": int(suspects.sum()),
    }


# -- the two rules --------------------------------------------------------------------------


def minority_rows(labels: np.ndarray, given: list[str | None], min_annotated: int = 5) -> np.ndarray:
    """The baseline's suspects: every annotated member whose label is not its cluster's majority."""
    out = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels[labels != cl.NOISE]):
        members = [i for i in np.flatnonzero(labels == c) if given[i]]
        if len(members) < min_annotated:
            continue
        top = Counter(given[i] for i in members).most_common(1)[0][0]
        out[[i for i in members if given[i] != top]] = True
    return out


def baseline(case: cases.Case, X: np.ndarray, knn: tuple, reduced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mcs, ms, eps = baseline_parameters(len(X))
    model = MapAnalyzer(map_model=Precomputed(np.zeros((len(X), 2))), reduce_model=Precomputed(reduced),
                        min_cluster_size=mcs, min_samples=ms, cluster_selection_epsilon=eps,
                        max_cluster_labels=None).fit(X, knn=knn)
    return model.labels_, minority_rows(model.labels_, case.labels), {}


def shipped(case: cases.Case, X: np.ndarray, knn: tuple, reduced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    model = MapAnalyzer(map_model=Precomputed(np.zeros((len(X), 2))), reduce_model=Precomputed(reduced))
    model.fit(X, case.labels, knn=knn)
    return model.labels_, shipped_suspects(case, model.labels_, model.nearest_cluster_, knn), model.cut_


def shipped_suspects(case: cases.Case, labels: np.ndarray, nearest: np.ndarray, knn: tuple) -> np.ndarray:
    stats = cl.cluster_stats(labels, case.labels, case.splits)
    agreement = cl.neighbor_label_agreement(knn[0][:, 1:K_AGREEMENT + 1], case.labels)
    ranked = cl.rank_impure_clusters(stats, labels, case.labels, np.arange(len(labels)),
                                     neighbor_agreement=agreement, nearest_cluster=nearest)
    out = np.zeros(len(labels), dtype=bool)
    out[[s["id"] for r in ranked for s in r["suspects"] if s["likely_error"]]] = True
    return out


RULES: dict[str, Callable] = {"baseline": baseline, "hl-debug": shipped}


# -- the bundled export's readings -----------------------------------------------------------


def bundled_readings(case: cases.Case, X: np.ndarray, knn: tuple, reduced: np.ndarray) -> list[str]:
    """The docs/FINDINGS.md readings under the shipped rule, each ``"ok: ..."`` or ``"LOST: ..."``."""
    model = MapAnalyzer(map_model=Precomputed(np.zeros((len(X), 2))), reduce_model=Precomputed(reduced))
    labels = model.fit(X, case.labels, knn=knn).labels_
    log.info("bundled export: %d clusters, %d noise, cut %s", model.n_clusters_, int((labels == cl.NOISE).sum()),
             model.cut_)
    stats = cl.cluster_stats(labels, case.labels, case.splits)
    keywords = cl.cluster_keywords(case.texts, labels)
    agreement = cl.neighbor_label_agreement(knn[0][:, 1:K_AGREEMENT + 1], case.labels)
    impure = cl.rank_impure_clusters(stats, labels, case.labels, case.ids, neighbor_agreement=agreement,
                                     nearest_cluster=model.nearest_cluster_)
    regions = cl.rank_unannotated_regions(labels, case.labels, case.ids, nearest_cluster=model.nearest_cluster_)
    out = []

    def find(words: set[str], intents: set[str], top: int) -> dict | None:
        return next((r for r in impure[:top] if words & set(" ".join(keywords.get(r["cluster_id"], [])).split())
                     and intents <= set(r["label_counts"])), None)

    for name, words, intents, top in (
            ("stop/cancel spread", {"stop", "cancel", "talking", "abort"},
             {"new_application", "card_issue", "chat_settings"}, 5),
            ("credit-limit boundary", {"limit"}, {"credit_question", "finances"}, 10)):
        r = find(words, intents, top)
        out.append(f"{'ok' if r else 'LOST'}: {name}" + (
            f" (impure #{r['rank']}, cluster {r['cluster_id']}: {dict(list(r['label_counts'].items())[:3])}, "
            f"{r['n_likely_errors']} likely errors of {len(r['suspects'])} suspects)" if r else ""))
    first = regions[0] if regions else None
    cid = first and (first["cluster_id"] if first["cluster_id"] != cl.NOISE else first["near_cluster"])
    words = keywords.get(cid, []) if first else []
    who = bool(set(" ".join(words).split()) & {"built", "programmed", "designed", "developed", "made", "company"})
    out.append(f"{'ok' if who else 'LOST'}: 'who built you' first unannotated region"
               + (f" ({first['region']}: {', '.join(words[:4])}; {first['n_unannotated']} of {first['size']} unannotated)"
                  if first else ""))
    return out


# -- the run ---------------------------------------------------------------------------------


def load_cases(names: list[str], quick: bool) -> list[tuple[str, list[cases.Case], cases.Case | None]]:
    """``(data name, cases sharing its vectors, the bundled export without flips or None)``."""
    out = []
    for name in names:
        if name == "banking":
            rows = 3000 if quick else None
            out.append((name, [cases.banking(rows=rows), cases.banking(rows=rows, flip_mode="confusable")], None))
        elif name.startswith("grown"):
            out.append((name, [cases.grown(int(name[5:].replace("k", "000")))], None))
        elif name == "bundled":
            out.append((name, [cases.bundled(flip_rate=0.05)], cases.bundled()))
        else:
            raise SystemExit(f"unknown case {name!r}; valid: {', '.join(ALL_CASES)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="banking77 only, 3,000 rows")
    parser.add_argument("--cases", default=",".join(ALL_CASES), help=f"comma-separated, of {', '.join(ALL_CASES)}")
    parser.add_argument("--seed", type=int, default=MapAnalyzer().random_state, help="the clustering UMAP's seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("hl_debug").setLevel(logging.WARNING)
    names = ["banking"] if args.quick else [c.strip() for c in args.cases.split(",") if c.strip()]
    load = os.getloadavg()[0]
    rows, readings = [], []
    for name, group, plain in load_cases(names, args.quick):
        X = group[0].vectors
        t0 = time.perf_counter()
        knn = knn_graph(X, min(K_GRAPH, len(X)), metric="cosine")
        analyzer = MapAnalyzer(random_state=args.seed)
        k = min(analyzer.n_neighbors, len(X) - 1)
        from hl_debug.models.map import _fit_transform

        reduce_model = analyzer.umap_model(analyzer.n_components, analyzer.cluster_min_dist, k,
                                           (knn[0][:, :k], knn[1][:, :k].astype(np.float32), None))
        reduced = _fit_transform(reduce_model, X)
        shared = time.perf_counter() - t0
        log.info("%s: %d rows, kNN + UMAP %.0f s", name, len(X), shared)
        confusion = knn_confusion(group[0].true, knn[0])
        for case in group:
            for rule, fit in RULES.items():
                t1 = time.perf_counter()
                labels, suspects, cut = fit(case, X, knn, reduced)
                elapsed = shared + time.perf_counter() - t1
                rows.append((case.name, rule, {**figures(case, labels, suspects, confusion), **cut}, elapsed))
                log.info("%s %s done", case.name, rule)
        if plain is not None:
            readings = bundled_readings(plain, X, knn, reduced)
    print(f"\nload average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end; {os.cpu_count()} CPUs\n")
    print("| case | rule | intents as majority % | clusters >3 intents >10% (overlapping) | flips in suspects % "
          "| suspect flip richness × | noise % | cut: clusters → parts (rows to noise) | ARI | NMI | clusters "
          "| suspects | time s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, rule, f, elapsed in rows:
        cut = f"{f['n_cut']} → {f['n_parts']} ({f['n_noise']:,})" if "n_cut" in f else "–"
        print(f"| {name} | {rule} | {f['majority']:.1f} | {f['mixed']} ({f['explained']}) | {f['recall']:.1f} | "
              f"{f['richness']:.1f} | {f['noise']:.1f} | {cut} | {f['ari']:.3f} | {f['nmi']:.3f} | "
              f"{f['n_clusters']:,} | {f['n_suspects']:,} | {elapsed:.0f} |")
    for line in readings:
        print(f"- bundled export reading {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
