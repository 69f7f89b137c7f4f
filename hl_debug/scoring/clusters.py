"""Per-cluster statistics and rankings: pure functions, arrays in, arrays/records out.

Given each utterance's cluster (HDBSCAN label, ``-1`` for noise), its annotated intent
(``None`` when unannotated), its split and its text, these functions describe every
cluster (size, label mix, purity, label entropy, unannotated share, split mix, keywords)
and rank them two ways:

* :func:`rank_impure_clusters` - clusters whose annotated rows disagree, with the
  minority-label rows as concrete suspects (the wrong colour inside a cluster);
* :func:`rank_unannotated_regions` - clusters, and neighbourhoods of noise points, where
  unannotated utterances are dense and annotated ones sparse (where annotators never went).

Keywords come from class-based TF-IDF (as in BERTopic): each cluster's texts are joined
into one document, counted with scikit-learn's :class:`~sklearn.feature_extraction.text.CountVectorizer`
and weighted with :class:`~sklearn.feature_extraction.text.TfidfTransformer`.

Both rankings order by a Wilson lower confidence bound on a proportion, so a cluster
needs both a high share *and* enough rows to rank high: 2 of 3 disagreeing is weaker
evidence than 20 of 40.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from hl_debug.domain import NO_SPLIT
from hl_debug.domain import SPLITS as DOMAIN_SPLITS
from hl_debug.scoring.suspects import SUSPECT_MAX_AGREEMENT, neighbor_label_agreement, region_suspects

__all__ = ["NOISE", "SPLITS", "IMPURITY_METHODS", "REGION_METHODS", "CONTENT_WORDS", "SUSPECT_MAX_AGREEMENT",
           "cluster_keywords", "cluster_stats", "label_entropy", "neighbor_label_agreement", "rank_impure_clusters",
           "rank_unannotated_regions", "wilson_lower_bound"]

NOISE = -1
SPLITS = (*DOMAIN_SPLITS, NO_SPLIT)
IMPURITY_METHODS = ("wilson", "share", "count")
# scikit-learn's English stop-word list also drops content words that matter for intents
# ("bill" in a bills chatbot, "call", "name", "move", ...); keep those.
CONTENT_WORDS = frozenset({
    "bill", "call", "name", "move", "fire", "empty", "full", "find", "found", "interest", "system", "show",
    "back", "front", "top", "bottom", "side", "part", "detail", "cry", "describe", "amount", "first", "last",
})
REGION_METHODS = ("wilson", "share", "count")


def _check_lengths(**arrays: Sequence | np.ndarray) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"inputs must have one entry per utterance; got lengths {shown}")
    return next(iter(lengths.values()))


def _as_labels(cluster_ids: Sequence[int] | np.ndarray) -> np.ndarray:
    labels = np.asarray(cluster_ids)
    if labels.ndim != 1:
        raise ValueError(f"cluster_ids must be 1-D, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"cluster_ids must be integers (-1 for noise), got dtype {labels.dtype}")
    if labels.size and labels.min() < NOISE:
        raise ValueError(f"cluster_ids must be >= -1 (-1 is noise), got {labels.min()}")
    return labels.astype(np.int64)


def _check_method(method: str, valid: tuple[str, ...]) -> None:
    if method not in valid:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(valid)}")


def label_entropy(counts: Sequence[int] | np.ndarray) -> float:
    """Shannon entropy in bits of a label distribution given as counts (0 when empty or pure)."""
    c = np.asarray(counts, dtype=float)
    c = c[c > 0]
    if c.size <= 1:
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def _share_scores(counts: np.ndarray, totals: np.ndarray, method: str) -> np.ndarray:
    """Ranking score of ``counts`` out of ``totals``: ``wilson`` (lower bound of the share),
    ``share`` (plain share) or anything else the validated caller allows (the raw count)."""
    if method == "wilson":
        return wilson_lower_bound(counts, totals)
    if method == "share":
        return counts / totals
    return counts.astype(float)


def wilson_lower_bound(successes: np.ndarray | Sequence[int], totals: np.ndarray | Sequence[int], *,
                       z: float = 1.96) -> np.ndarray:
    """Lower end of the Wilson score interval of ``successes / totals`` (0 where total is 0).

    Shapes: ``(m,)`` in, ``(m,)`` out.
    """
    k = np.asarray(successes, dtype=float)
    n = np.asarray(totals, dtype=float)
    if k.shape != n.shape:
        raise ValueError(f"successes and totals must have the same shape, got {k.shape} and {n.shape}")
    if np.any(k < 0) or np.any(k > n):
        raise ValueError("successes must lie between 0 and totals")
    out = np.zeros_like(n)
    ok = n > 0
    p = k[ok] / n[ok]
    nn = n[ok]
    denom = 1 + z * z / nn
    centre = p + z * z / (2 * nn)
    spread = z * np.sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn))
    out[ok] = np.clip((centre - spread) / denom, 0.0, 1.0)
    return out


def cluster_keywords(texts: Sequence[str], cluster_ids: Sequence[int] | np.ndarray, *, top_n: int = 5,
                     ngram_range: tuple[int, int] = (1, 2), stop_words: str | list[str] | None = None,
                     include_noise: bool = False) -> dict[int, list[str]]:
    """Class-based TF-IDF keywords per cluster.

    The texts of each cluster are joined into one document; term counts come from
    :class:`~sklearn.feature_extraction.text.CountVectorizer` and are re-weighted by
    :class:`~sklearn.feature_extraction.text.TfidfTransformer` across the cluster
    documents, so a term scores high when it is frequent in one cluster and rare in the
    others.

    Parameters
    ----------
    texts : sequence of str, shape (n,)
    cluster_ids : array of int, shape (n,)
        ``-1`` is noise; noise forms its own document (so its words do not look
        distinctive for real clusters) but gets keywords only with ``include_noise``.
    top_n : int
        Keywords per cluster.
    stop_words : "english", list of str, or None
        None (default): scikit-learn's English list minus :data:`CONTENT_WORDS`.

    Returns
    -------
    dict
        cluster id -> up to ``top_n`` keywords, most distinctive first (ties by term).
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer, TfidfTransformer

    n = _check_lengths(texts=texts, cluster_ids=cluster_ids)
    labels = _as_labels(cluster_ids)
    if top_n < 1:
        raise ValueError(f"top_n must be >= 1, got {top_n}")
    if n == 0:
        return {}
    classes = np.unique(labels)
    docs = [" ".join(str(texts[int(i)]) for i in np.flatnonzero(labels == c)) for c in classes]
    if stop_words is None:
        stop_words = sorted(ENGLISH_STOP_WORDS - CONTENT_WORDS)
    vectorizer = CountVectorizer(ngram_range=ngram_range, stop_words=stop_words)
    try:
        counts = vectorizer.fit_transform(docs)
    except ValueError:  # every word is a stop word: no vocabulary
        return {int(c): [] for c in classes if c != NOISE or include_noise}
    weights = TfidfTransformer(sublinear_tf=True).fit_transform(counts).toarray()
    terms = vectorizer.get_feature_names_out()
    out: dict[int, list[str]] = {}
    for row, c in enumerate(classes):
        if c == NOISE and not include_noise:
            continue
        w = weights[row]
        order = np.lexsort((terms, -w))  # by weight desc, then alphabetically
        out[int(c)] = [str(terms[j]) for j in order[:top_n] if w[j] > 0]
    return out


def cluster_stats(cluster_ids: Sequence[int] | np.ndarray, intents: Sequence[str | None],
                  usages: Sequence[str | None], *, points_2d: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Describe every cluster (noise excluded).

    Parameters
    ----------
    cluster_ids : array of int, shape (n,)
    intents : sequence, shape (n,)
        The annotated intent, ``None`` (or ``""``) for unannotated rows.
    usages : sequence, shape (n,)
        ``training`` / ``validation`` / ``testing`` / ``None``.
    points_2d : array, shape (n, 2), optional
        Map coordinates; each cluster gets its centroid ``x``, ``y``.

    Returns
    -------
    list of dict
        One per cluster, by cluster id: ``cluster_id, size, n_annotated, n_unannotated,
        majority_intent, purity, label_entropy, unannotated_share, label_counts,
        usage_counts`` (+ ``x, y``). ``purity`` is the majority intent's share of the
        annotated rows (None when none is annotated); ``label_counts`` is ordered most
        frequent first; ``usage_counts`` has every split (``none`` = unassigned).
    """
    _check_lengths(cluster_ids=cluster_ids, intents=intents, usages=usages)
    labels = _as_labels(cluster_ids)
    if points_2d is not None:
        points_2d = np.asarray(points_2d, dtype=float)
        if points_2d.shape != (len(labels), 2):
            raise ValueError(f"points_2d must have shape ({len(labels)}, 2), got {points_2d.shape}")
    bad = sorted({u for u in usages if u not in (None, "", *DOMAIN_SPLITS)})
    if bad:
        raise ValueError(f"unknown usage value(s) {bad}; valid: training, validation, testing, None")
    out = []
    for c in np.unique(labels[labels != NOISE]):
        idx = np.flatnonzero(labels == c)
        annotated = [intents[int(i)] for i in idx if intents[int(i)]]
        counts = Counter(annotated)
        ordered = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        majority = next(iter(ordered), None)
        usage = Counter(usages[int(i)] or NO_SPLIT for i in idx)
        row: dict[str, Any] = {
            "cluster_id": int(c),
            "size": int(idx.size),
            "n_annotated": len(annotated),
            "n_unannotated": int(idx.size - len(annotated)),
            "majority_intent": majority,
            "purity": (ordered[majority] / len(annotated)) if majority else None,
            "label_entropy": label_entropy(list(ordered.values())),
            "unannotated_share": (idx.size - len(annotated)) / idx.size,
            "label_counts": ordered,
            "usage_counts": {s: int(usage.get(s, 0)) for s in SPLITS},
        }
        if points_2d is not None:
            row["x"], row["y"] = (float(v) for v in points_2d[idx].mean(axis=0))
        out.append(row)
    return out


def rank_impure_clusters(stats: Sequence[dict[str, Any]], cluster_ids: Sequence[int] | np.ndarray,
                         intents: Sequence[str | None], ids: Sequence[int] | np.ndarray, *,
                         method: str = "wilson", min_annotated: int = 5,
                         neighbor_agreement: np.ndarray | None = None,
                         nearest_cluster: Sequence[int] | np.ndarray | None = None,
                         max_agreement: float = SUSPECT_MAX_AGREEMENT) -> list[dict[str, Any]]:
    """Rank clusters by label impurity and list each one's minority-label rows (the suspects).

    Parameters
    ----------
    stats : list of dict
        Output of :func:`cluster_stats`.
    cluster_ids, intents, ids : shape (n,)
        Per-utterance cluster, annotated intent (None if unannotated) and utterance id.
    method : {"wilson", "share", "count"}
        ``wilson`` (default): lower confidence bound of the minority share, so large
        clearly mixed clusters beat tiny ones; ``share``: 1 - purity; ``count``: number
        of minority rows.
    min_annotated : int
        Clusters with fewer annotated rows are not ranked (too little evidence).
    neighbor_agreement : array, shape (n,), optional
        Per utterance, share of its annotated nearest neighbours carrying the same label
        (:func:`~hl_debug.scoring.suspects.neighbor_label_agreement`): each suspect gets it
        and ``likely_error`` (agreement <= ``max_agreement``), likely errors first.
    nearest_cluster : array of int, shape (n,), optional
        For noise points, the cluster they are closest to: a cluster's suspects then also
        include its nearest noise points whose label differs from its majority
        (``member`` False; see :mod:`hl_debug.scoring.suspects`).

    Returns
    -------
    list of dict
        Impure clusters (purity < 1) best first: ``cluster_id, rank, impurity_score,
        purity, n_annotated, n_minority, n_likely_errors, majority_intent, label_counts,
        suspects``; each suspect has ``id, intent, label_count`` (rows of its label in the
        cluster), ``member`` and, with ``neighbor_agreement``, ``neighbor_agreement`` and
        ``likely_error``. ``n_minority`` counts members only, as the impurity score does.
    """
    _check_method(method, IMPURITY_METHODS)
    _check_lengths(cluster_ids=cluster_ids, intents=intents, ids=ids)
    if neighbor_agreement is not None:
        _check_lengths(cluster_ids=cluster_ids, neighbor_agreement=neighbor_agreement)
    if nearest_cluster is not None:
        _check_lengths(cluster_ids=cluster_ids, nearest_cluster=nearest_cluster)
    if min_annotated < 1:
        raise ValueError(f"min_annotated must be >= 1, got {min_annotated}")
    labels = _as_labels(cluster_ids)
    region = labels if nearest_cluster is None else np.where(labels == NOISE, _as_labels(nearest_cluster), labels)
    ids = np.asarray(ids)
    eligible = [s for s in stats if s["n_annotated"] >= min_annotated and s["purity"] is not None]
    if not eligible:
        return []
    n_ann = np.array([s["n_annotated"] for s in eligible])
    n_min = np.array([s["n_annotated"] - s["label_counts"][s["majority_intent"]] for s in eligible])
    score = _share_scores(n_min, n_ann, method)
    order = sorted(range(len(eligible)), key=lambda j: (-score[j], -n_min[j], eligible[j]["cluster_id"]))
    out: list[dict[str, Any]] = []
    for j in order:
        s = eligible[j]
        if n_min[j] == 0:
            continue
        rows = np.flatnonzero(region == s["cluster_id"])
        suspects = region_suspects(rows, labels[rows] != NOISE, s["majority_intent"], s["label_counts"], intents,
                                   ids, neighbor_agreement=neighbor_agreement, max_agreement=max_agreement)
        out.append({
            "cluster_id": s["cluster_id"], "rank": len(out) + 1, "impurity_score": float(score[j]),
            "purity": s["purity"], "n_annotated": s["n_annotated"], "n_minority": int(n_min[j]),
            "n_likely_errors": sum(bool(x.get("likely_error")) for x in suspects),
            "majority_intent": s["majority_intent"], "label_counts": s["label_counts"], "suspects": suspects,
        })
    return out


def rank_unannotated_regions(cluster_ids: Sequence[int] | np.ndarray, intents: Sequence[str | None],
                             ids: Sequence[int] | np.ndarray, *,
                             nearest_cluster: Sequence[int] | np.ndarray | None = None,
                             method: str = "wilson", min_unannotated: int = 2) -> list[dict[str, Any]]:
    """Rank regions where unannotated utterances are dense and annotated ones sparse.

    A region is a cluster, or a *noise neighbourhood*: the noise points whose nearest
    cluster is the same (``nearest_cluster``), so unlabelled outliers around a cluster
    are not lost just because HDBSCAN did not group them.

    Parameters
    ----------
    cluster_ids, intents, ids : shape (n,)
    nearest_cluster : array of int, shape (n,), optional
        For noise points, the cluster they are closest to; without it all noise forms one
        neighbourhood.
    method : {"wilson", "share", "count"}
        ``wilson`` (default): lower confidence bound of the unannotated share; ``share``:
        the share itself; ``count``: number of unannotated rows.
    min_unannotated : int
        Regions with fewer unannotated rows are left out.

    Returns
    -------
    list of dict
        Best first: ``region`` (``"cluster 3"`` or ``"noise near cluster 3"``),
        ``cluster_id`` (the cluster, or -1 for noise), ``near_cluster``, ``rank``,
        ``score``, ``size``, ``n_unannotated``, ``n_annotated``, ``unannotated_share``,
        ``enrichment`` (share / overall unannotated share), ``unannotated_ids``.
    """
    _check_method(method, REGION_METHODS)
    n = _check_lengths(cluster_ids=cluster_ids, intents=intents, ids=ids)
    labels = _as_labels(cluster_ids)
    if nearest_cluster is None:
        near = np.full(n, NOISE, dtype=np.int64)
    else:
        _check_lengths(cluster_ids=cluster_ids, nearest_cluster=nearest_cluster)
        near = _as_labels(nearest_cluster)
    ids = np.asarray(ids)
    unann = np.array([not x for x in intents], dtype=bool)
    overall = unann.mean() if n else 0.0
    keys: dict[tuple[int, int], list[int]] = {}
    for i in range(n):
        key = (int(labels[i]), int(labels[i])) if labels[i] != NOISE else (NOISE, int(near[i]))
        keys.setdefault(key, []).append(i)
    regions = []
    for (cid, near_c), members in keys.items():
        m = np.asarray(members)
        k = int(unann[m].sum())
        if k < min_unannotated:
            continue
        region = f"cluster {cid}" if cid != NOISE else (
            f"noise near cluster {near_c}" if near_c != NOISE else "noise")
        regions.append({
            "region": region, "cluster_id": cid, "near_cluster": near_c, "size": int(m.size),
            "n_unannotated": k, "n_annotated": int(m.size - k), "unannotated_share": k / m.size,
            "enrichment": (k / m.size) / overall if overall else math.nan,
            "unannotated_ids": [int(x) for x in ids[m[unann[m]]]],
        })
    if not regions:
        return []
    n_unann = np.array([r["n_unannotated"] for r in regions])
    size = np.array([r["size"] for r in regions])
    score = _share_scores(n_unann, size, method)
    order = sorted(range(len(regions)), key=lambda j: (-score[j], -n_unann[j], regions[j]["region"]))
    out = []
    for rank, j in enumerate(order, start=1):
        out.append({**regions[j], "rank": rank, "score": float(score[j])})
    return out
