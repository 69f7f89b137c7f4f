"""The ``predict`` step: enrich every utterance with a prediction API's answer.

With an ``api_url`` the remote endpoint is asked over HTTP (:mod:`hl_debug.sources.remote`);
without one the local model (:mod:`hl_debug.models.intent_model`) is trained or loaded and scores
the texts in-process, on the vectors the store already holds. Answers are cached in the
store by (endpoint identity, text hash), saved batch by batch, so a re-run (or a run
interrupted with Ctrl-C) only asks what is missing.

Why the local model is not asked over HTTP: it used to be served on a loopback port and
asked 20 texts per request like a remote API. At 100k texts that was 4,999 requests and
113 s of JSON, sockets and thread hand-offs around a model that answers the same 100k rows
from cached vectors in a few seconds with no server (``benchmarks/RESULTS.md``, "Predict
step (session 2)"). The answers and cache rows are identical (:meth:`LocalIntentModel.top_k
<hl_debug.models.intent_model.LocalIntentModel.top_k>` either way; JSON round-trips floats
exactly), which a test checks against the model server. The HTTP contract is unchanged: it
is what remote endpoints speak, what ``hl-debug serve-model`` serves, and what the tests
exercise against the local server.

Small changes: answers are keyed by text hash, so a changed utterance costs one answer.
A remote endpoint is asked only the new texts. The local model keeps its identity (and
its answers) while its training rows, encoder and parameters are unchanged; when a
change touches a training row it is retrained, every answer may differ, and every text is
scored again under the new identity: correct, and cheap in-process (seconds at 100k).

Per text the cache holds the top label, its confidence, the top-k distribution and the
entropy and margin computed from it (:func:`distribution_stats`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hl_debug.sources.remote import MAX_BATCH, BatchOutcome, ClientStats, PredictClient, Ranked, parse_item
from hl_debug.errors import AnswerShapeError, ConfigError, NotFoundError, PredictionsFileError
from hl_debug.settings import resolve
from hl_debug.storage import Store, hash_json, package_versions, text_hash

log = logging.getLogger(__name__)

EXPORT_COLUMNS = ("id", "label", "confidence", "entropy")


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


# -- identities ---------------------------------------------------------------------


def remote_identity(api_url: str, project_id: int | str, n_best: int | None) -> str:
    """Cache identity of a remote endpoint: URL + project (+ n_best when not all); never the key."""
    return f"api:{api_url.rstrip('/')}/projects/{project_id}" + ("" if n_best is None else f"?n_best={n_best}")


def local_identity(model_hash: str, n_best: int | None) -> str:
    """Cache identity of the local model: changes whenever the model is retrained differently."""
    return f"local:{model_hash[:12]}" + ("" if n_best is None else f"?n_best={n_best}")


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


# -- the step -----------------------------------------------------------------------


def predict(store: Store, *, api_url: str | None = None, api_key: str | None = None,
            project_id: int | str | None = None, n_best: int | str | None = "all", batch_size: int = MAX_BATCH,
            concurrency: int = 4, timeout: float = 30.0, max_retries: int = 5, backoff_base: float = 0.5,
            backoff_cap: float = 30.0, encoder: Any | None = None, model: Any | None = None,
            model_dir: str | Path | None = None, retrain: bool = False, progress: bool = True,
            client: PredictClient | None = None) -> dict[str, Any]:
    """Ask the endpoint for every utterance whose text has no cached answer yet.

    Parameters
    ----------
    api_url:
        Base URL of a remote endpoint; None (and no ``HL_API_URL``) uses the local model,
        scored in-process (see the module docstring).
    api_key:
        ``X-API-Key`` for the remote endpoint (default ``HL_API_KEY``); never logged or stored.
    project_id:
        Project id in the URL (default ``HL_PROJECT_ID``, else the export's).
    n_best:
        Intents asked per text; ``"all"`` asks for the full distribution.
    batch_size, concurrency, timeout, max_retries, backoff_base, backoff_cap:
        See :class:`hl_debug.sources.remote.PredictClient`; batches never exceed 20. Remote
        endpoints only: the local model scores in chunks (:class:`InProcessScorer`).
    encoder, model, model_dir, retrain:
        The local model's encoder, an unfitted :class:`~hl_debug.models.intent_model.LocalIntentModel`
        to train, where it is saved and whether to force retraining.
    client:
        A ready :class:`PredictClient` (tests); overrides ``api_url``.

    Returns
    -------
    Counts: ``endpoint``, ``n_texts`` (distinct texts), ``n_cached``, ``n_predicted`` (asked
    and answered now), ``n_without_prediction`` (texts the endpoint gave no prediction,
    all runs), ``n_failed`` (texts of failed batches; run again to retry them),
    ``requests`` (HTTP requests; chunks for the local model), ``retries``, ``skipped``.
    """
    from tqdm.auto import tqdm

    store.require_utterances()
    if not 1 <= int(batch_size) <= MAX_BATCH:
        raise ConfigError(f"--batch-size must be between 1 and {MAX_BATCH}, got {batch_size}")
    if int(concurrency) < 1:
        raise ConfigError(f"--concurrency must be at least 1, got {concurrency}")
    k = _parse_n_best(n_best)
    api_url = api_url or resolve("api_url")
    if client is not None:
        endpoint = remote_identity(client.base_url, client.project_id, k)
        source = "client"
    elif api_url:
        pid = resolve_project_id(store, project_id)
        endpoint = remote_identity(api_url, pid, k)
        n_ask = k if k is not None else max(1, len(store.intents()))
        client = PredictClient(api_url, project_id=pid, api_key=api_key or resolve("api_key"), n_best=n_ask,
                               timeout=timeout, max_retries=max_retries, backoff_base=backoff_base,
                               backoff_cap=backoff_cap)
        source = "remote"
    else:
        from hl_debug.steps.embed import embed
        from hl_debug.models.intent_model import CachedEncoder, train_or_load

        fitted = train_or_load(store, encoder=encoder, model=model, folder=model_dir, retrain=retrain,
                               progress=progress)
        endpoint = local_identity(fitted.metadata_["model_hash"], k)
        n_ask = k if k is not None else len(fitted.classes_)
        scorer = InProcessScorer(fitted, n_best=n_ask)

        def source_of_answers(texts: list[str]) -> Iterator[BatchOutcome]:
            # the texts are embedded (and cached) anyway: score those vectors, encode only unknown texts
            embed(store, fitted.get_encoder(), progress=progress)
            fitted.set_params(encoder=CachedEncoder.from_store(store, fitted.get_encoder()))
            return scorer.predict_many(texts)

        params = {"endpoint": endpoint, "source": "local", "mode": "in-process", "n_best": n_ask,
                  "chunk_size": scorer.chunk_size}
        return _run(store, endpoint, source_of_answers, params=params, stats=scorer.stats, progress=progress,
                    tqdm=tqdm)
    params = {"endpoint": endpoint, "source": source, "n_best": client.n_best, "batch_size": int(batch_size),
              "concurrency": int(concurrency), "timeout": client.timeout, "max_retries": client.max_retries}
    http_client = client
    return _run(store, endpoint,
                lambda texts: http_client.predict_many(texts, batch_size=int(batch_size),
                                                       concurrency=int(concurrency)),
                params=params, stats=client.stats, progress=progress, tqdm=tqdm)


class InProcessScorer:
    """Answers of a fitted local model, computed in this process in chunks.

    Yields the same :class:`~hl_debug.sources.remote.BatchOutcome` stream as
    :meth:`PredictClient.predict_many <hl_debug.sources.remote.PredictClient.predict_many>`, so
    the predict step saves, counts and resumes both alike; ``stats.requests`` counts chunks.

    Parameters
    ----------
    model:
        A fitted model with ``top_k(texts, k)`` (:class:`~hl_debug.models.intent_model.LocalIntentModel`,
        usually over a :class:`~hl_debug.models.intent_model.CachedEncoder`).
    n_best:
        Intents per answer.
    chunk_size:
        Texts scored (and saved) at once: large enough that per-chunk overhead vanishes,
        small enough that Ctrl-C loses little.
    """

    def __init__(self, model: Any, *, n_best: int, chunk_size: int = 2048) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.model = model
        self.n_best = n_best
        self.chunk_size = chunk_size
        self.stats = ClientStats()

    def predict_many(self, texts: Sequence[str]) -> Iterator[BatchOutcome]:
        """Answers for ``texts`` in chunks of ``chunk_size``, in order."""
        texts = list(texts)
        for index, start in enumerate(range(0, len(texts), self.chunk_size)):
            chunk = texts[start:start + self.chunk_size]
            answers: list[Ranked] = self.model.top_k(chunk, self.n_best)
            self.stats.requests += 1
            self.stats.texts_sent += len(chunk)
            yield BatchOutcome(index=index, texts=chunk, answers=answers, attempts=1)


def _run(store: Store, endpoint: str, source_of_answers: Callable[[list[str]], Iterable[BatchOutcome]], *,
         params: dict[str, Any], stats: ClientStats, progress: bool, tqdm: Any) -> dict[str, Any]:
    texts = store.texts_by_hash()
    cached = store.cached_prediction_hashes(endpoint)
    todo = sorted(h for h in texts if h not in cached)
    counts: dict[str, Any] = {"endpoint": endpoint, "n_texts": len(texts), "n_cached": len(texts) - len(todo),
                              "n_predicted": 0, "n_failed": 0, "requests": 0, "retries": 0, "skipped": not todo}
    if todo:
        errors: list[str] = []
        with store.run("predict", parameters=params, inputs_hash=hash_json([endpoint, todo]),
                       versions=package_versions("requests", "scikit-learn")) as run_counts:
            bar = tqdm(total=len(todo), desc="predict", unit="utt", disable=not progress)
            try:
                by_text = {texts[h]: h for h in todo}
                for outcome in source_of_answers([texts[h] for h in todo]):
                    if outcome.answers is None:
                        counts["n_failed"] += len(outcome.texts)
                        errors.append(outcome.error or "unknown error")
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
            log.warning("%d text(s) in %d batch(es) failed (first: %s); run predict again to retry them",
                        counts["n_failed"], len(errors), errors[0])
    if counts["n_cached"] or counts["n_predicted"]:
        store.set_meta("active_endpoint", endpoint)
    summary = {e["endpoint"]: e for e in store.endpoints()}.get(endpoint, {})
    counts["n_without_prediction"] = int(summary.get("n_without_prediction") or 0)
    return counts


def predict_step(store: Store, options: dict[str, Any]) -> dict[str, Any]:
    """Pipeline adapter: options ``api_url``, ``api_key``, ``project_id``, ``encoder`` (a name
    or an encoder object), ``n_best``, ``concurrency``, ``progress``."""
    enc = options.get("encoder")
    if isinstance(enc, str):
        from hl_debug.steps.embed import default_encoder

        enc = default_encoder(enc)
    keys = ("api_url", "api_key", "project_id", "n_best", "batch_size", "concurrency", "timeout", "max_retries",
            "model_dir", "retrain", "progress")
    kwargs = {k: options[k] for k in keys if options.get(k) is not None}
    return predict(store, encoder=enc, **kwargs)


# -- recorded answers ---------------------------------------------------------------


def import_predictions(store: Store, path: str | Path, *, endpoint: str | None = None,
                       output: str | None = "intent") -> dict[str, Any]:
    """Load recorded predict answers into the cache under ``endpoint`` (default
    ``recorded:<file stem>``).

    The file is a JSON array of answer items (``{"data": {"text": ...}, "predictions":
    [...]}``). Items carrying ``data.text`` are matched to utterances by text; items
    without it must be one per utterance in export order. Every item is validated before
    anything is written. Returns counts ``endpoint``, ``n_items``, ``n_saved`` (distinct
    texts), ``n_without_prediction`` (utterances whose answer was empty), ``n_unmatched``
    (items whose text is not in the database) and ``n_conflicting`` (a text whose
    answers rank different labels; the first answer is kept).
    """
    store.require_utterances()
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise PredictionsFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise PredictionsFileError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(items, list) or not items:
        raise PredictionsFileError(f"{path}: expected a non-empty JSON array of answer items")
    endpoint = endpoint or f"recorded:{path.name.split('.')[0]}"
    by_position = [r["text_hash"] for r in store.utterances(columns="text_hash", order_by="position, id")]
    known = set(by_position)
    answers: dict[str, Ranked] = {}
    n_unmatched = n_conflicting = 0
    problems: list[str] = []
    for i, item in enumerate(items):
        data = item.get("data") if isinstance(item, dict) else None
        text = data.get("text") if isinstance(data, dict) else None
        try:
            ranked = parse_item(item, i, output=output)
        except AnswerShapeError as exc:
            problems.append(exc.message)
            continue
        if isinstance(text, str):
            h = text_hash(text)
            if h not in known:
                n_unmatched += 1
                continue
        elif len(items) == len(by_position):
            h = by_position[i]
        else:
            problems.append(f"answer item {i}: no 'data.text' to match it by, and the file has {len(items)} "
                            f"items for {len(by_position)} utterances (so export order cannot be used)")
            continue
        if h in answers:
            n_conflicting += int([lbl for lbl, _ in answers[h]] != [lbl for lbl, _ in ranked])
            continue
        answers[h] = ranked
    if problems:
        shown = "\n".join(f"  - {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise PredictionsFileError(f"{path} has {len(problems)} invalid answer item(s); nothing was imported:\n"
                                   f"{shown}{more}")
    if not answers:
        raise PredictionsFileError(f"none of the {len(items)} answer items of {path} matches an utterance's text",
                                   hint="Import answers recorded for this export (check --db).")
    if n_unmatched:
        log.warning("%d answer item(s) of %s match no utterance's text", n_unmatched, path)
    hashes = list(answers)
    with store.run("import-predictions", parameters={"file": str(path), "endpoint": endpoint},
                   inputs_hash=hash_json(hashes)) as run_counts:
        store.save_predictions(endpoint, rows_from_answers(hashes, [answers[h] for h in hashes]))
        empty = {h for h, a in answers.items() if not a}
        n_without = sum(1 for h in by_position if h in empty)
        counts = {"endpoint": endpoint, "n_items": len(items), "n_saved": len(hashes),
                  "n_without_prediction": n_without, "n_unmatched": n_unmatched, "n_conflicting": n_conflicting}
        run_counts.update(counts)
    store.set_meta("recorded_endpoint", endpoint)
    return counts


# -- export -------------------------------------------------------------------------


def prediction_rows(store: Store, endpoint: str | None = None) -> list[dict[str, Any]]:
    """One row per utterance (by id): ``id, label, confidence, entropy, margin, endpoint``;
    label None where there is no prediction. ``endpoint`` defaults to the active one."""
    if endpoint is not None and endpoint not in {e["endpoint"] for e in store.endpoints()}:
        valid = ", ".join(e["endpoint"] for e in store.endpoints()) or "none yet"
        raise NotFoundError(f"no cached predictions for endpoint {endpoint!r}; valid: {valid}",
                            hint="Run `hl-debug predict` or `hl-debug import-predictions FILE` first.")
    df = store.predictions_df(endpoint)
    df = df.astype(object).where(df.notna(), None)
    return [
        {"id": int(r["id"]), "label": r["label"], "confidence": r["confidence"], "entropy": r["entropy"],
         "margin": r["margin"], "endpoint": r["endpoint"]}
        for r in df.to_dict("records")
    ]
