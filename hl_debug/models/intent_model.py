"""The local intent model: a calibrated classifier on sentence vectors (arrays in, arrays out).

This is the model behind ``hl-debug serve-model`` (and ``hl-debug predict`` with no
``--api-url``). It never sees texts or storage: it is fitted on the vectors handed to it
(``fit(X, y)``, ``X`` of shape ``(n, dim)``), answers ``predict_proba(X)`` / ``top_k(X, k)``
and saves itself to a folder (``model.joblib`` plus ``meta.json``). The step that trains it
on a database's ``training`` rows, evaluates it per split and keeps it beside the database
is :mod:`hl_debug.steps.train`.

Speed at scale (``benchmarks/RESULTS.md``, "Predict step (session 2)"): fitting and scoring run
with one BLAS/OpenMP thread. The work is many small matrix products (one L-BFGS step on 384-d
vectors), where extra threads buy little and, on a machine whose cores are busy, spin-waiting
threads cost a lot: at 20k rows the calibrated fit took 116 s with the libraries' default
threads and 8.4 s with one, same process, load average 5, same accuracy. With more than
:data:`LARGE_TRAINING_ROWS` training rows calibration uses 3 folds instead of 5 (``cv="auto"``):
each fold still calibrates on thousands of rows, accuracy is unchanged, and the fit is twice as
fast (100k rows: 74 s -> 38 s). Many intents make each fit dearer, so 3 folds also apply above
:data:`LARGE_TRAINING_WORK` training rows x intents (banking77, 77 intents: 45 s -> 23 s).
Sigmoid calibration of three or more intents is :class:`~hl_debug.models.calibration.SigmoidCalibratedCV`:
scikit-learn's ``CalibratedClassifierCV`` computation with every intent's sigmoid fitted at once
(at 150 intents: 9.1 -> 3.0 s per fold beside a 24.8 s fold fit, the same probabilities to 1e-4).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression

from hl_debug.errors import ModelError
from hl_debug.models.calibration import SigmoidCalibratedCV
from hl_debug.threads import limit_threads

log = logging.getLogger(__name__)

CALIBRATIONS = ("sigmoid", "isotonic", None)
#: Above this many training rows ``cv="auto"`` calibrates with 3 folds rather than 5.
LARGE_TRAINING_ROWS = 10_000
#: ... or above this many training rows x intents (a fit's cost grows with both: the grown
#: exports' 10,000 rows x 12 intents). banking77's 9,632 rows x 77 intents: 45 s -> 23 s, same
#: accuracy (+0.1 pt), the same top intent on 99.45% of rows (``benchmarks/RESULTS.md``).
LARGE_TRAINING_WORK = 120_000
MODEL_FILE = "model.joblib"
META_FILE = "meta.json"


class LocalIntentModel(ClassifierMixin, BaseEstimator):
    """Intent classifier on sentence embeddings (scikit-learn style).

    Parameters
    ----------
    classifier:
        An unfitted scikit-learn classifier with ``predict_proba``. None means
        ``LogisticRegression(C=C)``, wrapped in
        :class:`~hl_debug.models.calibration.SigmoidCalibratedCV` (sigmoid, three or more
        intents) or :class:`~sklearn.calibration.CalibratedClassifierCV` when ``calibration`` is set.
    C:
        Inverse regularisation strength of the default logistic regression.
    calibration:
        ``"sigmoid"`` (default), ``"isotonic"`` or None (no calibration). Calibration uses
        ``cv`` stratified folds, fewer when the rarest intent has fewer rows; with a single
        row in some intent it is skipped (and logged).
    cv:
        Folds for calibration: an int, or ``"auto"`` (default): 5, or 3 with more than
        :data:`LARGE_TRAINING_ROWS` training rows (see :func:`calibration_folds`).
    max_iter:
        Iterations of the default logistic regression's solver.
    n_threads:
        BLAS/OpenMP threads used while fitting and scoring (default 1: fastest for these
        small products, and immune to oversubscription on a busy machine); None leaves the
        libraries' defaults. The limit is process-wide while a call runs (the model server
        scores under a lock anyway). It does not change what is learned beyond
        floating-point noise, so it is not part of the model's identity.

    Attributes
    ----------
    classes_ : ndarray of str, shape (n_classes,)
        The intents, sorted.
    classifier_ :
        The fitted classifier.
    n_features_in_ : int
        Embedding dimension seen in ``fit``.
    """

    def __init__(self, classifier: Any | None = None, *, C: float = 10.0, calibration: str | None = "sigmoid",
                 cv: int | str = "auto", max_iter: int = 2000, n_threads: int | None = 1) -> None:
        self.classifier = classifier
        self.C = C
        self.calibration = calibration
        self.cv = cv
        self.max_iter = max_iter
        self.n_threads = n_threads

    # -- input ----------------------------------------------------------------------

    @staticmethod
    def _vectors(X: Any) -> np.ndarray:
        """``X`` as a float32 array of shape ``(n, dim)``; anything else is a TypeError."""
        arr = np.asarray(X) if not isinstance(X, (str, bytes)) else None
        if arr is None or arr.ndim != 2 or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"expected an (n, dim) array of sentence vectors, got {type(X).__name__}"
                            + (f" of shape {arr.shape}" if arr is not None else ""))
        return arr.astype(np.float32, copy=False)

    # -- estimator ------------------------------------------------------------------

    def _make_classifier(self, y: np.ndarray) -> Any:
        if self.calibration not in CALIBRATIONS:
            raise ValueError(f"unknown calibration {self.calibration!r}; valid: sigmoid, isotonic, None")
        base = clone(self.classifier) if self.classifier is not None else LogisticRegression(
            C=self.C, max_iter=self.max_iter)
        if self.calibration is None:
            return base
        folds = calibration_folds(Counter(y.tolist()).values(), cv=self.cv)
        if folds < 2:
            log.info("an intent has a single training row: skipping %s calibration", self.calibration)
            return base
        if self.calibration == "sigmoid" and len(set(y.tolist())) >= 3 and hasattr(base, "decision_function"):
            return SigmoidCalibratedCV(base, cv=folds)  # the same model, its sigmoids fitted all at once
        return CalibratedClassifierCV(base, method=self.calibration, cv=folds)

    def _threads(self) -> Any:
        """Context limiting BLAS/OpenMP threads to ``n_threads`` (a no-op for None)."""
        return limit_threads(self.n_threads)

    def fit(self, X: np.ndarray, y: Iterable[str]) -> LocalIntentModel:
        """Fit on sentence vectors ``X`` (shape ``(n, dim)``) and labels ``y`` (shape ``(n,)``)."""
        y_arr = np.asarray(list(y), dtype=object)
        missing = [i for i, label in enumerate(y_arr) if not isinstance(label, str) or not label]
        if missing:
            raise ValueError(f"label {missing[0]} is {y_arr[missing[0]]!r}: every training row needs an intent")
        emb = self._vectors(X)
        if len(emb) != len(y_arr):
            raise ValueError(f"X has {len(emb)} rows but y has {len(y_arr)} labels")
        y_arr = y_arr.astype(str)
        classes = np.unique(y_arr)
        if len(classes) < 2:
            raise ModelError(
                f"need at least 2 intents to train a classifier, got {len(classes)} ({', '.join(classes)})",
                hint="Annotate rows of at least two intents with usage 'training' and ingest again.",
            )
        with self._threads():
            self.classifier_ = self._make_classifier(y_arr).fit(emb, y_arr)
        self.classes_ = np.asarray(self.classifier_.classes_)
        self.n_features_in_ = emb.shape[1]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "classifier_"):
            raise ModelError("the local model is not trained yet", hint="Call fit() first (or hl_debug.steps.train.train_or_load).")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(n, n_classes)`` in the order of ``classes_``."""
        self._check_fitted()
        emb = self._vectors(X)
        if len(emb) == 0:
            return np.zeros((0, len(self.classes_)))
        if emb.shape[1] != self.n_features_in_:
            raise ModelError(
                f"embeddings have {emb.shape[1]} dimensions, the model was trained on {self.n_features_in_}",
                hint="Use the encoder the model was trained with, or retrain it.",
            )
        with self._threads():
            return self.classifier_.predict_proba(emb)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable intent per row, shape ``(n,)``."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)] if len(proba) else np.asarray([], dtype=str)

    def top_k(self, X: np.ndarray, k: int | None = None) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable ``(label, confidence)`` per row, most confident first
        (``k=None``: all classes)."""
        return self.ranked(self.predict_proba(X), k)

    def ranked(self, proba: np.ndarray, k: int | None = None) -> list[list[tuple[str, float]]]:
        """:meth:`top_k` of probabilities already computed (``predict_proba``'s, e.g. by an engine)."""
        proba = np.asarray(proba)
        k = len(self.classes_) if k is None else max(1, min(int(k), len(self.classes_)))
        order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        return [[(str(self.classes_[j]), float(p[j])) for j in row] for p, row in zip(proba, order)]

    # -- persistence ----------------------------------------------------------------

    def save(self, folder: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``model.joblib`` (the fitted classifier) and ``meta.json`` (:func:`model_params` plus ``metadata``)."""
        import joblib

        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (MODEL_FILE + ".tmp")
        joblib.dump({"classifier": self.classifier_, "classes": self.classes_,
                     "n_features_in": self.n_features_in_}, tmp)
        tmp.replace(folder / MODEL_FILE)
        meta = {"params": model_params(self), **(metadata or {})}
        (folder / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str), encoding="utf-8")
        self.metadata_ = meta
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> LocalIntentModel:
        """Load a model saved by :meth:`save`."""
        import joblib

        folder = Path(folder)
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            state = joblib.load(folder / MODEL_FILE)
        except (OSError, ValueError, EOFError, KeyError) as exc:
            raise ModelError(f"could not load the local model from {folder}: {exc}",
                             hint=f"Delete {folder} to retrain it.") from exc
        params = {k: v for k, v in meta.get("params", {}).items() if k in ("C", "calibration", "cv", "max_iter")}
        model = cls(**params)  # n_threads: this machine's default, not the saver's
        model.classifier_ = state["classifier"]
        model.classes_ = np.asarray(state["classes"])
        model.n_features_in_ = int(state["n_features_in"])
        model.metadata_ = meta
        return model


def calibration_folds(class_counts: Iterable[int], *, cv: int | str = "auto") -> int:
    """Calibration folds for training rows with ``class_counts`` rows per intent.

    ``cv="auto"`` means 5 folds, or 3 when there are more than :data:`LARGE_TRAINING_ROWS`
    rows or more than :data:`LARGE_TRAINING_WORK` rows x intents (a sigmoid has two parameters
    per intent: a third of a large set calibrates it as well as a fifth, at the cost of 3
    logistic-regression fits on two thirds of the rows instead of 5 on four fifths). An int is used
    as is. Either way there are never more folds than rows in the rarest intent; a result
    below 2 means calibration is impossible.
    """
    counts = [int(c) for c in class_counts]
    if not counts:
        raise ValueError("class_counts is empty")
    if cv == "auto":
        large = sum(counts) > LARGE_TRAINING_ROWS or sum(counts) * len(counts) > LARGE_TRAINING_WORK
        folds = 3 if large else 5
    elif isinstance(cv, int) and not isinstance(cv, bool) and cv >= 2:
        folds = cv
    else:
        raise ValueError(f"cv must be 'auto' or an integer of at least 2, got {cv!r}")
    return min(folds, min(counts))


def model_params(model: LocalIntentModel) -> dict[str, Any]:
    """The model's parameters that define what it learns (part of its identity; the encoder
    and the thread count are not)."""
    clf = model.classifier
    return {"C": model.C, "calibration": model.calibration, "cv": model.cv, "max_iter": model.max_iter,
            "classifier": None if clf is None else f"{type(clf).__name__}{sorted(clf.get_params().items())}"}
