"""The suspects of a cluster: minority-label rows whose label is also rare around them.

A row whose label differs from its cluster's majority intent is not yet a likely error: in
a cluster that two overlapping intents share (banking77's "pending transfer" and "transfer
timing", the bundled export's credit-limit questions under ``credit_question`` and
``finances``) a third of the rows may carry the second intent, each surrounded by rows of
its own label. A planted or real slip looks different: its label is *rare among its
nearest neighbours* too. So a cluster's suspects are its minority-label rows, each marked
``likely_error`` when at most :data:`SUSPECT_MAX_AGREEMENT` of its annotated nearest
neighbours (the stored kNN, self excluded) share its label, likely errors listed first.

A cluster's region also holds the noise points nearest to it (``nearest_cluster``, the
same neighbourhoods :func:`~hl_debug.scoring.clusters.rank_unannotated_regions` uses),
so a slip HDBSCAN left as noise is still judged against the cluster it sits beside
(``member`` False).

On the banking benchmark (5% flips) the likely errors hold 97-100% of uniform and ~88-90%
of confusable flips at 9x the flip rate of the annotated rows, where all minority-label rows
are only 3x richer (``benchmarks/RESULTS.md``, "Clusters that respect intents").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Largest share of a row's annotated neighbours carrying its label for it to be a likely error.
SUSPECT_MAX_AGREEMENT = 0.3


def neighbor_label_agreement(neighbor_idx: np.ndarray, intents: Sequence[str | None]) -> np.ndarray:
    """Share of each row's annotated neighbours that carry the row's own label.

    Parameters
    ----------
    neighbor_idx : array of int, shape (n, k)
        Row positions (not ids) of each row's nearest neighbours, self excluded.
    intents : sequence, shape (n,)

    Returns
    -------
    array of float, shape (n,)
        NaN for unannotated rows and rows with no annotated neighbour.
    """
    neighbor_idx = np.asarray(neighbor_idx)
    n = len(intents)
    if len(neighbor_idx) != n:
        raise ValueError(f"inputs must have one entry per utterance; got lengths neighbor_idx={len(neighbor_idx)}, "
                         f"intents={n}")
    if neighbor_idx.ndim != 2:
        raise ValueError(f"neighbor_idx must have shape (n, k), got {neighbor_idx.shape}")
    if neighbor_idx.size and (neighbor_idx.min() < 0 or neighbor_idx.max() >= n):
        raise ValueError(f"neighbor_idx holds positions outside 0..{n - 1}")
    out = np.full(n, np.nan)
    for i in range(n):
        if not intents[i]:
            continue
        labels = [intents[j] for j in neighbor_idx[i] if intents[j]]
        if labels:
            out[i] = sum(lab == intents[i] for lab in labels) / len(labels)
    return out


def is_likely_error(agreement: float, max_agreement: float = SUSPECT_MAX_AGREEMENT) -> bool:
    """A minority-label row is a likely error when few annotated neighbours share its label
    (or it has none, NaN: nothing speaks for its label)."""
    return bool(math.isnan(agreement) or agreement <= max_agreement)


def region_suspects(rows: np.ndarray, members: np.ndarray, majority: str, label_counts: dict[str, int],
                    intents: Sequence[str | None], ids: np.ndarray, *,
                    neighbor_agreement: np.ndarray | None = None,
                    max_agreement: float = SUSPECT_MAX_AGREEMENT) -> list[dict[str, Any]]:
    """The minority-label rows of one cluster's region, likely errors first.

    Parameters
    ----------
    rows : int array
        Positions of the region's rows: the cluster's members, then its nearest noise points.
    members : bool array, same length as ``rows``
        Whether each row is a member of the cluster (False: a noise point beside it).
    majority, label_counts
        The cluster's majority intent and label counts (members only).
    neighbor_agreement : array, shape (n,), optional
        :func:`neighbor_label_agreement` of every row; without it no row is marked.

    Returns
    -------
    list of dict
        ``id, intent, label_count`` (members of that label in the cluster), ``member``, and
        with ``neighbor_agreement`` also ``neighbor_agreement`` and ``likely_error``; ordered
        likely errors first, then rarest label in the cluster, least agreement, id.
    """
    out = []
    for i, member in zip(rows, members):
        label = intents[int(i)]
        if not label or label == majority:
            continue
        item: dict[str, Any] = {"id": int(ids[i]), "intent": label, "label_count": int(label_counts.get(label, 0)),
                                "member": bool(member)}
        if neighbor_agreement is not None:
            agreement = float(neighbor_agreement[i])
            item["neighbor_agreement"] = agreement
            item["likely_error"] = is_likely_error(agreement, max_agreement)
        out.append(item)
    out.sort(key=lambda d: (not d.get("likely_error", True), d["label_count"],
                            _nan_first(d.get("neighbor_agreement", 0.0)), d["id"]))
    return out


def _nan_first(value: float) -> float:
    return -1.0 if math.isnan(value) else value
