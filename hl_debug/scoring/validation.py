"""Input checks shared by the label-issue scoring functions: one clear ``ValueError`` naming
the bad row, raised once at each public entry."""

from __future__ import annotations

from typing import Any

import numpy as np


def _check_labels(labels: Any, n_classes: int | None = None, *, name: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of class indices, got shape {labels.shape}")
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices (encode strings first), got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        bad = int(np.flatnonzero(labels < 0)[0])
        raise ValueError(f"{name}[{bad}] is {labels[bad]}; class indices must be >= 0")
    if n_classes is not None and labels.size and labels.max() >= n_classes:
        bad = int(np.flatnonzero(labels >= n_classes)[0])
        raise ValueError(f"{name}[{bad}] is {labels[bad]} but there are only {n_classes} classes")
    return labels.astype(np.int64)


def _check_embeddings(X: Any, n: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D array (n_rows, dim), got shape {X.shape}")
    if n is not None and len(X) != n:
        raise ValueError(f"embeddings have {len(X)} rows but labels have {n}; pass one vector per labelled row")
    if not np.isfinite(X).all():
        bad = int(np.flatnonzero(~np.isfinite(X).all(axis=1))[0])
        raise ValueError(f"embeddings row {bad} holds NaN or infinity; re-run `hl-debug embed`")
    return X


def _check_probs(pred_probs: Any, n: int) -> np.ndarray:
    P = np.asarray(pred_probs, dtype=np.float64)
    if P.ndim != 2 or len(P) != n:
        raise ValueError(f"pred_probs must have shape (n_rows={n}, n_classes), got {P.shape}")
    if not np.allclose(P.sum(axis=1), 1.0, atol=1e-3):
        bad = int(np.flatnonzero(~np.isclose(P.sum(axis=1), 1.0, atol=1e-3))[0])
        raise ValueError(f"pred_probs row {bad} sums to {P[bad].sum():.4f}, not 1; pass probabilities")
    return P
