"""What each queued row shows, and where the rows that fit no intent go.

* :func:`fits_no_intent` — the queue's own out-of-scope rule, for runs without the
  ``oos`` signal: a candidate whose most similar annotated row is less similar than
  nearly every annotated row's most similar *other* annotated row (the ``quantile``,
  default 2%, of that leave-one-out distribution) fits no intent, so no label is
  pre-selected for it. The rule is calibrated on the annotated rows themselves, so it
  reads the same on a densely and a thinly labelled project.
* :func:`place_out_of_scope` — with the ``oos`` signal's candidates: one representative per
  candidate group keeps its place in the order (labelling it names or rejects the group),
  the group's other members and ungrouped candidates follow all other rows.
* :func:`queue_rows` / :func:`queue_reason` — the stored rows, each with its reason in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def nearest_labeled_similarity(neighbors: Any, similarities: Any, labeled: Any) -> np.ndarray:
    """Cosine of each row to its most similar *other* annotated row among its graph neighbours, (n,).

    A row with no annotated row among its ``k`` neighbours gets its ``k``-th neighbour's
    similarity (an upper bound of the true value), so the figure never overstates a fit.
    """
    idx = np.asarray(neighbors, dtype=np.int64)
    sim = np.asarray(similarities, dtype=np.float64)
    labeled = np.asarray(labeled, dtype=bool)
    if idx.ndim != 2 or idx.shape != sim.shape or labeled.shape != (len(idx),):
        raise ValueError(f"neighbors and similarities must be (n, k) and labeled (n,); got {idx.shape}, "
                         f"{sim.shape}, {labeled.shape}")
    if idx.shape[1] == 0:
        return np.zeros(len(idx))
    hit = labeled[idx]
    best = np.where(hit, sim, -np.inf).max(axis=1)
    return np.where(hit.any(axis=1), best, sim[:, -1])


def fits_no_intent(neighbors: Any, similarities: Any, labeled: Any, *,
                   quantile: float = 0.02) -> tuple[np.ndarray, np.ndarray, float]:
    """Unannotated rows further from every annotated row than annotated rows are from each other.

    Parameters
    ----------
    neighbors, similarities : arrays, shape (n, k)
        The run's kNN graph (self excluded, most similar first).
    labeled : bool array, shape (n,)
    quantile : float in (0, 1)
        Share of annotated rows that would count as fitting no intent themselves (the
        rule's false-positive rate on in-scope rows labelled like the annotated ones).

    Returns
    -------
    no_fit : bool array, shape (n,)
        Unannotated rows below the threshold.
    nearest : array, shape (n,)
        :func:`nearest_labeled_similarity`.
    threshold : float
        The ``quantile`` of ``nearest`` over annotated rows (-inf with fewer than 2).
    """
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    labeled = np.asarray(labeled, dtype=bool)
    nearest = nearest_labeled_similarity(neighbors, similarities, labeled)
    threshold = float(np.quantile(nearest[labeled], quantile, method="lower")) if labeled.sum() >= 2 else -np.inf
    return ~labeled & (nearest < threshold), nearest, threshold


def place_out_of_scope(ranked: dict[str, np.ndarray], *, candidate: Any, group: Any) -> dict[str, np.ndarray]:
    """Move out-of-scope candidates after the other rows, but one per group.

    Parameters
    ----------
    ranked : dict
        :func:`~hl_debug.scoring.queue.rank_queue`'s output (``order``, ``score``,
        ``duplicate_of``; positions among the m candidates).
    candidate : bool array, shape (m,)
        Out-of-scope candidates, per queue candidate position.
    group : int array, shape (m,)
        Their candidate group (-1: none).

    Returns
    -------
    dict
        ``ranked`` reordered: the first member of each group (in the given order) keeps
        its place, the other members and ungrouped candidates follow every other row in
        their given order with score 0 (so ``score`` stays non-increasing); plus
        ``representative`` (bool, in the new order: the row stands for its group) and
        ``group_first`` (position in the new order of its group's representative, -1).
    """
    order = np.asarray(ranked["order"], dtype=np.int64)
    candidate = np.asarray(candidate, dtype=bool)
    group = np.asarray(group, dtype=np.int64)
    if candidate.shape != group.shape or (len(order) and order.max() >= len(candidate)):
        raise ValueError(f"candidate and group need one entry per queue candidate; got {candidate.shape}, "
                         f"{group.shape} for {len(order)} queued")
    seen: set[int] = set()
    keep = np.ones(len(order), dtype=bool)
    representative = np.zeros(len(order), dtype=bool)
    for q, p in enumerate(order):
        if not candidate[p]:
            continue
        if group[p] >= 0 and int(group[p]) not in seen:
            seen.add(int(group[p]))
            representative[q] = True
        else:
            keep[q] = False
    new = np.concatenate([np.flatnonzero(keep), np.flatnonzero(~keep)])
    score = np.asarray(ranked["score"], dtype=np.float64)[new].copy()
    score[keep.sum():] = 0.0
    new_order = order[new]
    where = {int(group[p]): q for q, p in enumerate(new_order) if representative[new][q]}
    group_first = np.array([where.get(int(group[p]), -1) if candidate[p] else -1 for p in new_order],
                           dtype=np.int64)
    return {**ranked, "order": new_order, "score": score,
            "duplicate_of": np.asarray(ranked["duplicate_of"])[new],
            "covers": np.asarray(ranked["covers"])[new] if "covers" in ranked else None, "representative": representative[new],
            "group_first": group_first}


def queue_reason(*, predicted: str | None, uncertainty: float, runner_up: str | None, knn_labeled: int, k: int,
                 cluster_id: int | None = None, cluster_labeled_share: float | None = None,
                 duplicate_of_text: str | None = None, no_fit: tuple[float, float] | None = None,
                 oos_group: int | None = None, oos_representative: bool = False,
                 oos_first_rank: int | None = None, oos_candidate: bool = False, covers: int | None = None,
                 nearest: float | None = None) -> str:
    """Short human text saying why a row is where it is in the queue.

    ``no_fit``: (nearest annotated similarity, threshold) when :func:`fits_no_intent` holds;
    ``oos_*``: the ``oos`` signal flagged it (its group, whether it represents the group,
    the rank of the group's representative); ``covers``: rows its label would cover that
    nothing before it in the queue covers as well; ``nearest``: its similarity to the most
    similar annotated row (low: far from every annotation).
    """
    parts = []
    if oos_candidate:
        if oos_representative:
            parts.append(f"out-of-scope candidate, group {oos_group}: queued for its group, no label pre-selected")
        elif oos_group is not None and oos_first_rank is not None:
            parts.append(f"out-of-scope candidate, group {oos_group} (queued at rank {oos_first_rank}): "
                         "after the in-scope rows, no label pre-selected")
        else:
            parts.append("out-of-scope candidate in no group: after the in-scope rows, no label pre-selected")
    elif no_fit is not None:
        parts.append(f"fits no intent (nearest annotated {no_fit[0]:.2f} < {no_fit[1]:.2f}): no label pre-selected")
    elif predicted is None:
        parts.append("no model prediction")
    elif uncertainty >= 0.5:
        parts.append(f"model unsure ({predicted} vs {runner_up})" if runner_up else f"model unsure ({predicted})")
    else:
        parts.append(f"model fairly sure: {predicted}")
    if covers:
        parts.append(f"covers {covers} row{'s' if covers != 1 else ''} nothing earlier covers as well")
    if nearest is not None and no_fit is None:
        parts.append(f"nearest annotated {nearest:.2f}")
    if knn_labeled == 0:
        parts.append(f"unannotated region (0/{k} neighbours labelled)")
    else:
        parts.append(f"{knn_labeled}/{k} neighbours labelled")
    if cluster_id is not None and cluster_id != -1 and cluster_labeled_share is not None:
        parts.append(f"cluster {cluster_id} {cluster_labeled_share:.0%} labelled")
    if duplicate_of_text:
        parts.append(f"near-duplicate of queued '{duplicate_of_text[:40]}'")
    return "; ".join(parts)


def queue_rows(ranked: dict[str, np.ndarray], *, candidates: np.ndarray, ids: Sequence[int] | np.ndarray,
               texts: Sequence[str], probs: np.ndarray, uncertainty: np.ndarray, coverage: np.ndarray,
               knn_labeled: np.ndarray, classes: Sequence[str], k: int,
               predicted: Sequence[str | None] | None = None, cluster_ids: np.ndarray | None = None,
               annotated: np.ndarray | None = None, no_fit: np.ndarray | None = None,
               nearest: np.ndarray | None = None, threshold: float | None = None,
               oos_candidate: np.ndarray | None = None, oos_group: np.ndarray | None = None) -> list[dict[str, Any]]:
    """One row per candidate in queue order, ranked from 1, with its reason.

    ``candidates`` (m,) are the candidates' row numbers among all n rows; ``ids``, ``texts``,
    ``coverage``, ``knn_labeled``, ``predicted`` (the active endpoint's labels, None: none),
    ``cluster_ids``, ``annotated``, ``no_fit`` and ``nearest`` (:func:`fits_no_intent`) are
    per row (n); ``probs`` (m, n_classes), ``uncertainty``, ``oos_candidate`` and
    ``oos_group`` (-1: none) per candidate. A candidate without an endpoint label shows
    the classifier's most likely class; one that is an out-of-scope candidate, or fits no
    intent, shows none (``predicted_label`` None: nothing pre-selected).
    """
    share: dict[int, float] = {}
    if cluster_ids is not None and annotated is not None:
        for c in np.unique(cluster_ids):
            share[int(c)] = float(annotated[cluster_ids == c].mean())
    representative = ranked.get("representative")
    group_first = ranked.get("group_first")
    covers = ranked.get("covers")
    rows = []
    for q, (pos, score, dup) in enumerate(zip(ranked["order"], ranked["score"], ranked["duplicate_of"])):
        i = candidates[pos]
        ranked_classes = [classes[c] for c in np.argsort(-probs[pos])]
        ep_label = predicted[i] if predicted is not None else None
        label = ep_label if isinstance(ep_label, str) else ranked_classes[0]
        is_oos = bool(oos_candidate[pos]) if oos_candidate is not None else False
        unfit = bool(no_fit[i]) if no_fit is not None and oos_candidate is None else False
        group = int(oos_group[pos]) if is_oos and oos_group is not None and oos_group[pos] >= 0 else None
        first = int(group_first[q]) if group_first is not None and group_first[q] >= 0 else None
        cl = int(cluster_ids[i]) if cluster_ids is not None else None
        row = {
            "id": int(ids[i]), "rank": q + 1, "score": float(score),
            "predicted_label": None if is_oos or unfit else label,
            "uncertainty": float(uncertainty[pos]), "coverage": float(coverage[i]), "cluster_id": cl,
            "near_duplicate_of": int(ids[candidates[dup]]) if dup >= 0 else None,
            "reason": queue_reason(
                predicted=label, uncertainty=float(uncertainty[pos]),
                runner_up=next((c for c in ranked_classes if c != label), None),
                knn_labeled=int(knn_labeled[i]), k=k, cluster_id=cl,
                cluster_labeled_share=share.get(cl) if cl is not None else None,
                duplicate_of_text=texts[candidates[dup]] if dup >= 0 else None,
                no_fit=(float(nearest[i]), float(threshold)) if unfit and nearest is not None
                and threshold is not None else None,
                oos_candidate=is_oos, oos_group=group,
                oos_representative=bool(representative[q]) if representative is not None else False,
                oos_first_rank=first + 1 if first is not None else None,
                covers=int(covers[q]) if covers is not None and dup < 0 else None,
                nearest=float(nearest[i]) if nearest is not None else None),
            "oos_group_id": group,
        }
        rows.append(row)
    return rows
