"""The approximate path against the exact one, in the same run: neighbours, map, clusters, label issues.

For a grown export (``benchmarks/cases.py`` ``grown(rows=...)``, vectors cached) the script
builds everything the pipeline builds above ``HL_APPROX_ABOVE`` and below it, on the same
vectors and labels:

* **kNN** — the exact blocked cosine kNN (:func:`hl_debug.neighbors.knn`) and the usearch HNSW
  graph (:func:`hl_debug.neighbors.approximate_knn`), 32 wide as the pipeline computes it;
  **recall@10** = share of each row's 10 exact neighbours the approximate graph lists in its first 10.
* **map + clusters** — :class:`~hl_debug.models.map.MapAnalyzer` with the shipped defaults on the
  exact graph, and with ``approx_above`` below n on the approximate graph (UMAPs and HDBSCAN
  fitted on a stratified sample of ``--sample-size`` rows, the rest placed by ``transform`` and
  ``approximate_predict``); **ARI** of the two clusterings (noise one group), clusters and noise share.
  With ``--seed-floor`` the exact path is fitted again with another UMAP seed: the ARI two
  exact runs reach, the floor any approximation is judged against.
* **label issues** — the shipped label-issue signal on each path's graph and clusters;
  **top-50 overlap** = rows both paths rank among their 50 most suspicious.

Timings are wall seconds on this machine while other jobs share its 2 cores (pessimistic).

Run::

    python benchmarks/scale.py --rows 20000 --sample-size 10000 --seed-floor
    python benchmarks/scale.py --rows 100000              # sample 25,000 (the default setting)
    python benchmarks/scale.py --quick                    # 3,000 rows, sample 1,500 (CI smoke)
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("benchmarks.scale")

TOP = 50


def recall_at(approx: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's ``k`` exact neighbours found among its first ``k`` approximate ones."""
    a, e = approx[:, :k], exact[:, :k]
    hits = (a[:, :, None] == e[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean() / k)


def graph_of(idx: np.ndarray, sim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The analyzer's input (self first, cosine distances) from a kNN result."""
    n = len(idx)
    out_idx = np.concatenate([np.arange(n)[:, None], idx[:, :k - 1]], axis=1)
    out_dist = np.concatenate([np.zeros((n, 1), np.float32), np.maximum(1 - sim[:, :k - 1], 0)], axis=1)
    return out_idx, out_dist.astype(np.float32)


def top_issues(case, graph, clusters) -> list[int]:
    from hl_debug.signals.label_issues import LabelIssues

    ctx = case.context(cluster_ids=clusters)
    ctx.graph = graph
    rows = LabelIssues().find(ctx).rows
    return [int(r["id"]) for r in sorted(rows, key=lambda r: r["rank"])[:TOP]]


def run(rows: int, sample_size: int, *, seed_floor: bool = False, quick: bool = False,
        cluster_sample: bool = True, partial: Path | None = None, only: str | None = None) -> dict:
    from sklearn.metrics import adjusted_rand_score

    from benchmarks.cases import banking, grown
    from hl_debug.models.map import MapAnalyzer
    from hl_debug.neighbors import MIN_K, _compute, approximate_knn

    case = banking(rows=rows) if quick else grown(rows=rows)
    X, y = case.vectors, list(case.labels)
    n = len(X)
    out: dict = {"case": case.name, "rows": n, "sample_size": min(sample_size, n), "cluster_sample": cluster_sample}
    if only == "approx":  # the approximate path alone (its timings when the exact one runs elsewhere)
        return _approx_only(case, out, sample_size, cluster_sample, partial)
    t = time.perf_counter()
    exact = _compute(X, MIN_K)
    out["knn_exact_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    approx = approximate_knn(X, MIN_K)
    out["knn_approx_s"] = round(time.perf_counter() - t, 1)
    out["recall@10"] = round(recall_at(approx[0], exact[0]), 4)
    log.info("kNN: %s", {k: out[k] for k in ("knn_exact_s", "knn_approx_s", "recall@10")})

    def save() -> None:  # what is measured so far, after every stage (a long run can be read while it runs)
        if partial is not None:
            partial.write_text(json.dumps(out, indent=1))

    save()
    k = MapAnalyzer().n_neighbors
    fits, issues = {}, {}
    for name, graph, params in (("exact", exact, {"approx_above": n}),
                                ("approx", approx, {"approx_above": 0, "sample_size": sample_size,
                                                    "cluster_sample": cluster_sample})):
        t = time.perf_counter()
        m = MapAnalyzer(**params).fit(X, y, knn=graph_of(*graph, k))
        fits[name] = m
        out[f"map_{name}_s"] = round(time.perf_counter() - t, 1)
        out[f"clusters_{name}"] = m.n_clusters_
        out[f"noise_{name}"] = round(m.noise_share_, 4)
        log.info("map %s: %.1f s, %d clusters, %.1f%% noise", name, out[f"map_{name}_s"], m.n_clusters_,
                 100 * m.noise_share_)
        t = time.perf_counter()
        issues[name] = top_issues(case, graph, m.labels_)
        out[f"issues_{name}_s"] = round(time.perf_counter() - t, 1)
        save()
    out["ari"] = round(float(adjusted_rand_score(fits["exact"].labels_, fits["approx"].labels_)), 4)
    known = np.array([t is not None for t in case.true])
    true = [t for t in case.true if t is not None]
    for name, m in fits.items():  # each path's clusters against the true intents (noise one group)
        out[f"ari_true_{name}"] = round(float(adjusted_rand_score(true, m.labels_[known])), 4)
    other = None
    if seed_floor:
        t = time.perf_counter()
        other = MapAnalyzer(approx_above=n, random_state=7).fit(X, y, knn=graph_of(*exact, k))
        out["map_exact_seed7_s"] = round(time.perf_counter() - t, 1)
        out["ari_exact_seed42_vs_seed7"] = round(float(adjusted_rand_score(fits["exact"].labels_, other.labels_)), 4)
    log.info("ARI %s", out["ari"])

    out[f"top{TOP}_overlap"] = len(set(issues["exact"]) & set(issues["approx"]))
    if other is not None:  # the same signal on the exact graph with the seed-7 clusters: the floor
        out[f"top{TOP}_overlap_exact_seed42_vs_seed7"] = len(set(issues["exact"]) & set(top_issues(case, exact,
                                                                                                  other.labels_)))
    flipped = set(case.ids[case.flipped].tolist())
    for name in issues:
        out[f"top{TOP}_flips_{name}"] = len(set(issues[name]) & flipped)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    save()
    return out


def _approx_only(case, out: dict, sample_size: int, cluster_sample: bool, partial: Path | None) -> dict:
    from hl_debug.models.map import MapAnalyzer
    from hl_debug.neighbors import MIN_K, approximate_knn

    X, y = case.vectors, list(case.labels)
    t = time.perf_counter()
    approx = approximate_knn(X, MIN_K)
    out["knn_approx_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    m = MapAnalyzer(approx_above=0, sample_size=sample_size, cluster_sample=cluster_sample).fit(
        X, y, knn=graph_of(*approx, MapAnalyzer().n_neighbors))
    out["map_approx_s"] = round(time.perf_counter() - t, 1)
    out["clusters_approx"], out["noise_approx"] = m.n_clusters_, round(m.noise_share_, 4)
    t = time.perf_counter()
    top = top_issues(case, approx, m.labels_)
    out["issues_approx_s"] = round(time.perf_counter() - t, 1)
    out[f"top{TOP}_flips_approx"] = len(set(top) & set(case.ids[case.flipped].tolist()))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if partial is not None:
        partial.write_text(json.dumps(out, indent=1))
        np.savez(partial.with_suffix(".npz"), labels=m.labels_, top=np.asarray(top))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--sample-size", type=int, default=None, help="default: the map_sample_size setting, "
                                                                      "at most half the rows")
    parser.add_argument("--seed-floor", action="store_true", help="also fit the exact path with seed 7")
    parser.add_argument("--cluster-sample", action=argparse.BooleanOptionalAction, default=True,
                        help="HDBSCAN on the sample too, the rest by approximate_predict (the default)")
    parser.add_argument("--noise-by-vote", action=argparse.BooleanOptionalAction, default=True,
                        help="placed rows HDBSCAN calls noise take their sample neighbours' vote (the default)")
    parser.add_argument("--only", choices=("approx",), help="only the approximate path (labels saved beside --json)")
    parser.add_argument("--quick", action="store_true", help="banking77, 3,000 rows (a smoke test)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from hl_debug.models import map_sample
    from hl_debug.settings import default

    map_sample.NOISE_BY_VOTE = args.noise_by_vote
    rows = 3000 if args.quick else args.rows
    sample = args.sample_size or min(default("map_sample_size"), rows // 2)
    out = run(rows, sample, seed_floor=args.seed_floor, quick=args.quick, cluster_sample=args.cluster_sample,
              partial=args.json, only=args.only)
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
