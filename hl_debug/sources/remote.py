"""The remote answer source: an HTTP client of the Humanloop predict contract.

:class:`RemoteSource` is the :class:`~hl_debug.sources.base.AnswerSource` over a
:class:`PredictClient` (a remote API or the local model server).

:class:`PredictClient` sends batches of at most 20 texts to
``POST {base}/projects/{project_id}/predict``, several at once, and retries what is
worth retrying: 5xx, 429 (honouring ``Retry-After``), timeouts and connection errors, with
exponential backoff and a cap. A 401/403/404/422 is a configuration problem and stops the
run. An answer of the wrong length or shape fails only its own batch.

Answers are parsed into :class:`Answer` lists (``value`` entries ``(label, confidence)``,
most confident first; an empty list means the API gave no prediction). The key is sent as
``X-API-Key`` and is never logged.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import requests

from hl_debug.errors import AnswerShapeError, PredictionAPIError, RetriesExhaustedError
from hl_debug.settings import default
from hl_debug.sources.base import BatchOutcome, ClientStats, Query, Ranked

log = logging.getLogger(__name__)

MAX_BATCH = 20
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

def parse_answer(payload: Any, texts: Sequence[str], *, output: str | None = "intent") -> list[Ranked]:
    """Validate one predict answer against the ``texts`` asked and return their rankings.

    Parameters
    ----------
    payload:
        The decoded JSON answer: a list with one item per text, in order.
    texts:
        The texts sent, shape ``(n,)``.
    output:
        Name of the prediction head to read; items whose ``predictions`` have no
        ``output`` field (older answers) are read from their first prediction.

    Returns
    -------
    A list of length ``n``; item ``i`` is ``[(label, confidence), ...]`` most confident
    first, empty when the API gave no prediction.

    Raises
    ------
    AnswerShapeError
        Naming the item and field that is wrong.
    """
    if not isinstance(payload, list):
        raise AnswerShapeError(f"expected a JSON array of {len(texts)} answers, got {type(payload).__name__}")
    if len(payload) != len(texts):
        raise AnswerShapeError(f"expected {len(texts)} answers (one per text), got {len(payload)}")
    out: list[Ranked] = []
    for i, item in enumerate(payload):
        out.append(parse_item(item, i, expected_text=texts[i], output=output))
    return out


def parse_item(item: Any, i: int, *, expected_text: str | None = None, output: str | None = "intent") -> Ranked:
    """Validate one answer item (see :func:`parse_answer`); ``i`` names it in errors."""
    if not isinstance(item, dict):
        raise AnswerShapeError(f"answer item {i}: expected an object, got {type(item).__name__}")
    data = item.get("data")
    if expected_text is not None and isinstance(data, dict) and "text" in data and data["text"] != expected_text:
        raise AnswerShapeError(
            f"answer item {i}: field 'data.text' echoes {str(data['text'])[:60]!r}, but {expected_text[:60]!r} "
            "was sent at that position (answers out of order)")
    preds = item.get("predictions")
    if not isinstance(preds, list):
        raise AnswerShapeError(f"answer item {i}: field 'predictions' must be a list, got {type(preds).__name__}")
    if not preds:
        return []
    chosen = next((p for p in preds if isinstance(p, dict) and p.get("output") == output), None)
    if chosen is None:
        chosen = preds[0]
        if isinstance(chosen, dict) and output is not None and chosen.get("output") not in (None, output):
            raise AnswerShapeError(f"answer item {i}: no prediction for output {output!r} "
                                   f"(got {[p.get('output') for p in preds if isinstance(p, dict)]})")
    if not isinstance(chosen, dict) or not isinstance(chosen.get("value"), list):
        raise AnswerShapeError(f"answer item {i}: field 'predictions[].value' must be a list")
    ranked: Ranked = []
    for j, v in enumerate(chosen["value"]):
        label = v.get("label") if isinstance(v, dict) else None
        conf = v.get("confidence") if isinstance(v, dict) else None
        if not isinstance(label, str) or not label:
            raise AnswerShapeError(f"answer item {i}: field 'value[{j}].label' must be a non-empty string")
        if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not (0.0 <= conf <= 1.0 + 1e-6) \
                or math.isnan(conf):
            raise AnswerShapeError(f"answer item {i}: field 'value[{j}].confidence' must be a number in [0, 1], "
                                   f"got {conf!r}")
        ranked.append((label, float(conf)))
    ranked.sort(key=lambda lc: -lc[1])
    return ranked


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def check_base_url(base_url: Any) -> str:
    """``base_url`` when it is an http(s) URL with a host and a valid port, else
    :class:`PredictionAPIError` naming ``--api-url``."""
    from urllib3.util import parse_url

    url = str(base_url or "")
    if not url.startswith(("http://", "https://")):
        raise PredictionAPIError(f"--api-url must be an http(s) URL, got {base_url!r}")
    try:
        parsed = parse_url(url)
        requests.Request("POST", url.rstrip("/") + "/projects/1/predict").prepare()
    except (ValueError, requests.RequestException) as exc:
        raise PredictionAPIError(f"--api-url {url!r} is not a usable URL: {exc}") from exc
    if not parsed.host or any(ch.isspace() for ch in url):
        raise PredictionAPIError(f"--api-url {url!r} names no host")
    if parsed.port is not None and not 0 < parsed.port <= 65535:
        raise PredictionAPIError(f"--api-url {url!r}: the port must be between 1 and 65535")
    return url


class PredictClient:
    """Client of ``POST {base_url}/projects/{project_id}/predict``.

    Parameters
    ----------
    base_url:
        The API's base URL (``http://127.0.0.1:8765``).
    project_id:
        Project id in the URL.
    api_key:
        Sent as ``X-API-Key`` when set. Never logged.
    n_best:
        Intents asked per text.
    timeout:
        Seconds to wait for an answer (connect and read) before retrying.
    max_retries:
        Retries per batch after the first attempt.
    backoff_base, backoff_cap:
        Delay before retry ``n`` is ``min(cap, base * 2**n)`` with jitter; the
        ``Retry-After`` of a 429 or 503 overrides it (capped at ``retry_after_cap``).
    retry_after_cap:
        Longest ``Retry-After`` honoured, in seconds.
    output:
        Prediction head to read from the answers.
    session_factory:
        Makes one :class:`requests.Session` per worker thread (tests may inject one).
    """

    def __init__(self, base_url: str, *, project_id: int | str, api_key: str | None = None, n_best: int = 1,
                 timeout: float = default("timeout"), max_retries: int = default("max_retries"), backoff_base: float = 0.5, backoff_cap: float = 30.0,
                 retry_after_cap: float = 120.0, output: str | None = "intent",
                 session_factory: Callable[[], requests.Session] | None = None) -> None:
        check_base_url(base_url)
        if int(n_best) < 1:
            raise ValueError(f"n_best must be >= 1, got {n_best}")
        self.base_url = str(base_url).rstrip("/")
        self.project_id = project_id
        self._api_key = api_key
        self.n_best = int(n_best)
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.retry_after_cap = retry_after_cap
        self.output = output
        self.session_factory = session_factory or requests.Session
        self.stats = ClientStats()
        self._local = threading.local()
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()

    def __repr__(self) -> str:  # never shows the key
        return f"PredictClient({self.url!r}, n_best={self.n_best}, key={'set' if self._api_key else 'none'})"

    @property
    def url(self) -> str:
        return f"{self.base_url}/projects/{self.project_id}/predict"

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = self.session_factory()
        return s

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            h["X-API-Key"] = self._api_key
        return h

    def _delay(self, attempt: int) -> float:
        base = min(self.backoff_cap, self.backoff_base * (2 ** attempt))
        return base * (0.5 + random.random() / 2)  # jitter so concurrent retries spread out

    def _record(self, status: str, *, retry: bool = False, n: int = 0) -> None:
        with self._stats_lock:
            self.stats.count(status)
            self.stats.requests += 1
            self.stats.texts_sent += n
            self.stats.retries += int(retry)

    def predict_batch(self, texts: Sequence[str]) -> list[Ranked]:
        """Ask for one batch (at most 20 texts), retrying transient failures.

        Raises :class:`PredictionAPIError` for a fatal answer (401, 403, 404, 422, or
        retries exhausted) and :class:`AnswerShapeError` for a malformed answer.
        """
        texts = list(texts)
        if not 0 < len(texts) <= MAX_BATCH:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH} texts, got {len(texts)}")
        body: dict[str, Any] = {"data": [{"text": t} for t in texts], "n_best": self.n_best}
        last = ""
        for attempt in range(self.max_retries + 1):
            if self._stop.is_set():
                raise PredictionAPIError("stopped")
            wait_s: float | None = None
            try:
                resp = self._session().post(self.url, json=body, headers=self._headers(), timeout=self.timeout)
            except requests.Timeout:
                last = f"no answer within {self.timeout:g}s"
                self._record("timeout", retry=attempt < self.max_retries, n=len(texts))
            except requests.ConnectionError as exc:
                last = f"connection error: {type(exc).__name__}"
                self._record("connection", retry=attempt < self.max_retries, n=len(texts))
            except requests.RequestException as exc:  # a URL requests cannot send to: retrying will not help
                raise PredictionAPIError(f"cannot send to {self.url}: {exc}") from exc
            else:
                status = resp.status_code
                if status == 200:
                    self._record("200", n=len(texts))
                    try:
                        payload = resp.json()
                    except ValueError as exc:
                        raise AnswerShapeError(f"the answer is not JSON: {exc}") from exc
                    return parse_answer(payload, texts, output=self.output)
                self._record(str(status), retry=status in RETRY_STATUSES and attempt < self.max_retries,
                             n=len(texts))
                detail = _detail_text(resp)
                if status in (401, 403):
                    raise PredictionAPIError(
                        f"{self.url} refused the API key (HTTP {status}): {detail}",
                        hint="Pass the right key with --api-key or HL_API_KEY.")
                if status == 404:
                    raise PredictionAPIError(
                        f"{self.url} answered HTTP 404: {detail}",
                        hint=f"Check --api-url and --project-id (HL_PROJECT_ID; this run asked project {self.project_id}). "
                             "`hl-debug serve-model` serves the export's project id unless started with --project-id.")
                if status not in RETRY_STATUSES:
                    raise PredictionAPIError(f"{self.url} answered HTTP {status}: {detail}")
                last = f"HTTP {status}: {detail}"
                if status in (429, 503):  # both may say when to come back
                    ra = retry_after_seconds(resp.headers.get("Retry-After"))
                    wait_s = None if ra is None else min(ra, self.retry_after_cap)
            if attempt < self.max_retries:
                delay = wait_s if wait_s is not None else self._delay(attempt)
                log.debug("batch of %d: %s; retry %d/%d in %.2fs", len(texts), last, attempt + 1,
                          self.max_retries, delay)
                if self._stop.wait(delay):
                    raise PredictionAPIError("stopped")
        raise RetriesExhaustedError(f"{self.url} failed {self.max_retries + 1} times; last: {last}")

    def predict_many(self, texts: Sequence[str], *, batch_size: int = default("predict_batch_size"),
                     concurrency: int = default("concurrency"),
                     ) -> Iterator[BatchOutcome]:
        """Ask for ``texts`` in batches, ``concurrency`` at a time; yield each batch's outcome
        as it completes (in completion order), so the caller can save it at once.

        A malformed answer or exhausted retries yield a failed :class:`BatchOutcome`
        (``error`` set) and the run continues; a fatal error (bad key, bad URL) stops
        every worker and is raised. Closing the generator early (or Ctrl-C) stops the
        workers without starting new requests.
        """
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, got {batch_size}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        texts = list(texts)
        batches = [texts[i:i + batch_size] for i in range(0, len(texts), batch_size)]
        self._stop.clear()

        def work(index: int, batch: list[str]) -> BatchOutcome:
            try:
                return BatchOutcome(index, batch, answers=self.predict_batch(batch))
            except (AnswerShapeError, RetriesExhaustedError) as exc:
                log.warning("batch %d failed: %s", index, exc.message)
                return BatchOutcome(index, batch, error=exc.message)

        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="predict")
        pending: set[Future] = set()
        todo = iter(enumerate(batches))
        try:
            # Keep at most `concurrency` batches in flight: nothing is sent that Ctrl-C would waste.
            for index, batch in todo:
                pending.add(pool.submit(work, index, batch))
                if len(pending) >= concurrency:
                    break
            while pending:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
                    nxt = next(todo, None)
                    if nxt is not None:
                        pending.add(pool.submit(work, *nxt))
        finally:
            self._stop.set()
            pool.shutdown(wait=True, cancel_futures=True)


def remote_identity(api_url: str, project_id: int | str, n_best: int | None) -> str:
    """Cache identity of a remote endpoint: URL + project (+ n_best when not all); never the key."""
    return f"api:{api_url.rstrip('/')}/projects/{project_id}" + ("" if n_best is None else f"?n_best={n_best}")


class RemoteSource:
    """Answers from a :class:`PredictClient`, batches of ``batch_size`` (<= 20), ``concurrency`` at once.

    Parameters
    ----------
    client:
        The configured client (its ``n_best`` is what each text is asked for).
    n_best:
        What the user asked for (None: the full distribution); names the cache identity.
    batch_size, concurrency:
        See :meth:`PredictClient.predict_many`.
    """

    needs_vectors = False

    def __init__(self, client: PredictClient, *, n_best: int | None = None, batch_size: int = default("predict_batch_size"),
                 concurrency: int = default("concurrency"), source: str = "remote") -> None:
        self.client = client
        self.n_best = n_best
        self.batch_size = int(batch_size)
        self.concurrency = int(concurrency)
        self.source = source

    @property
    def identity(self) -> str:
        return remote_identity(self.client.base_url, self.client.project_id, self.n_best)

    @property
    def parameters(self) -> dict[str, Any]:
        return {"endpoint": self.identity, "source": self.source, "n_best": self.client.n_best,
                "batch_size": self.batch_size, "concurrency": self.concurrency, "timeout": self.client.timeout,
                "max_retries": self.client.max_retries}

    @property
    def stats(self) -> ClientStats:
        return self.client.stats

    def answers(self, query: Query) -> Iterator[BatchOutcome]:
        return self.client.predict_many(query.texts, batch_size=self.batch_size, concurrency=self.concurrency)


def _detail_text(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200] or resp.reason or ""
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return str(detail)[:300]
