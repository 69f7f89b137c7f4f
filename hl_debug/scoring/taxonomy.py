"""Taxonomy advice, part 1: which pairs of intents overlap (merge candidates) and which
intents hold two meanings (split candidates). Pure functions, arrays in, records out.

Label errors are row problems; these are label-set problems. Two intents whose rows are
interchangeable — a classifier trained without a row assigns it to the other side, its
nearest neighbours carry the other label, the prediction endpoints confuse them — are a
**merge** candidate (:func:`pair_overlap`, :func:`merge_candidates`). An intent whose rows
form two groups as far apart as two different intents is a **split** candidate
(:func:`split_candidates`). Every overlap is a *symmetric confusion rate*: the mean of
"share of ``a``'s rows placed on ``b``" and "share of ``b``'s rows placed on ``a``", so a
score of 0.4 means each side loses about 40% of its rows to the other, whatever the sizes.

Boundary rules for the confusable pairs are in :mod:`hl_debug.scoring.taxonomy_rules`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: The evidence sources of the merge score, in the order reports list them.
OVERLAP_SOURCES = ("confident_learning", "out_of_fold", "neighbors")


def _check_labels(labels: Any, n_classes: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(f"labels must be a 1-D array of class indices, got shape {y.shape} dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}; got {y.min()}..{y.max()}")
    return y.astype(np.int64)


def rate_matrix(labels: Any, assigned: Any, *, n_classes: int) -> np.ndarray:
    """Directional confusion rates: ``R[a, b]`` = share of the rows labelled ``a`` that
    ``assigned`` puts on ``b`` (rows with ``assigned == -1``, no answer, are left out).

    Shape ``(n_classes, n_classes)``; each row with answers sums to 1.
    """
    y = _check_labels(labels, n_classes)
    z = np.asarray(assigned, dtype=np.int64)
    if z.shape != y.shape:
        raise ValueError(f"assigned must have shape {y.shape}, got {z.shape}")
    ok = (z >= 0) & (z < n_classes)
    C = np.zeros((n_classes, n_classes))
    np.add.at(C, (y[ok], z[ok]), 1.0)
    tot = C.sum(axis=1, keepdims=True)
    return np.divide(C, tot, out=np.zeros_like(C), where=tot > 0)


def neighbor_rate_matrix(labels: Any, neighbor_idx: np.ndarray, *, n_classes: int) -> np.ndarray:
    """``R[a, b]`` = mean share of the nearest neighbours of ``a``'s rows that carry ``b``.

    ``neighbor_idx``: (m, k) positions into ``labels`` (self excluded).
    """
    y = _check_labels(labels, n_classes)
    idx = np.asarray(neighbor_idx, dtype=np.int64)
    if idx.ndim != 2 or len(idx) != len(y):
        raise ValueError(f"neighbor_idx must have shape ({len(y)}, k), got {idx.shape}")
    if idx.shape[1] == 0:
        return np.zeros((n_classes, n_classes))
    C = np.zeros((n_classes, n_classes))
    np.add.at(C, (np.repeat(y, idx.shape[1]), y[idx].ravel()), 1.0)
    tot = C.sum(axis=1, keepdims=True)
    return np.divide(C, tot, out=np.zeros_like(C), where=tot > 0)


def confident_learning_rate_matrix(labels: Any, pred_probs: Any) -> np.ndarray:
    """``R[a, b]`` = cleanlab's estimate of P(true label b | given label a), from the joint
    distribution that ``cleanlab.dataset.find_overlapping_classes`` ranks pairs by
    (``cleanlab.count.estimate_joint`` on out-of-fold probabilities)."""
    from cleanlab.count import estimate_joint

    P = np.asarray(pred_probs, dtype=np.float64)
    y = _check_labels(labels, P.shape[1])
    present = np.flatnonzero(np.bincount(y, minlength=P.shape[1]))
    R = np.zeros((P.shape[1], P.shape[1]))
    if len(present) < 2:
        return R
    # cleanlab needs every class it sees to be present: work on the present ones
    remap = np.full(P.shape[1], -1)
    remap[present] = np.arange(len(present))
    Pp = P[:, present]
    Pp = Pp / np.clip(Pp.sum(axis=1, keepdims=True), 1e-12, None)
    J = estimate_joint(labels=remap[y], pred_probs=Pp)
    tot = J.sum(axis=1, keepdims=True)
    R[np.ix_(present, present)] = np.divide(J, tot, out=np.zeros_like(J), where=tot > 0)
    return R


def symmetric(R: np.ndarray) -> np.ndarray:
    """``(R + R.T) / 2`` with a zero diagonal: the symmetric confusion of every pair."""
    S = (np.asarray(R) + np.asarray(R).T) / 2.0
    np.fill_diagonal(S, 0.0)
    return S


def pair_overlap(labels: Any, *, n_classes: int, pred_probs: Any = None, neighbor_idx: Any = None,
                 predictions: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Symmetric confusion of every pair of intents, per evidence source, and their mean.

    Parameters
    ----------
    labels : int array, shape (m,)
        Given labels (class indices) of the annotated rows.
    pred_probs : array, shape (m, n_classes), optional
        Out-of-fold probabilities: gives ``confident_learning`` (cleanlab's joint) and
        ``out_of_fold`` (their argmax).
    neighbor_idx : int array, shape (m, k), optional
        Each row's nearest annotated neighbours: gives ``neighbors``.
    predictions : {endpoint: int array (m,)}, optional
        Each prediction endpoint's answer as a class index (-1: none or unknown label):
        gives ``endpoint:<name>``.

    Returns
    -------
    dict
        source -> symmetric ``(n_classes, n_classes)`` matrix, plus ``"score"``: the mean of
        the sources (the merge score).
    """
    y = _check_labels(labels, n_classes)
    out: dict[str, np.ndarray] = {}
    if pred_probs is not None:
        P = np.asarray(pred_probs, dtype=np.float64)
        if P.shape != (len(y), n_classes):
            raise ValueError(f"pred_probs must have shape ({len(y)}, {n_classes}), got {P.shape}")
        out["confident_learning"] = symmetric(confident_learning_rate_matrix(y, P))
        out["out_of_fold"] = symmetric(rate_matrix(y, P.argmax(axis=1), n_classes=n_classes))
    if neighbor_idx is not None:
        out["neighbors"] = symmetric(neighbor_rate_matrix(y, neighbor_idx, n_classes=n_classes))
    for name, assigned in (predictions or {}).items():
        out[f"endpoint:{name}"] = symmetric(rate_matrix(y, assigned, n_classes=n_classes))
    if not out:
        raise ValueError("pair_overlap needs at least one of pred_probs, neighbor_idx, predictions")
    out["score"] = np.mean([m for m in out.values()], axis=0)
    return out


def confusion_counts(labels: Any, assigned: Any, *, n_classes: int) -> np.ndarray:
    """Raw symmetric confusion counts ``C[a, b] + C[b, a]`` (zero diagonal): the plain
    confusion-matrix ranking the benchmark compares the merge score against."""
    y = _check_labels(labels, n_classes)
    z = np.asarray(assigned, dtype=np.int64)
    ok = z >= 0
    C = np.zeros((n_classes, n_classes))
    np.add.at(C, (y[ok], z[ok]), 1.0)
    S = C + C.T
    np.fill_diagonal(S, 0.0)
    return S


def conflicting_pairs(labels: Any, neighbor_idx: np.ndarray, neighbor_sim: np.ndarray, a: int, b: int, *,
                      top_n: int = 3) -> list[tuple[int, int, float]]:
    """The most similar (row of ``a``, row of ``b``) neighbour pairs: near-identical
    utterances labelled differently. Returns up to ``top_n`` ``(i, j, similarity)``, positions
    into ``labels``, most similar first, each row used once."""
    y = np.asarray(labels)
    idx, sim = np.asarray(neighbor_idx), np.asarray(neighbor_sim)
    cand = []
    for src, dst in ((a, b), (b, a)):
        rows = np.flatnonzero(y == src)
        if not len(rows):
            continue
        hit = y[idx[rows]] == dst
        r, c = np.nonzero(hit)
        cand += [(float(sim[rows[i], j]), int(rows[i]), int(idx[rows[i], j])) if src == a else
                 (float(sim[rows[i], j]), int(idx[rows[i], j]), int(rows[i])) for i, j in zip(r, c)]
    cand.sort(key=lambda t: (-t[0], t[1], t[2]))
    used: set[int] = set()
    out = []
    for s, i, j in cand:
        if i in used or j in used:
            continue
        used.update((i, j))
        out.append((i, j, s))
        if len(out) == top_n:
            break
    return out


def merge_candidates(overlap: Mapping[str, np.ndarray], classes: Sequence[str], *,
                     counts: Sequence[int] | np.ndarray | None = None, min_score: float = 0.0) -> list[dict[str, Any]]:
    """Every pair of intents with a merge score above ``min_score``, highest first.

    Each record: ``intent_a``, ``intent_b`` (``a < b`` alphabetically), ``a``, ``b`` (class
    indices), ``score`` and one entry per source in ``overlap``; ``n_a``/``n_b`` when
    ``counts`` is given.
    """
    S = np.asarray(overlap["score"])
    K = len(classes)
    if S.shape != (K, K):
        raise ValueError(f"overlap matrices must be ({K}, {K}), got {S.shape}")
    recs = []
    for a, b in zip(*(ix.tolist() for ix in np.triu_indices(K, 1))):
        if S[a, b] <= min_score:
            continue
        rec: dict[str, Any] = {"intent_a": classes[a], "intent_b": classes[b], "a": int(a), "b": int(b),
                               "score": float(S[a, b])}
        rec.update({src: float(m[a, b]) for src, m in overlap.items() if src != "score"})
        if counts is not None:
            rec.update(n_a=int(counts[a]), n_b=int(counts[b]))
        recs.append(rec)
    recs.sort(key=lambda r: (-r["score"], r["intent_a"], r["intent_b"]))
    return recs


# -- splits -----------------------------------------------------------------------------


_BLOCK_ROWS = 65_536  # rows converted to float64 at once by split_candidates


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.clip(n, 1e-12, None)


def class_centroids(X: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """L2-normalised mean vector of each class, (n_classes, dim) (zeros for empty classes)."""
    C = np.zeros((n_classes, X.shape[1]))
    np.add.at(C, labels, X)
    return _unit(C)


def distinctness(similarity: float, pair_similarities: np.ndarray) -> float:
    """Share of the intent pairs whose centroids are *more* similar than ``similarity``
    (ties count half): 0.9 means two groups lie further apart than 90% of the label set's
    pairs of different intents."""
    s = np.asarray(pair_similarities, dtype=float)
    if not s.size:
        return 0.0
    return float(((s > similarity).sum() + 0.5 * (s == similarity).sum()) / s.size)


def intent_spread(X: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean cosine distance of each intent's rows to its centroid, (n_classes,): the
    size/variance baseline the split benchmark compares against."""
    C = class_centroids(X, labels, n_classes)
    d = 1.0 - np.einsum("ij,ij->i", X, C[labels])
    tot = np.bincount(labels, minlength=n_classes)
    return np.bincount(labels, weights=d, minlength=n_classes) / np.clip(tot, 1, None)


def two_way_split(X: np.ndarray, *, n_sub: int = 6, min_size: int = 1, random_state: int = 0) -> np.ndarray:
    """Split rows into the two most distinct sides of an average-linkage tree.

    k-means cuts the rows into ``n_sub`` sub-groups, which are joined by UPGMA (the mean
    cosine similarity between their rows, ``sum_a . sum_b / (n_a n_b)``) into a tree; every
    node of the tree against the rest is a candidate split, and the one whose two sides'
    centroids are least similar, among those with ``min_size`` rows on each side, is
    returned (the root's two children when none has). So an intent made of two far-apart
    halves is split between them even when each half has sub-topics of its own, which a
    plain 2-means would cut across. Returns 0/1 per row, shape ``(n,)``.
    """
    from sklearn.cluster import KMeans

    n_sub = int(min(n_sub, len(X)))
    sub = KMeans(n_clusters=n_sub, n_init=2, random_state=random_state).fit_predict(X)
    sums = [X[sub == j].sum(axis=0) for j in range(n_sub)]
    sizes = [float((sub == j).sum()) for j in range(n_sub)]
    members = [[j] for j in range(n_sub)]
    nodes = [list(m) for m in members]
    while len(members) > 2:
        S = np.stack(sums)
        sim = (S @ S.T) / np.outer(sizes, sizes)
        np.fill_diagonal(sim, -np.inf)
        a, b = sorted(np.unravel_index(int(np.argmax(sim)), sim.shape))
        sums[a], sizes[a] = sums[a] + sums[b], sizes[a] + sizes[b]
        members[a] += members.pop(b)
        del sums[b], sizes[b]
        nodes.append(list(members[a]))
    total, count = X.sum(axis=0), np.bincount(sub, minlength=n_sub)
    best, best_sim = members[1], np.inf
    for node in nodes:
        n_in = int(count[node].sum())
        if min(n_in, len(X) - n_in) < min_size or n_in == len(X):
            continue
        inside = X[np.isin(sub, node)].sum(axis=0)
        c1, c2 = _unit(inside), _unit(total - inside)
        if float(c1 @ c2) < best_sim:
            best, best_sim = node, float(c1 @ c2)
    return np.isin(sub, best).astype(np.int64)


def split_candidates(X: Any, labels: Any, texts: Sequence[str], classes: Sequence[str], *,
                     min_group_size: int = 8, min_group_share: float = 0.2, floor_cap: float | None = None,
                     n_examples: int = 3, random_state: int = 0, rows: Any = None) -> list[dict[str, Any]]:
    """Intents whose rows form two well-separated groups, most distinct first.

    Each intent's rows are split in two by :func:`two_way_split` (the most distinct cut of
    an average-linkage tree over k-means sub-groups of its L2-normalised vectors); the
    split's **score** is :func:`distinctness` of the two group centroids against the
    centroids of every pair of different intents, so it reads "these two groups are further
    apart than ``score`` of the label set's intent pairs".

    A split whose smaller group has fewer than ``floor = max(min_group_size,
    min_group_share * n)`` rows scores 0 (``n``: the intent's rows). With ``floor_cap`` the
    floor is at most ``floor_cap * median`` (the label set's median intent size), so a small
    meaning inside a large intent — a 24-row intent fused into a 194-row one — can be split
    off; ``benchmarks/taxonomy.py --study`` measures it (0.15: more planted fusions found on
    the bundled export once its own two-meaning intents are left out, fewer on banking77),
    and the signal does not use it.

    Returns one record per intent with at least ``2 * min_group_size`` rows:
    ``intent``, ``c`` (class index), ``n``, ``score``, ``similarity`` (cosine of the group
    centroids), ``groups`` — each ``{"size", "rows" (positions, nearest the centroid
    first), "keywords", "examples" (positions), "own_similarity" (to the intent's
    centroid), "nearest_intent", "nearest_similarity" (the closest other intent's centroid),
    "closer_to_other" (bool), "spread" ({other intent: [positions of its rows that sit
    nearer this group than their own intent]})}``, largest group first.

    With ``rows`` (positions into ``X``, one per label), row ``i`` is ``X[rows[i]]``: a
    caller holding every utterance's vectors passes them whole instead of copying the
    labelled subset (at 1M rows, 1.1 GB); positions in the result are still ``0..n-1``.
    """
    from hl_debug.scoring.clusters import cluster_keywords

    K = len(classes)
    y = _check_labels(labels, K)
    X = np.asarray(X)
    at = None if rows is None else np.asarray(rows, dtype=np.intp)
    if (len(X) if at is None else len(at)) != len(y) or len(texts) != len(y):
        raise ValueError(f"X (or rows), labels and texts need one entry per row ({len(y)})")
    if at is not None and len(at) and (at.min() < 0 or at.max() >= len(X)):
        raise ValueError(f"rows must be positions into X (0..{len(X) - 1})")

    def unit(idx: Any) -> np.ndarray:  # rows in float64, L2-normalised: a block at a time (1M rows: 3 GB whole)
        return _unit(np.asarray(X[idx] if at is None else X[at[idx]], dtype=np.float64))

    blocks = [slice(start, start + _BLOCK_ROWS) for start in range(0, len(y), _BLOCK_ROWS)]
    counts = np.bincount(y, minlength=K)
    sums = np.zeros((K, X.shape[1]))
    for b in blocks:
        np.add.at(sums, y[b], unit(b))
    cent = _unit(sums)  # class_centroids, summed block by block in the same order
    present = np.flatnonzero(counts)
    pair_sims = (cent[present] @ cent[present].T)[np.triu_indices(len(present), 1)]
    own_sim = np.concatenate([np.einsum("ij,ij->i", unit(b), cent[y[b]]) for b in blocks])  # to its own intent
    fits: list[tuple[int, np.ndarray, np.ndarray]] = []
    gid = np.full(len(y), -1)  # intent c's group j is 2c + j: one c-TF-IDF over every group
    cap = np.inf if floor_cap is None or not len(present) else floor_cap * float(np.median(counts[present]))

    def floor_of(n: int) -> int:
        return max(min_group_size, int(np.ceil(min(min_group_share * n, cap))))

    for c in present.tolist():
        rows = np.flatnonzero(y == c)
        if len(rows) < 2 * min_group_size:
            continue
        g = two_way_split(unit(rows), n_sub=max(2, min(6, len(rows) // min_group_size)), min_size=floor_of(len(rows)),
                          random_state=random_state)
        gid[rows] = 2 * c + g
        fits.append((c, rows, g))
    keywords = cluster_keywords(texts, gid, top_n=5) if fits else {}
    out: list[dict[str, Any]] = []
    for c, rows, g in fits:
        floor = floor_of(len(rows))
        sizes = np.bincount(g, minlength=2)
        Xc = unit(rows)
        gc = _unit(np.stack([Xc[g == j].mean(axis=0) for j in range(2)]))
        sim = float(gc[0] @ gc[1])
        score = distinctness(sim, pair_sims) if sizes.min() >= floor else 0.0
        to_groups = np.concatenate([unit(b) @ gc.T for b in blocks])  # every row to both groups: one pass
        groups = []
        for j in np.argsort(-sizes, kind="stable"):
            members = rows[g == j]
            to_c = Xc[g == j] @ gc[j]
            members = members[np.argsort(-to_c, kind="stable")]
            others = gc[j] @ cent.T
            own = float(others[c])
            others[c] = -np.inf
            nearest = int(np.argmax(others))
            # rows of other intents nearer this group's centroid than their own intent's,
            # and as near as a typical member: the same meaning annotated elsewhere
            floor_sim = float(np.quantile(to_c, 0.25))
            to_g = to_groups[:, j]
            stray = np.flatnonzero((y != c) & (to_g > own_sim) & (to_g >= floor_sim))
            spread: dict[str, list[int]] = {}
            for i in stray[np.argsort(-to_g[stray], kind="stable")]:
                spread.setdefault(classes[int(y[i])], []).append(int(i))
            groups.append({
                "size": int(sizes[j]), "rows": [int(i) for i in members], "keywords": keywords.get(int(2 * c + j), []),
                "examples": [int(i) for i in members[:n_examples]], "own_similarity": own,
                "nearest_intent": classes[nearest] if K > 1 else None,
                "nearest_similarity": float(others[nearest]) if K > 1 else None,
                "closer_to_other": bool(K > 1 and others[nearest] > own),
                "spread": dict(sorted(spread.items(), key=lambda kv: -len(kv[1]))),
            })
        out.append({"intent": classes[c], "c": c, "n": int(len(rows)), "score": score, "similarity": sim,
                    "groups": groups})
    out.sort(key=lambda r: (-r["score"], r["similarity"], r["intent"]))
    return out
