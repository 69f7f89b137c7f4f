"""Clean bases for the label-noise cells: drop the base data's suspected genuine label errors.

A benchmark cell plants flips into a base data set and takes the planted rows as the truth.
Real bases have their own label mistakes (banking77 has many; so has the bundled export), which
that truth counts as correct rows, so an honest estimate of the total reads as an over-estimate.
Before planting, :func:`suspects` finds the annotated rows whose given label is suspect and the
cells drop them; the planted flips are then the truth up to the suspects both views miss.

Two views, each cleanlab's ``find_label_issues`` (confident learning, ``prune_by_noise_rate``)
on 5-fold out-of-fold probabilities of a logistic regression:

* ``tfidf`` — word 1-2-gram + character 2-5-gram TF-IDF features. It shares nothing with the
  detector under test (no sentence encoder), so what it removes is not chosen by that detector;
* ``vectors`` — the default sentence encoder's vectors, the detector's own base model. More
  circular (it removes rows that this encoder's model finds wrong, which makes the clean base
  easier for the detector), but it catches mistakes that are semantic rather than lexical.

The cells drop the union (``views="union"``, default); ``views="tfidf"`` drops only the
independent view's suspects. The benchmark reports how many rows each view removes.
Results are cached on disk per (texts, labels, view) under :func:`benchmarks.cases.cache_dir`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger("benchmarks.clean_base")

VIEWS = ("tfidf", "vectors")
CHOICES = ("union", "tfidf", "vectors", "intersection")


def _oof(features: object, y: np.ndarray, n_classes: int, *, folds: int, seed: int, C: float) -> np.ndarray:
    """Out-of-fold class probabilities ``(n, n_classes)`` of a logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y, minlength=n_classes)
    k = int(max(2, min(folds, counts[counts > 0].min()))) if (counts > 0).sum() > 1 else 2
    probs = np.full((len(y), n_classes), 1.0 / n_classes)
    for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        clf = LogisticRegression(C=C, max_iter=2000).fit(features[train], y[train])  # type: ignore[index]
        p = np.zeros((len(test), n_classes))
        p[:, clf.classes_] = clf.predict_proba(features[test])  # type: ignore[index]
        probs[test] = p
    return probs


def _issues(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    from cleanlab.filter import find_label_issues

    return np.asarray(find_label_issues(y, probs, filter_by="prune_by_noise_rate"), dtype=bool)


def tfidf_features(texts: list[str]) -> object:
    """Word 1-2-gram and character (word-bounded) 2-5-gram TF-IDF, sublinear tf, stacked (sparse)."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer

    word = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
    return hstack([word.fit_transform(texts), char.fit_transform(texts)]).tocsr()


def _key(texts: list[str], labels: list[str], view: str, folds: int, seed: int) -> str:
    h = hashlib.sha1(f"{view}|{folds}|{seed}".encode())
    for t, lab in zip(texts, labels):
        h.update(t.encode("utf-8") + b"\t" + lab.encode("utf-8") + b"\n")
    return h.hexdigest()[:16]


def suspects(texts: list[str], labels: list[str], *, vectors: Callable[[], np.ndarray] | np.ndarray | None = None,
             views: tuple[str, ...] = VIEWS, folds: int = 5, seed: int = 0,
             cache: Path | None = None) -> dict[str, np.ndarray]:
    """Suspected genuine label errors among annotated rows, per view: ``{view: bool mask (n,)}``.

    ``texts``/``labels`` are the annotated rows (every label a string). ``vectors`` (or a
    function returning them, called only when the ``vectors`` view is not cached) are the
    rows' sentence vectors, ``(n, dim)``; required for the ``vectors`` view.
    """
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    unknown = set(views) - set(VIEWS)
    if unknown:
        raise ValueError(f"unknown views {sorted(unknown)}; valid: {', '.join(VIEWS)}")
    classes = sorted(set(labels))
    y = np.searchsorted(np.array(classes), np.array(labels))
    out: dict[str, np.ndarray] = {}
    for view in views:
        path = cache / f"suspects-{_key(texts, labels, view, folds, seed)}.json" if cache else None
        if path is not None and path.exists():
            out[view] = np.zeros(len(texts), dtype=bool)
            out[view][json.loads(path.read_text())["rows"]] = True
            continue
        if view == "tfidf":
            feats: object = tfidf_features(texts)
        else:
            if vectors is None:
                raise ValueError("the 'vectors' view needs vectors")
            feats = np.asarray(vectors() if callable(vectors) else vectors, dtype=np.float64)
        mask = _issues(y, _oof(feats, y, len(classes), folds=folds, seed=seed, C=10.0))
        log.info("clean base: %s view suspects %d of %d rows", view, int(mask.sum()), len(mask))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"view": view, "n": len(texts), "rows": np.flatnonzero(mask).tolist()}))
        out[view] = mask
    return out


def combine(masks: dict[str, np.ndarray], how: str = "union") -> np.ndarray:
    """One drop mask from the per-view masks: ``union``, ``intersection`` or one view's name."""
    if how not in CHOICES:
        raise ValueError(f"unknown clean-base choice {how!r}; valid: {', '.join(CHOICES)}")
    if how in VIEWS:
        return masks[how]
    stack = np.stack([masks[v] for v in VIEWS])
    return np.asarray(stack.any(axis=0) if how == "union" else stack.all(axis=0), dtype=bool)
