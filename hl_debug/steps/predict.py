"""The ``predict`` step: every utterance's answer from one answer source, cached in the store.

The source (:mod:`hl_debug.sources`) is the remote endpoint over HTTP when an ``api_url`` is
given, else the local model (:mod:`hl_debug.steps.train` trains or loads it), which scores the
vectors the embed step saved, in-process. Answers are cached in the store by (source identity,
text hash), saved batch by batch, so a re-run (or a run interrupted with Ctrl-C) only asks
what is missing. The embed step runs first; without its vectors the local model raises
:class:`~hl_debug.errors.MissingStepError`.

Small changes: answers are keyed by text hash, so a changed utterance costs one answer.
A remote endpoint is asked only the new texts. The local model keeps its identity (and
its answers) while its training rows, encoder and parameters are unchanged; when a
change touches a training row it is retrained, every answer may differ, and every text is
scored again under the new identity: correct, and cheap in-process (seconds at 100k).

Per text the cache holds the top label, its confidence, the top-k distribution and the
entropy and margin computed from it (:func:`distribution_stats`). Recorded answers (a file)
are imported by :func:`import_predictions` (:mod:`hl_debug.sources.recorded`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hl_debug.engines import as_engine
from hl_debug.errors import ConfigError, MissingStepError, NotFoundError
from hl_debug.settings import default, resolve
from hl_debug.sources.base import AnswerSource, Query, Ranked
from hl_debug.sources.local import LocalSource, local_identity
from hl_debug.sources.recorded import read_recorded
from hl_debug.sources.remote import MAX_BATCH, PredictClient, RemoteSource, remote_identity
from hl_debug.steps.train import load_vectors, resolve_encoder_identity, train_or_load
from hl_debug.storage import Store, hash_json, package_versions

log = logging.getLogger(__name__)

__all__ = ["EXPORT_COLUMNS", "PredictOptions", "distribution_stats", "import_predictions", "local_identity",
           "make_source", "predict", "predict_step", "prediction_rows", "remote_identity", "resolve_project_id",
           "rows_from_answers"]

EXPORT_COLUMNS = ("id", "label", "confidence", "entropy")
#: Failed texts a predict run lists (its counts keep ``n_failed`` for all of them).
MAX_FAILED_LISTED = 20


# -- scoring ------------------------------------------------------------------------


def distribution_stats(confidences: np.ndarray, *, residual: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Entropy and margin of top-k prediction distributions.

    Parameters
    ----------
    confidences:
        Shape ``(n, k)``: each row's confidences, most confident first; NaN pads rows with
        fewer than ``k`` values. A row of all NaN is a text with no prediction.
    residual:
        When a row's confidences sum to less than 1 (the API returned the top ``k`` of
        more intents), treat the missing mass as one more outcome: entropy is then a lower
        bound of the full distribution's, and margin (top minus runner-up, the runner-up
        being at most the missing mass) a lower bound too. With the full distribution
        (``--n-best all``) both are exact.

    Returns
    -------
    entropy : ndarray, shape ``(n,)``
        Shannon entropy in nats (NaN where there is no prediction).
    margin : ndarray, shape ``(n,)``
        Top confidence minus the second (NaN where there is no prediction).
    """
    P = np.asarray(confidences, dtype=float)
    if P.ndim != 2:
        raise ValueError(f"confidences must have shape (n, k), got {P.shape}")
    valid = ~np.isnan(P)
    if np.any(P[valid] < 0) or np.any(P[valid] > 1 + 1e-6):
        raise ValueError("confidences must lie in [0, 1]")
    has = valid.any(axis=1)
    Pz = np.where(valid, P, 0.0)
    rest = np.clip(1.0 - Pz.sum(axis=1), 0.0, 1.0) if residual else np.zeros(len(P))
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(Pz > 0, -Pz * np.log(np.where(Pz > 0, Pz, 1.0)), 0.0).sum(axis=1)
        terms += np.where(rest > 1e-12, -rest * np.log(np.where(rest > 1e-12, rest, 1.0)), 0.0)
    top = Pz[:, 0] if P.shape[1] else np.zeros(len(P))
    second = Pz[:, 1] if P.shape[1] > 1 else np.zeros(len(P))
    if residual:
        second = np.where(np.sum(valid, axis=1) > 1, second, rest)
    entropy = np.where(has, np.maximum(terms, 0.0), np.nan)
    margin = np.where(has, top - second, np.nan)
    return entropy, margin


def rows_from_answers(hashes: Sequence[str], answers: Sequence[Ranked]) -> list[dict[str, Any]]:
    """Prediction cache rows for ``answers`` (one ranking per text hash)."""
    if len(hashes) != len(answers):
        raise ValueError(f"{len(hashes)} hashes but {len(answers)} answers")
    k = max((len(a) for a in answers), default=0)
    P = np.full((len(answers), max(k, 1)), np.nan)
    for i, ranked in enumerate(answers):
        for j, (_, conf) in enumerate(ranked):
            P[i, j] = conf
    entropy, margin = distribution_stats(P)
    rows = []
    for i, (h, ranked) in enumerate(zip(hashes, answers)):
        if ranked:
            rows.append({"text_hash": h, "label": ranked[0][0], "confidence": ranked[0][1],
                         "distribution": [[lbl, conf] for lbl, conf in ranked],
                         "entropy": float(entropy[i]), "margin": float(margin[i])})
        else:
            rows.append({"text_hash": h, "label": None, "confidence": None, "distribution": [],
                         "entropy": None, "margin": None})
    return rows


# -- options and the source ---------------------------------------------------------


@dataclass(frozen=True)
class PredictOptions:
    """What the predict step asks, and of whom.

    Attributes
    ----------
    n_best:
        Intents asked per text; ``"all"`` (or None) asks for the full distribution.
    progress:
        Show a progress bar.
    api_url:
        Base URL of a remote endpoint; None (and no ``HL_API_URL``) uses the local model.
    api_key:
        ``X-API-Key`` for the remote endpoint (default ``HL_API_KEY``); never logged or stored.
    project_id:
        Project id in the URL (default ``HL_PROJECT_ID``, else the export's).
    batch_size, concurrency, timeout, max_retries, backoff_base, backoff_cap:
        Remote endpoints only, see :class:`~hl_debug.sources.remote.PredictClient`; batches never
        exceed 20. The local model scores in chunks (:class:`~hl_debug.sources.local.LocalSource`).
    encoder:
        Local model: the encoder whose stored vectors it trains on and scores (an encoder object
        or its identity; None: the store's active encoder).
    model, model_dir, retrain:
        Local model: an unfitted :class:`~hl_debug.models.intent_model.LocalIntentModel` to
        train, where it is saved, and whether to force retraining.
    engine, ray_address:
        Local model: where it scores — ``local`` (default, ``HL_ENGINE``) in this process,
        ``ray`` as a Ray Data job (an :class:`~hl_debug.engines.Engine` object is used as is);
        see :func:`hl_debug.engines.get_engine`.
    """

    n_best: int | str | None = default("n_best")
    progress: bool = True
    # remote endpoint
    api_url: str | None = None
    api_key: str | None = None
    project_id: int | str | None = None
    batch_size: int = default("predict_batch_size")
    concurrency: int = default("concurrency")
    timeout: float = default("timeout")
    max_retries: int = default("max_retries")
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    # local model
    encoder: Any = None
    model: Any = None
    model_dir: str | Path | None = None
    retrain: bool = default("retrain")
    engine: Any = None
    ray_address: str | None = None

    @classmethod
    def from_mapping(cls, options: dict[str, Any]) -> PredictOptions:
        """The options named in ``options`` (pipeline options; unknown keys and None values ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in options.items() if k in names and v is not None})


def _parse_n_best(n_best: int | str | None) -> int | None:
    """``"all"``/None -> None (the full distribution); else a positive int."""
    if n_best is None or (isinstance(n_best, str) and n_best.strip().lower() == "all"):
        return None
    try:
        k = int(n_best)
    except (TypeError, ValueError):
        raise ConfigError(f"--n-best must be a positive integer or 'all', got {n_best!r}") from None
    if k < 1:
        raise ConfigError(f"--n-best must be a positive integer or 'all', got {n_best!r}")
    return k


def resolve_project_id(store: Store, project_id: int | str | None) -> int:
    """``project_id``, else ``HL_PROJECT_ID``, else the export's single project id."""
    value = project_id if project_id not in (None, "") else resolve("project_id")
    if value in (None, ""):
        ids = [p for p in store.project_ids() if p is not None]
        if len(ids) != 1:
            raise ConfigError(f"the database holds {len(ids)} project ids ({ids[:5]}); choose one",
                              hint="Pass --project-id (or set HL_PROJECT_ID).")
        value = ids[0]
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--project-id must be an integer, got {value!r}") from None


def make_source(store: Store, options: PredictOptions) -> AnswerSource:
    """The answer source ``options`` name: the remote endpoint, else the local model (trained or loaded)."""
    if not 1 <= int(options.batch_size) <= MAX_BATCH:
        raise ConfigError(f"--batch-size must be between 1 and {MAX_BATCH}, got {options.batch_size}")
    if int(options.concurrency) < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {options.concurrency}")
    k = _parse_n_best(options.n_best)
    api_url = options.api_url or resolve("api_url")
    if api_url:
        pid = resolve_project_id(store, options.project_id)
        n_ask = k if k is not None else max(1, len(store.intents()))
        client = PredictClient(api_url, project_id=pid, api_key=options.api_key or resolve("api_key"), n_best=n_ask,
                               timeout=options.timeout, max_retries=options.max_retries,
                               backoff_base=options.backoff_base, backoff_cap=options.backoff_cap)
        return RemoteSource(client, n_best=k, batch_size=options.batch_size, concurrency=options.concurrency)
    fitted = train_or_load(store, encoder=options.encoder, model=options.model, folder=options.model_dir,
                           retrain=options.retrain)
    return LocalSource(fitted, n_best=k, engine=_scoring_engine(options))


def _scoring_engine(options: PredictOptions) -> Any:
    """The engine the local model scores on: None for ``local`` (the in-process loop)."""
    engine = as_engine(options.engine, address=options.ray_address)
    return None if engine.name == "local" else engine


# -- the step -----------------------------------------------------------------------


def predict(store: Store, options: PredictOptions | None = None, *, source: AnswerSource | None = None,
            **overrides: Any) -> dict[str, Any]:
    """Ask ``source`` (default: :func:`make_source`) for every utterance whose text has no cached answer yet.

    Parameters
    ----------
    options:
        :class:`PredictOptions`; keyword ``overrides`` replace its fields
        (``predict(store, api_url=..., n_best=3)``).
    source:
        A ready :class:`~hl_debug.sources.base.AnswerSource` (tests, other callers); overrides
        the one ``options`` name.

    Returns
    -------
    Counts: ``endpoint``, ``n_texts`` (distinct texts), ``n_cached``, ``n_predicted`` (asked
    and answered now), ``n_without_prediction`` (texts the endpoint gave no prediction,
    all runs), ``n_failed`` (texts of failed batches; run again to retry them),
    ``requests`` (HTTP requests; chunks for the local model), ``retries``, ``skipped``.
    """
    from tqdm.auto import tqdm

    store.require_utterances()
    options = dataclasses.replace(options or PredictOptions(), **overrides)
    source = source if source is not None else make_source(store, options)
    endpoint, stats = source.identity, source.stats
    texts = store.texts_by_hash()
    cached = store.cached_prediction_hashes(endpoint)
    todo = sorted(h for h in texts if h not in cached)
    counts: dict[str, Any] = {"endpoint": endpoint, "n_texts": len(texts), "n_cached": len(texts) - len(todo),
                              "n_predicted": 0, "n_failed": 0, "requests": 0, "retries": 0, "skipped": not todo}
    if todo:
        vectors = None
        if source.needs_vectors:
            _, _, by_hash = load_vectors(store, resolve_encoder_identity(store, options.encoder))
            vectors = np.vstack([by_hash[h] for h in todo]).astype(np.float32, copy=False)
        errors: list[str] = []
        failed: list[str] = []  # text hashes of the failed batches
        with store.run("predict", parameters=source.parameters, inputs_hash=hash_json([endpoint, todo]),
                       versions=package_versions("requests", "scikit-learn")) as run_counts:
            bar = tqdm(total=len(todo), desc="predict", unit="utt", disable=not options.progress)
            try:
                by_text = {texts[h]: h for h in todo}
                for outcome in source.answers(Query([texts[h] for h in todo], vectors)):
                    if outcome.answers is None:
                        counts["n_failed"] += len(outcome.texts)
                        errors.append(outcome.error or "unknown error")
                        failed += [by_text[t] for t in outcome.texts]
                    else:
                        store.save_predictions(endpoint, rows_from_answers(
                            [by_text[t] for t in outcome.texts], outcome.answers))
                        counts["n_predicted"] += len(outcome.texts)
                    bar.update(len(outcome.texts))
                    bar.set_postfix(ok=counts["n_predicted"], failed=counts["n_failed"],
                                    retries=stats.retries, refresh=False)
            finally:
                bar.close()
                counts["requests"], counts["retries"] = stats.requests, stats.retries
                run_counts.update({k: v for k, v in counts.items() if k != "skipped"})
                if counts["n_predicted"]:
                    store.set_meta("active_endpoint", endpoint)
        if errors:
            counts["first_error"] = errors[0]
            counts["failed"] = _failed_rows(store, texts, sorted(failed, key=todo.index)[:MAX_FAILED_LISTED])
            log.warning("%d text(s) in %d batch(es) failed (first: %s); run predict again to retry them",
                        counts["n_failed"], len(errors), errors[0])
    if counts["n_cached"] or counts["n_predicted"]:
        store.set_meta("active_endpoint", endpoint)
    summary = {e["endpoint"]: e for e in store.endpoints()}.get(endpoint, {})
    counts["n_without_prediction"] = int(summary.get("n_without_prediction") or 0)
    return counts


def _failed_rows(store: Store, texts: dict[str, str], hashes: list[str]) -> list[dict[str, Any]]:
    """``[{"ids": [...], "text": ...}]`` for the text hashes whose batch failed, in ``hashes``' order."""
    ids: dict[str, list[int]] = {}
    for row in store.utterance_rows(("id", "text_hash")):
        ids.setdefault(row["text_hash"], []).append(int(row["id"]))
    return [{"ids": ids.get(h, []), "text": texts[h]} for h in hashes]


def predict_step(store: Store, options: dict[str, Any]) -> dict[str, Any]:
    """Pipeline adapter: the :class:`PredictOptions` named in ``options``; ``encoder`` may be a
    name (with ``encoder_backend``) or an encoder object, as for the embed step."""
    from hl_debug.steps.embed import encoder_from_options

    opts = PredictOptions.from_mapping(options)
    if options.get("encoder") is not None:  # else the store's active encoder: the one the embed step used
        opts = dataclasses.replace(opts, encoder=encoder_from_options(options).identity)
    return predict(store, opts)


# -- recorded answers ---------------------------------------------------------------


def import_predictions(store: Store, path: str | Path, *, endpoint: str | None = default("import_endpoint"),
                       output: str | None = "intent") -> dict[str, Any]:
    """Load recorded predict answers (:func:`~hl_debug.sources.recorded.read_recorded`) into the
    cache under ``endpoint`` (default ``recorded:<file stem>``).

    Every item is validated before anything is written. Returns counts ``endpoint``,
    ``n_items``, ``n_saved`` (distinct texts), ``n_without_prediction`` (utterances whose
    answer was empty), ``n_unmatched`` (items whose text is not in the database) and
    ``n_conflicting`` (a text whose answers rank different labels; the first answer is kept).
    """
    store.require_utterances()
    by_position = store.text_hashes_by_position()
    source = read_recorded(path, by_position, endpoint=endpoint, output=output)
    if source.n_unmatched:
        log.warning("%d answer item(s) of %s match no utterance's text", source.n_unmatched, path)
    answers: dict[str, Ranked] = source.answers_by_hash
    hashes = list(answers)
    with store.run("import-predictions", parameters=source.parameters, inputs_hash=hash_json(hashes)) as run_counts:
        store.save_predictions(source.identity, rows_from_answers(hashes, [answers[h] for h in hashes]))
        empty = {h for h, a in answers.items() if not a}
        n_without = sum(1 for h in by_position if h in empty)
        counts = {"endpoint": source.identity, "n_items": source.n_items, "n_saved": len(hashes),
                  "n_without_prediction": n_without, "n_unmatched": source.n_unmatched,
                  "n_conflicting": source.n_conflicting}
        run_counts.update(counts)
    store.set_meta("recorded_endpoint", source.identity)
    return counts


# -- export -------------------------------------------------------------------------


def prediction_rows(store: Store, endpoint: str | None = default("export_endpoint")) -> list[dict[str, Any]]:
    """One row per utterance (by id): ``id, label, confidence, entropy, margin, endpoint``;
    label None where there is no prediction. ``endpoint`` defaults to the active one."""
    if endpoint is not None and endpoint not in {e["endpoint"] for e in store.endpoints()}:
        valid = ", ".join(e["endpoint"] for e in store.endpoints()) or "none yet"
        raise NotFoundError(f"no cached predictions for endpoint {endpoint!r}; valid: {valid}",
                            hint="Run `hl-debug predict` or `hl-debug import-predictions FILE` first.")
    # the active endpoint (the last predict run's), else the imported recorded answers
    endpoint = endpoint or store.active_endpoint() or store.get_meta("recorded_endpoint")
    if endpoint is None:
        error = MissingStepError("no predictions in the database yet", step="predict")
        error.hint = ("Run `hl-debug predict` (or `hl-debug import-predictions FILE` to load recorded answers) "
                      "first, or `hl-debug run EXPORT` for the whole pipeline.")
        raise error
    cols = store.prediction_columns(("id", "label", "confidence", "entropy", "margin", "endpoint"),
                                    endpoint=endpoint, align="id")
    return [{**dict(zip(cols, values)), "id": int(values[0])} for values in zip(*cols.values())]
