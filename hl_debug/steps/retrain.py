"""The ``retrain`` step: a new version of the local model, trained on the corrected labels.

After a review the data team wants the model the fixes would give. :func:`retrain` trains
:class:`~hl_debug.models.intent_model.LocalIntentModel` on the stored vectors of the
*effective* labels (:meth:`Store.effective_labels <hl_debug.storage.reviews.Reviews.effective_labels>`:
the latest labelling decision, else the original intent) with the training-set rule of
:func:`training_mask` — the ``training`` rows, plus unannotated rows labelled in review (they
become training rows, as ``hl-debug export corrected`` writes them), minus rows marked
:data:`~hl_debug.domain.OUT_OF_SCOPE` — then answers every utterance with it.

Each version is an endpoint, ``local:<training hash>`` (:func:`~hl_debug.sources.local.local_identity`),
kept beside the others: its answers in the prediction cache, its files in
``<db folder>/<db stem>.models/<hash>/`` and its record (training-data hash, parameters, time,
what it was compared against) in the ``model_versions`` table (``store.endpoints()`` lists it).
The identity is a hash of the training rows (text hash, label), the encoder and the
parameters, and the fit is deterministic (unshuffled stratified calibration folds, L-BFGS),
so the same decisions give the same endpoint and the same answers: a second retrain with no
new decision loads the saved files and asks nothing.

"The old one" it is compared against (``against``, default: the latest local version, else
the active local endpoint): for the default project that is the local model the pipeline
trained on the original labels (version 1, recorded here on the first retrain). The recorded
API answers are not a version of this model — they answer only the rows recorded — but
``hl-debug compare recorded latest`` compares them with any version.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from hl_debug.domain import OUT_OF_SCOPE, TRAINING
from hl_debug.errors import ModelError
from hl_debug.models.intent_model import META_FILE, LocalIntentModel, model_params
from hl_debug.sources.local import LocalSource, local_identity
from hl_debug.steps.compare import compare_endpoints, resolve_endpoint
from hl_debug.steps.predict import predict
from hl_debug.steps.train import model_dir_for, resolve_encoder_identity
from hl_debug.storage import Store, hash_json, now

log = logging.getLogger(__name__)

__all__ = ["retrain", "suspected_rows", "training_mask", "versions_dir_for"]


def training_mask(usage: np.ndarray, original: np.ndarray, effective: np.ndarray, *,
                  leave_out: np.ndarray | None = None) -> np.ndarray:
    """Which rows a retrained model learns from, shape ``(n,)`` bool.

    A row is a training row when its effective label is an intent (not None, not
    :data:`~hl_debug.domain.OUT_OF_SCOPE`) and either its split is ``training`` or it had
    no original label and no split (labelled in review: ``export corrected`` puts such rows
    in ``training``). Validation and testing rows never train the model, whatever their label.
    ``leave_out`` (bool, shape ``(n,)``) removes rows besides (:func:`suspected_rows`).
    """
    usage, original, effective = (np.asarray(v, dtype=object) for v in (usage, original, effective))
    labelled = np.not_equal(effective, None) & (effective != OUT_OF_SCOPE)  # type: ignore[call-overload]
    new = np.equal(original, None) & np.equal(usage, None)  # type: ignore[call-overload]
    mask = labelled & ((usage == TRAINING) | new)
    if leave_out is not None:
        leave = np.asarray(leave_out, dtype=bool)
        if leave.shape != mask.shape:
            raise ValueError(f"leave_out must have shape {mask.shape}, got {leave.shape}")
        mask &= ~leave
    return mask


def suspected_rows(store: Store, ids: list[int]) -> np.ndarray:
    """Rows (of ``ids``, shape ``(n,)`` bool) the label-issue signal flags and no reviewer has
    decided yet: the suspected label errors a retrain with ``leave_out_flagged`` leaves out,
    as cleanlab's clean learning prunes its label issues. A decided row is known, whatever
    its flag (its effective label is the reviewer's)."""
    from hl_debug.signals.label_issues import ISSUES

    flagged = {int(r["id"]) for r in store.table_rows(ISSUES, equals={"flagged": 1})}
    decided = set(store.decided_labels())
    return np.array([i in flagged and i not in decided for i in ids], dtype=bool)


def versions_dir_for(store: Store) -> Path | None:
    """Where retrained versions are kept: ``<db folder>/<db stem>.models/`` (None in memory)."""
    if store.path == ":memory:":
        return None
    p = Path(store.path)
    return p.with_name(p.stem + ".models")


def _baseline(store: Store, against: str | None) -> str | None:
    """The endpoint a new version is compared with (see the module docstring)."""
    if against:
        return resolve_endpoint(store, against)
    versions = store.model_versions()
    if versions:
        return str(versions[-1]["endpoint"])
    names = [e["endpoint"] for e in store.endpoints()]
    active = store.active_endpoint()
    if active and active.startswith("local:"):
        return active
    local = [n for n in names if n.startswith("local:")]
    return local[0] if local else active


def _record_baseline(store: Store, endpoint: str, encoder: str) -> None:
    """Record the pipeline's own local model as version 1 (read from its ``meta.json``)."""
    if not endpoint.startswith("local:") or any(v["endpoint"] == endpoint for v in store.model_versions()):
        return
    folder = model_dir_for(store)
    meta: dict[str, Any] = {}
    if folder is not None and (folder / META_FILE).exists():
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if local_identity(str(meta.get("model_hash", "")), None) != endpoint.split("?")[0]:
            meta = {}
    store.record_model_version({
        "endpoint": endpoint, "training_hash": meta.get("model_hash"), "encoder": meta.get("encoder", encoder),
        "parameters": meta.get("params", {}), "trained_at": meta.get("trained_at"), "n_train": meta.get("n_train"),
        "n_decisions": 0, "based_on": None, "model_dir": str(folder) if meta else None})


def _fit_or_load(model: LocalIntentModel, X: np.ndarray, y: np.ndarray, digest: str, folders: list[Path | None],
                 meta: dict[str, Any], *, force: bool) -> LocalIntentModel:
    """Load the version from the first of ``folders`` that holds it, else fit it and save it
    in ``folders[0]`` (the pipeline's own model folder is the second place to look)."""
    for place in folders if not force else []:
        if place is not None and (place / META_FILE).exists():
            try:
                saved = json.loads((place / META_FILE).read_text(encoding="utf-8"))
            except ValueError:
                continue
            if saved.get("model_hash") == digest:
                log.info("version %s is saved in %s: loading it", digest[:12], place)
                return LocalIntentModel.load(place)
    folder = folders[0]
    log.info("training version %s on %d rows", digest[:12], len(y))
    model.fit(X, y)
    if folder is not None:
        model.save(folder, meta)
    else:
        model.metadata_ = {"params": model_params(model), **meta}
    return model


def retrain(store: Store, *, encoder: Any = None, model: LocalIntentModel | None = None, against: str | None = None,
            force: bool = False, leave_out_flagged: bool = False, n_boot: int = 1000, seed: int = 0,
            progress: bool = False) -> dict[str, Any]:
    """Train a new local-model version on the effective labels, answer every utterance with
    it and compare it with the previous one.

    Parameters
    ----------
    encoder:
        Whose stored vectors to train on (an encoder or its identity; None: the active one).
    model:
        An unfitted :class:`LocalIntentModel` (default: its defaults, as the predict step's).
    against:
        The endpoint to compare with (a name or alias, see
        :func:`~hl_debug.steps.compare.resolve_endpoint`; default: the latest version).
    force:
        Fit even when the version's files are saved (the answers are the same either way).
    leave_out_flagged:
        Also leave out the training rows the label-issue signal flags and nobody has reviewed
        yet (:func:`suspected_rows`). Off by default: on banking77 with 5% uniform flips
        (``benchmarks/RESULTS.md``, "Review loop") the retrain after 300 flagged
        decisions recovers 20% of the oracle's accuracy gain with it and 40% without it on the
        clean base (36 seeds), 41% with it and 28% without on banking77 as released (24 seeds).
    n_boot, seed:
        Bootstrap resamples and seed of the paired intervals.

    Returns
    -------
    The JSON of ``hl-debug retrain --format json``: ``endpoint_before``, ``endpoint_after``,
    ``version_before``, ``version_after``, ``accuracy_before``, ``accuracy_after`` and
    ``delta_low``/``delta_high`` (paired 95% interval of the change; validation + testing rows,
    corrected labels), ``n_changed`` (those rows whose answer changed), ``n_train``,
    ``n_left_out`` (training rows left out by ``leave_out_flagged``),
    ``n_decisions``, ``training_hash``, ``new`` (False: this version existed) and ``views``
    (``corrected`` and ``original``: the accuracy, macro F1 and changes under each labelling).
    """
    store.require_utterances()
    identity = resolve_encoder_identity(store, encoder)
    model = model if model is not None else LocalIntentModel()
    ids, X = store.load_embeddings(identity)
    cols = store.utterance_columns(("id", "intent", "usage", "text_hash"))
    if list(cols["id"]) != ids.tolist():  # both are in id order; a mismatch is a store bug
        raise ModelError("the embeddings and utterances are out of step", hint="Run `hl-debug embed` again.")
    effective_by_id = store.effective_labels()
    original = np.array(cols["intent"], dtype=object)
    effective = np.array([effective_by_id.get(i) for i in cols["id"]], dtype=object)
    leave = suspected_rows(store, [int(i) for i in cols["id"]]) if leave_out_flagged else None
    usage = np.array(cols["usage"], dtype=object)
    n_left_out = 0 if leave is None else int((leave & training_mask(usage, original, effective)).sum())
    train = training_mask(usage, original, effective, leave_out=leave)
    if train.sum() == 0:
        raise ModelError("no training rows with an effective label to train on",
                         hint="Label some 'training' rows (or unannotated ones) first.")
    params = model_params(model)
    hashes = np.array(cols["text_hash"], dtype=object)
    # the same recipe as steps.train.training_hash: with no decision the retrained model IS the pipeline's
    digest = hash_json({"rows": [(str(h), str(lbl)) for h, lbl in zip(hashes[train], effective[train])],
                        "encoder": identity, "params": params})
    endpoint = local_identity(digest, None)
    n_decisions = len(store.decided_labels())
    known = {v["endpoint"]: v for v in store.model_versions()}
    existed = endpoint in known
    # a version made again is compared with what it was compared with when it was made
    before = known[endpoint]["based_on"] if existed and not against else _baseline(store, against)
    if before is not None:
        _record_baseline(store, before, identity)
    root = versions_dir_for(store)
    folder = None if root is None else root / digest[:12]
    meta = {"model_hash": digest, "encoder": identity, "n_train": int(train.sum()), "trained_at": now(),
            "n_decisions": n_decisions, "leave_out_flagged": bool(leave_out_flagged), "n_left_out": n_left_out}
    fitted = _fit_or_load(model, X[train], effective[train].astype(str), digest, [folder, model_dir_for(store)], meta,
                          force=force)
    predict(store, source=LocalSource(fitted), encoder=identity, progress=progress)
    record = store.record_model_version({
        "endpoint": endpoint, "training_hash": digest, "encoder": identity, "parameters": params,
        "trained_at": meta["trained_at"], "n_train": meta["n_train"], "n_decisions": n_decisions,
        "based_on": before, "model_dir": None if folder is None else str(folder)})
    out: dict[str, Any] = {"endpoint_before": before, "endpoint_after": endpoint, "version_after": record["version"],
                           "version_before": next((v["version"] for v in store.model_versions()
                                                   if v["endpoint"] == before), None),
                           "training_hash": digest, "n_train": int(train.sum()), "n_decisions": n_decisions,
                           "n_left_out": n_left_out,
                           "new": not existed and endpoint != before, "model_dir": record["model_dir"]}
    if before is None:
        out.update(accuracy_before=None, accuracy_after=None, delta_low=None, delta_high=None, n_changed=0, views={})
        return out
    comparison = compare_endpoints(store, before, endpoint, n_boot=n_boot, seed=seed, keep_changes=True)
    acc = comparison["views"]["corrected"]["accuracy"]
    out.update(accuracy_before=acc["a"], accuracy_after=acc["b"], delta_low=acc["low"], delta_high=acc["high"],
               n_changed=comparison["n_changed"], n_changed_all=comparison["n_changed_all"],
               views={name: {"n": v["n"], "accuracy": v["accuracy"], "macro_f1": v["macro_f1"], "changes": v["changes"]}
                      for name, v in comparison["views"].items()})
    log.info("retrained %s (v%s) vs %s: accuracy %.4f -> %.4f (95%% CI of the change %+.4f..%+.4f), %d changed",
             endpoint, record["version"], before, acc["a"] or 0, acc["b"] or 0, acc["low"] or 0, acc["high"] or 0,
             comparison["n_changed"])
    return out
