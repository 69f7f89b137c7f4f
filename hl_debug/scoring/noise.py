"""Planting label noise: the synthetic flips the label-issue detector learns and calibrates
on, and the benchmark's known noise.

Kinds (:func:`inject_noise`): ``uniform`` (any other class), ``confusable`` (each class's most
confusable class, :func:`confusable_classes`), ``mixed`` (a class drawn from the row's own
out-of-fold probabilities) and ``transition`` (drawn from a class-to-class flip pattern, by
default the data's own, :func:`noise_transition`); :func:`inject_grouped_noise` flips groups
of neighbouring rows together, as a systematic annotator mistake does.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from hl_debug.scoring.validation import _check_labels, _check_probs

log = logging.getLogger(__name__)

NOISE_KINDS = ("uniform", "confusable", "mixed", "transition")


def confusable_classes(pred_probs: Any, labels: Any, *, n_classes: int | None = None) -> np.ndarray:
    """Each class's most confusable other class, from out-of-fold probability mass.

    Returns int array, shape ``(n_classes,)``.
    """
    labels = _check_labels(labels, n_classes)
    P = _check_probs(pred_probs, len(labels))
    K = P.shape[1]
    C = np.zeros((K, K))
    np.add.at(C, labels, P)
    C[np.arange(K), np.arange(K)] = -np.inf
    return C.argmax(axis=1)


def noise_transition(labels: Any, pred_probs: Any, *, n_classes: int | None = None,
                     uniform: float = 0.2) -> np.ndarray:
    """The data's own estimated flip pattern: row ``i`` is the distribution of the label a
    row of true class ``i`` is wrongly given, from cleanlab's confident joint (rows labelled
    ``j`` confidently predicted ``i``), mixed with ``uniform`` of a uniform spread so every
    class stays reachable. Zero diagonal; shape ``(n_classes, n_classes)``.

    Synthetic flips drawn from it look like the data's real mistakes (spread out when they
    are random, concentrated on a neighbour when annotators confuse two intents), so what is
    learnt on them transfers to the real labels.
    """
    from cleanlab.count import compute_confident_joint

    labels = _check_labels(labels, n_classes)
    P = _check_probs(pred_probs, len(labels))
    K = P.shape[1]
    present = np.flatnonzero(np.bincount(labels, minlength=K))
    cj = np.zeros((K, K))
    try:
        sub = compute_confident_joint(np.searchsorted(present, labels), P[:, present])
        cj[np.ix_(present, present)] = sub
    except Exception as exc:  # noqa: BLE001 - cleanlab refuses degenerate inputs
        log.warning("confident joint failed (%s); synthetic flips are uniform", exc)
    T = cj.T.copy()  # T[i, j]: rows of true class i given label j
    np.fill_diagonal(T, 0.0)
    spread = np.ones((K, K)) - np.eye(K)
    spread /= spread.sum(axis=1, keepdims=True)
    mass = T.sum(axis=1, keepdims=True)
    learnt = np.divide(T, mass, out=spread.copy(), where=mass > 0)
    return (1 - uniform) * learnt + uniform * spread


def inject_noise(labels: Any, *, rate: float, kind: str = "uniform", n_classes: int | None = None,
                 pred_probs: Any = None, confusable: Any = None, transition: Any = None,
                 random_state: int | np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flip a ``rate`` share of the labels; returns ``(noisy_labels, flipped_mask)``.

    ``kind``: ``uniform`` (to any other class), ``confusable`` (to the class's most
    confusable class, given by ``confusable`` or derived from ``pred_probs``), or
    ``mixed`` (to a class drawn from the row's own out-of-fold probabilities over the
    other classes — realistic confusions; needs ``pred_probs``), or ``transition`` (to a
    class drawn from row ``label`` of ``transition``, e.g. :func:`noise_transition`).
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; valid: {', '.join(NOISE_KINDS)}")
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    labels = _check_labels(labels, n_classes)
    K = int(n_classes if n_classes is not None else labels.max() + 1)
    if K < 2:
        raise ValueError("noise injection needs at least two classes")
    rng = np.random.default_rng(random_state)
    n = len(labels)
    flip = np.zeros(n, dtype=bool)
    flip[rng.choice(n, size=max(1, int(round(rate * n))), replace=False)] = True
    noisy = labels.copy()
    idx = np.flatnonzero(flip)
    if kind == "uniform":
        shift = rng.integers(1, K, size=len(idx))
        noisy[idx] = (labels[idx] + shift) % K
    elif kind == "confusable":
        if confusable is None:
            if pred_probs is None:
                raise ValueError("kind='confusable' needs confusable= or pred_probs=")
            confusable = confusable_classes(pred_probs, labels, n_classes=K)
        noisy[idx] = np.asarray(confusable)[labels[idx]]
    elif kind == "transition":
        if transition is None:
            raise ValueError("kind='transition' needs transition=")
        T = np.asarray(transition, dtype=np.float64)[labels[idx]].copy()
        T[np.arange(len(idx)), labels[idx]] = 0.0
        T /= T.sum(axis=1, keepdims=True)
        u = rng.random(len(idx))[:, None]
        noisy[idx] = (T.cumsum(axis=1) < u).sum(axis=1).clip(max=K - 1)
    else:
        if pred_probs is None:
            raise ValueError("kind='mixed' needs pred_probs=")
        P = _check_probs(pred_probs, n)[idx].copy()
        P[np.arange(len(idx)), labels[idx]] = 0.0
        P = P + 0.02 / K  # some uniform mass so every class stays reachable
        P[np.arange(len(idx)), labels[idx]] = 0.0
        P /= P.sum(axis=1, keepdims=True)
        u = rng.random(len(idx))[:, None]
        noisy[idx] = (P.cumsum(axis=1) < u).sum(axis=1).clip(max=K - 1)
    return noisy, noisy != labels


def keep_classes_scorable(labels: Any, noisy: Any) -> np.ndarray:
    """``noisy`` with the flips reverted that would leave a class with exactly one row.

    Out-of-fold probabilities need two rows of every class present: a flip that takes a
    two-row class's other row away, or that is the only row of a class no row had, would make
    a one-row class and the synthetic round unusable. Reverts, flip by flip, until no class
    has a single row (a class may end up with none). Returns a new array.
    """
    y = np.asarray(labels, dtype=np.int64)
    out = np.asarray(noisy, dtype=np.int64).copy()
    K = int(max(y.max(initial=0), out.max(initial=0)) + 1)
    while True:
        counts = np.bincount(out, minlength=K)
        lone = np.flatnonzero(counts == 1)
        changed = np.flatnonzero(out != y)
        if not lone.size or not changed.size:
            return out
        c = lone[0]
        into = changed[out[changed] == c]  # the lone row was flipped into c: undo it
        # else c lost rows to flips: give one back
        undo = into[0] if into.size else changed[y[changed] == c][0]
        out[undo] = y[undo]


def inject_grouped_noise(labels: Any, neighbors: tuple[np.ndarray, np.ndarray], *, rate: float, transition: Any,
                         group_size: int = 5, random_state: int | np.random.Generator | None = None,
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Flip ``rate`` of the labels in groups, as an annotator who systematically confuses a
    sub-topic does: a random row and up to ``group_size - 1`` of its nearest neighbours with
    the same label all get one other label, drawn from row ``label`` of ``transition``.

    ``neighbors`` are (indices, similarities), shape (n, k), self excluded. Returns
    ``(noisy_labels, flipped_mask)``.
    """
    if not 0 < rate < 1:
        raise ValueError(f"rate must be in (0, 1), got {rate}")
    labels = _check_labels(labels)
    idx = np.asarray(neighbors[0])
    T = np.asarray(transition, dtype=np.float64)
    rng = np.random.default_rng(random_state)
    n, target = len(labels), max(1, int(round(rate * len(labels))))
    noisy, flipped = labels.copy(), np.zeros(len(labels), dtype=bool)
    for seed in rng.permutation(n):
        if flipped.sum() >= target:
            break
        if flipped[seed]:
            continue
        y = labels[seed]
        members = [seed] + [j for j in idx[seed] if labels[j] == y and not flipped[j]][: group_size - 1]
        members = members[: target - int(flipped.sum())]
        p = T[y].copy()
        p[y] = 0.0
        new = rng.choice(len(p), p=p / p.sum())
        noisy[members] = new
        flipped[members] = True
    return noisy, noisy != labels


def draw_scorable_noise(labels: np.ndarray, kind: str, *, rate: float, n_classes: int,
                        neighbors: tuple[np.ndarray, np.ndarray], confusable: Any, transition: Any,
                        random_state: np.random.Generator, attempts: int = 10) -> np.ndarray | None:
    """One synthetic round's noisy labels of ``kind`` (``grouped``: :func:`inject_grouped_noise`,
    else :func:`inject_noise`), kept scorable (:func:`keep_classes_scorable`); on tiny data a
    draw whose every flip would make a one-row class is drawn again, up to ``attempts`` times
    (None when none flips a row)."""
    for _ in range(attempts):
        if kind == "grouped":
            noisy, _ = inject_grouped_noise(labels, neighbors, rate=rate, transition=transition,
                                            random_state=random_state)
        else:
            noisy, _ = inject_noise(labels, rate=rate, kind=kind, n_classes=n_classes, confusable=confusable,
                                    transition=transition, random_state=random_state)
        noisy = keep_classes_scorable(labels, noisy)
        if (noisy != labels).any():
            return noisy
    return None
