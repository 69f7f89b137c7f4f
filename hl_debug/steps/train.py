"""The local model's training step: fit :class:`~hl_debug.models.intent_model.LocalIntentModel`
on the database's ``training`` vectors, evaluate it per split, keep it beside the database.

The model is saved in ``<db folder>/<db stem>.model/`` (:func:`model_dir_for`) with
``meta.json`` holding its identity (:func:`training_hash`: the training rows' text hashes and
intents, the encoder identity and the model's parameters), the classes and the per-split
accuracy. :func:`train_or_load` retrains only when that identity changes. It reads the
vectors the embed step saved; it never encodes a text itself.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from hl_debug.domain import SPLITS
from hl_debug.errors import MissingStepError, ModelError
from hl_debug.models.intent_model import META_FILE, LocalIntentModel, model_params
from hl_debug.storage import Store, hash_json, now, package_versions

log = logging.getLogger(__name__)


def model_dir_for(store: Store) -> Path | None:
    """Where the local model of ``store`` lives: ``<db folder>/<db stem>.model/`` (None in memory)."""
    if store.path == ":memory:":
        return None
    p = Path(store.path)
    return p.with_name(p.stem + ".model")


def training_hash(store: Store, encoder_identity: str, params: dict[str, Any]) -> str:
    """Identity of a trained model: its training rows (text hash, intent), encoder and parameters."""
    rows = [(r["text_hash"], r["intent"]) for r in store.training_examples(("text_hash", "intent"))]
    return hash_json({"rows": rows, "encoder": encoder_identity, "params": params})


def resolve_encoder_identity(store: Store, encoder: Any = None) -> str:
    """The identity of ``encoder`` (an encoder object or an identity string; None: the store's
    active encoder), checked to have a vector for every utterance's text."""
    identity = getattr(encoder, "identity", encoder) if encoder is not None else store.get_meta("active_encoder")
    if identity is None:
        raise MissingStepError("the database has no embeddings yet", step="embed")
    missing = len(set(store.texts_by_hash()) - store.embedded_hashes(str(identity)))
    if missing:
        raise MissingStepError(f"{missing} text(s) have no vector for encoder {identity}", step="embed")
    return str(identity)


def load_vectors(store: Store, identity: str) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """``(ids, X, by_hash)``: the utterances' vectors for ``identity`` in id order, and each text
    hash's vector (shape ``(dim,)``)."""
    ids, X = store.load_embeddings(identity)
    cols = store.utterance_columns(("id", "text_hash"))
    hashes = dict(zip(cols["id"], cols["text_hash"]))
    return ids, X, {hashes[i]: X[k] for k, i in enumerate(ids.tolist())}


def train_or_load(store: Store, *, encoder: Any = None, model: LocalIntentModel | None = None,
                  folder: str | Path | None = None, retrain: bool = False) -> LocalIntentModel:
    """The local model for ``store``'s training rows: loaded when a saved one matches, else trained.

    Parameters
    ----------
    encoder:
        The encoder whose vectors the model is trained on: an encoder object or its identity
        (None: the store's active encoder). Its vectors must be in the store (``hl-debug embed``),
        else :class:`~hl_debug.errors.MissingStepError`.
    model:
        An unfitted :class:`LocalIntentModel` to train (default ``LocalIntentModel()``).
    folder:
        Where the model is saved (default :func:`model_dir_for`; None in memory: not saved).
    retrain:
        Train even when the saved model matches.

    Returns
    -------
    The fitted model; ``model.metadata_`` holds ``model_hash``, ``encoder``, ``classes``,
    ``n_train`` and ``accuracy`` (per split).
    """
    store.require_utterances()
    identity = resolve_encoder_identity(store, encoder)
    model = model if model is not None else LocalIntentModel()
    digest = training_hash(store, identity, model_params(model))
    folder = Path(folder) if folder is not None else model_dir_for(store)
    if folder is not None and not retrain and (folder / META_FILE).exists():
        try:
            saved = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except ValueError:
            saved = {}
        if saved.get("model_hash") == digest:
            loaded = LocalIntentModel.load(folder)
            log.info("loaded local model %s from %s", digest[:12], folder)
            return loaded
        log.info("training data, encoder or parameters changed since %s was saved: retraining", folder)

    ids, X = store.load_embeddings(identity)
    cols = store.utterance_columns(("id", "intent", "usage"))
    pos = {i: p for p, i in enumerate(cols["id"])}
    usage = np.array([cols["usage"][pos[i]] for i in ids], dtype=object)
    intent = np.array([cols["intent"][pos[i]] for i in ids], dtype=object)
    annotated = np.array([i is not None for i in intent])
    train = (usage == "training") & annotated
    if train.sum() == 0:
        raise ModelError("the database has no annotated 'training' rows to train the local model on",
                         hint="Ingest an export with annotated rows whose usage is 'training', or pass --api-url.")
    model.fit(X[train], intent[train])
    pred = model.predict(X)
    accuracy: dict[str, Any] = {}
    for split in SPLITS:
        mask = (usage == split) & annotated
        if mask.any():
            accuracy[split] = {"accuracy": round(float(np.mean(pred[mask] == intent[mask])), 4), "n": int(mask.sum())}
    for split, acc in accuracy.items():
        log.info("local model accuracy on %s: %.3f (n=%d)", split, acc["accuracy"], acc["n"])
    meta = {"model_hash": digest, "encoder": identity, "classes": [str(c) for c in model.classes_],
            "n_train": int(train.sum()), "accuracy": accuracy, "trained_at": now(),
            "versions": package_versions("scikit-learn")}
    if folder is not None:
        model.save(folder, meta)
        log.info("saved local model %s to %s", digest[:12], folder)
    else:
        model.metadata_ = {"params": model_params(model), **meta}
    return model
