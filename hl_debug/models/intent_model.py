"""The local intent model: a calibrated classifier on sentence embeddings.

This is the model behind ``hl-debug serve-model`` (and ``hl-debug predict`` with no
``--api-url``). It is trained on the database's ``training`` rows, evaluated on the
``validation`` and ``testing`` rows, and saved beside the database
(``<db stem>.model/``: ``model.joblib`` plus ``meta.json`` with the training-data hash,
the encoder identity and the per-split accuracy). :func:`train_or_load` retrains only
when the training data, the encoder or the model's parameters change.

Speed at scale (``benchmarks/RESULTS.md``, "Predict step (session 2)"): fitting and scoring run
with one BLAS/OpenMP thread. The work is many small matrix products (one L-BFGS step on 384-d
vectors), where extra threads buy little and, on a machine whose cores are busy, spin-waiting
threads cost a lot: at 20k rows the calibrated fit took 116 s with the libraries' default
threads and 8.4 s with one, same process, load average 5, same accuracy. With more than
:data:`LARGE_TRAINING_ROWS` training rows calibration uses 3 folds instead of 5 (``cv="auto"``):
each fold still calibrates on thousands of rows, accuracy is unchanged, and the fit is twice as
fast (100k rows: 74 s -> 38 s).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression

from hl_debug.errors import ModelError
from hl_debug.storage import USAGES, Store, hash_json, now, package_versions
from hl_debug.threads import limit_threads

log = logging.getLogger(__name__)

CALIBRATIONS = ("sigmoid", "isotonic", None)
#: Above this many training rows ``cv="auto"`` calibrates with 3 folds rather than 5.
LARGE_TRAINING_ROWS = 10_000
MODEL_FILE = "model.joblib"
META_FILE = "meta.json"


class LocalIntentModel(ClassifierMixin, BaseEstimator):
    """Intent classifier on sentence embeddings (scikit-learn style).

    Parameters
    ----------
    encoder:
        Any object with ``transform(texts) -> (n, dim) array`` and an ``identity`` string
        (default: the configured :class:`hl_debug.steps.embed.SentenceEncoder`, loaded lazily
        once, on the first text that needs encoding). Only needed when ``fit`` /
        ``predict_proba`` receive texts rather than embeddings.
    classifier:
        An unfitted scikit-learn classifier with ``predict_proba``. None means
        ``LogisticRegression(C=C)``, wrapped in :class:`~sklearn.calibration.CalibratedClassifierCV`
        when ``calibration`` is set.
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

    def __init__(self, encoder: Any | None = None, classifier: Any | None = None, *, C: float = 10.0,
                 calibration: str | None = "sigmoid", cv: int | str = "auto", max_iter: int = 2000,
                 n_threads: int | None = 1) -> None:
        self.encoder = encoder
        self.classifier = classifier
        self.C = C
        self.calibration = calibration
        self.cv = cv
        self.max_iter = max_iter
        self.n_threads = n_threads

    # -- encoding -------------------------------------------------------------------

    def get_encoder(self) -> Any:
        """The encoder (the default one is created on first use and reused)."""
        if self.encoder is not None:
            return self.encoder
        if not hasattr(self, "encoder_"):
            from hl_debug.steps.embed import default_encoder

            self.encoder_ = default_encoder()
        return self.encoder_

    @property
    def encoder_identity(self) -> str:
        return str(self.get_encoder().identity)

    def embed(self, X: Sequence[str] | np.ndarray) -> np.ndarray:
        """Embeddings of ``X``: a 2-D numeric array is returned as is, texts are encoded.

        Returns an array of shape ``(n, dim)``, float32.
        """
        if isinstance(X, np.ndarray) and X.ndim == 2 and np.issubdtype(X.dtype, np.number):
            return X.astype(np.float32, copy=False)
        if isinstance(X, (str, bytes)) or not isinstance(X, (Sequence, np.ndarray)):
            raise TypeError(f"expected a list of texts or an (n, dim) embedding array, got {type(X).__name__}")
        texts = list(X)
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"item {bad} is {type(texts[bad]).__name__}, expected str (or pass an (n, dim) array)")
        if not texts:
            return np.zeros((0, getattr(self, "n_features_in_", 0)), dtype=np.float32)
        return np.asarray(self.get_encoder().transform(texts), dtype=np.float32)

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
        return CalibratedClassifierCV(base, method=self.calibration, cv=folds)

    def _threads(self) -> Any:
        """Context limiting BLAS/OpenMP threads to ``n_threads`` (a no-op for None)."""
        return limit_threads(self.n_threads)

    def fit(self, X: Sequence[str] | np.ndarray, y: Sequence[str]) -> LocalIntentModel:
        """Fit on texts (encoded with the encoder) or embeddings ``X`` (shape ``(n, dim)``)
        and labels ``y`` (shape ``(n,)``)."""
        y_arr = np.asarray(list(y), dtype=object)
        missing = [i for i, label in enumerate(y_arr) if not isinstance(label, str) or not label]
        if missing:
            raise ValueError(f"label {missing[0]} is {y_arr[missing[0]]!r}: every training row needs an intent")
        emb = self.embed(X)
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
            raise ModelError("the local model is not trained yet", hint="Call fit() or train_or_load() first.")

    def predict_proba(self, X: Sequence[str] | np.ndarray) -> np.ndarray:
        """Class probabilities, shape ``(n, n_classes)`` in the order of ``classes_``."""
        self._check_fitted()
        emb = self.embed(X)
        if len(emb) == 0:
            return np.zeros((0, len(self.classes_)))
        if emb.shape[1] != self.n_features_in_:
            raise ModelError(
                f"embeddings have {emb.shape[1]} dimensions, the model was trained on {self.n_features_in_}",
                hint="Use the encoder the model was trained with, or retrain it.",
            )
        with self._threads():
            return self.classifier_.predict_proba(emb)

    def predict(self, X: Sequence[str] | np.ndarray) -> np.ndarray:
        """Most probable intent per row, shape ``(n,)``."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)] if len(proba) else np.asarray([], dtype=str)

    def top_k(self, X: Sequence[str] | np.ndarray, k: int | None = None) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable ``(label, confidence)`` per row, most confident first
        (``k=None``: all classes)."""
        proba = self.predict_proba(X)
        k = len(self.classes_) if k is None else max(1, min(int(k), len(self.classes_)))
        order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        return [[(str(self.classes_[j]), float(p[j])) for j in row] for p, row in zip(proba, order)]

    # -- persistence ----------------------------------------------------------------

    def save(self, folder: str | Path, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``model.joblib`` (the fitted classifier, not the encoder) and ``meta.json``."""
        import joblib

        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / (MODEL_FILE + ".tmp")
        joblib.dump({"classifier": self.classifier_, "classes": self.classes_,
                     "n_features_in": self.n_features_in_}, tmp)
        tmp.replace(folder / MODEL_FILE)
        meta = {"params": _params(self), **(metadata or {})}
        (folder / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True, default=str), encoding="utf-8")
        self.metadata_ = meta
        return folder

    @classmethod
    def load(cls, folder: str | Path, *, encoder: Any | None = None) -> LocalIntentModel:
        """Load a model saved by :meth:`save`; ``encoder`` encodes texts at predict time."""
        import joblib

        folder = Path(folder)
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            state = joblib.load(folder / MODEL_FILE)
        except (OSError, ValueError, EOFError, KeyError) as exc:
            raise ModelError(f"could not load the local model from {folder}: {exc}",
                             hint=f"Delete {folder} to retrain it.") from exc
        params = {k: v for k, v in meta.get("params", {}).items() if k in ("C", "calibration", "cv", "max_iter")}
        model = cls(encoder=encoder, **params)  # n_threads: this machine's default, not the saver's
        model.classifier_ = state["classifier"]
        model.classes_ = np.asarray(state["classes"])
        model.n_features_in_ = int(state["n_features_in"])
        model.metadata_ = meta
        return model


def calibration_folds(class_counts: Iterable[int], *, cv: int | str = "auto") -> int:
    """Calibration folds for training rows with ``class_counts`` rows per intent.

    ``cv="auto"`` means 5 folds, or 3 when there are more than :data:`LARGE_TRAINING_ROWS`
    rows (a sigmoid has two parameters per intent: a third of a large set calibrates it as
    well as a fifth, at the cost of 3 logistic-regression fits instead of 5). An int is used
    as is. Either way there are never more folds than rows in the rarest intent; a result
    below 2 means calibration is impossible.
    """
    counts = [int(c) for c in class_counts]
    if not counts:
        raise ValueError("class_counts is empty")
    if cv == "auto":
        folds = 3 if sum(counts) > LARGE_TRAINING_ROWS else 5
    elif isinstance(cv, int) and not isinstance(cv, bool) and cv >= 2:
        folds = cv
    else:
        raise ValueError(f"cv must be 'auto' or an integer of at least 2, got {cv!r}")
    return min(folds, min(counts))


class CachedEncoder:
    """An encoder that reads vectors it already has and encodes only the rest.

    ``hl-debug predict`` without ``--api-url`` embeds every utterance to train the local
    model; wrapping the model's encoder in this lets it score those vectors instead of
    encoding each text a second time.

    Parameters
    ----------
    encoder:
        The wrapped encoder (``transform(texts)`` and ``identity``).
    vectors:
        Known vectors by text hash (:func:`hl_debug.domain.text_hash`), each shape ``(dim,)``;
        they must come from ``encoder`` (same identity).
    """

    def __init__(self, encoder: Any, vectors: dict[str, np.ndarray]) -> None:
        self.encoder = encoder
        self.vectors = vectors
        self.hits = 0
        self.misses = 0

    @property
    def identity(self) -> str:
        return str(self.encoder.identity)

    def fit(self, X: Any = None, y: Any = None) -> CachedEncoder:
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of shape ``(len(texts), dim)``, float32."""
        from hl_debug.storage import text_hash

        texts = list(texts)
        found = [self.vectors.get(text_hash(t)) for t in texts]
        missing = [i for i, v in enumerate(found) if v is None]
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            encoded = np.asarray(self.encoder.transform([texts[i] for i in missing]), dtype=np.float32)
            for i, v in zip(missing, encoded):
                found[i] = v
        if not texts:
            return np.asarray(self.encoder.transform([]), dtype=np.float32)
        return np.vstack(found).astype(np.float32, copy=False)

    @classmethod
    def from_store(cls, store: Store, encoder: Any) -> CachedEncoder:
        """Wrap ``encoder`` with every vector ``store`` holds for it (by the utterances' text hashes)."""
        ids, X = store.load_embeddings(encoder.identity)
        hashes = {r["id"]: r["text_hash"] for r in store.utterances(columns="id, text_hash")}
        return cls(encoder, {hashes[i]: X[k] for k, i in enumerate(ids.tolist())})


def _params(model: LocalIntentModel) -> dict[str, Any]:
    """The model's parameters that define what it learns (the encoder is identified separately)."""
    clf = model.classifier
    return {"C": model.C, "calibration": model.calibration, "cv": model.cv, "max_iter": model.max_iter,
            "classifier": None if clf is None else f"{type(clf).__name__}{sorted(clf.get_params().items())}"}


def model_dir_for(store: Store) -> Path | None:
    """Where the local model of ``store`` lives: ``<db folder>/<db stem>.model/`` (None in memory)."""
    if store.path == ":memory:":
        return None
    p = Path(store.path)
    return p.with_name(p.stem + ".model")


def training_hash(store: Store, encoder_identity: str, params: dict[str, Any]) -> str:
    """Identity of a trained model: its training rows (text hash, intent), encoder and parameters."""
    rows = [(r["text_hash"], r["intent"]) for r in store.utterances(
        columns="text_hash, intent", where="usage = 'training' AND intent IS NOT NULL", order_by="id")]
    return hash_json({"rows": rows, "encoder": encoder_identity, "params": params})


def train_or_load(store: Store, *, encoder: Any | None = None, model: LocalIntentModel | None = None,
                  folder: str | Path | None = None, retrain: bool = False,
                  progress: bool = True) -> LocalIntentModel:
    """The local model for ``store``'s training rows: loaded when a saved one matches, else trained.

    Training embeds every utterance through :func:`hl_debug.steps.embed.embed` (vectors are
    cached in the store by text hash, so this is fast after the first time), fits on the
    ``training`` rows, reports accuracy on each split and saves the model to ``folder``
    (default :func:`model_dir_for`). ``model.metadata_`` holds ``model_hash``,
    ``encoder``, ``classes``, ``n_train`` and ``accuracy`` (per split).
    """
    from hl_debug.steps.embed import embed

    store.require_utterances()
    model = model if model is not None else LocalIntentModel(encoder=encoder)
    if model.encoder is None and encoder is not None:
        model.set_params(encoder=encoder)
    identity = model.encoder_identity
    digest = training_hash(store, identity, _params(model))
    folder = Path(folder) if folder is not None else model_dir_for(store)
    if folder is not None and not retrain and (folder / META_FILE).exists():
        try:
            saved = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except ValueError:
            saved = {}
        if saved.get("model_hash") == digest:
            loaded = LocalIntentModel.load(folder, encoder=model.get_encoder())
            log.info("loaded local model %s from %s", digest[:12], folder)
            return loaded
        log.info("training data, encoder or parameters changed since %s was saved: retraining", folder)

    embed(store, model.get_encoder(), progress=progress)
    ids, X = store.load_embeddings(identity)
    rows = {r["id"]: r for r in store.utterances(columns="id, intent, usage")}
    usage = np.array([rows[i]["usage"] for i in ids], dtype=object)
    intent = np.array([rows[i]["intent"] for i in ids], dtype=object)
    train = (usage == "training") & np.array([i is not None for i in intent])
    if train.sum() == 0:
        raise ModelError("the database has no annotated 'training' rows to train the local model on",
                         hint="Ingest an export with annotated rows whose usage is 'training', or pass --api-url.")
    model.fit(X[train], intent[train])
    pred = model.predict(X)
    accuracy: dict[str, Any] = {}
    for split in USAGES:
        mask = (usage == split) & np.array([i is not None for i in intent])
        if mask.any():
            accuracy[split] = {"accuracy": round(float(np.mean(pred[mask] == intent[mask])), 4), "n": int(mask.sum())}
    for split, acc in accuracy.items():
        log.info("local model accuracy on %s: %.3f (n=%d)", split, acc["accuracy"], acc["n"])
    meta = {
        "model_hash": digest,
        "encoder": identity,
        "classes": [str(c) for c in model.classes_],
        "n_train": int(train.sum()),
        "accuracy": accuracy,
        "trained_at": now(),
        "versions": package_versions("scikit-learn"),
    }
    if folder is not None:
        model.save(folder, meta)
        log.info("saved local model %s to %s", digest[:12], folder)
    else:
        model.metadata_ = {"params": _params(model), **meta}
    return model
