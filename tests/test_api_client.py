"""The predict client against a deliberately flaky local server: nothing lost, nothing asked twice."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from email.utils import formatdate

import pytest
from flask import Flask, jsonify, request

from hl_debug.errors import AnswerShapeError, PredictionAPIError
from hl_debug.sources.model_server import ServerThread
from hl_debug.sources.remote import PredictClient, parse_answer, retry_after_seconds

LABELS = ("alpha", "beta", "gamma")


def label_of(text: str) -> str:
    return LABELS[sum(map(ord, text)) % len(LABELS)]


class FlakyServer:
    """A predict endpoint whose answers follow a fault plan.

    ``plan`` maps a batch's first text to the faults its successive requests get
    (``"500"``, ``"429"``, ``"slow"``, ``"short"``, ``"shuffled"``, ``"garbage"``,
    ``"401"``, ``"422"``); requests beyond the plan are answered correctly. Texts in
    ``empty`` get an empty ``value`` list. ``log`` records ``(text, outcome)`` for every
    text of every request.
    """

    def __init__(self, plan=None, *, empty=(), retry_after="1", slow_s=1.5, delay_s=0.0, key=None):
        self.plan = {k: list(v) for k, v in (plan or {}).items()}
        self.empty = set(empty)
        self.retry_after = retry_after
        self.slow_s = slow_s
        self.delay_s = delay_s
        self.key = key
        self.log: list[tuple[str, str]] = []
        self.batch_sizes: list[int] = []
        self.in_flight = self.max_in_flight = 0
        self.times: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        self.app = self._make_app()

    def ok_counts(self) -> Counter:
        return Counter(t for t, outcome in self.log if outcome == "ok")

    def _make_app(self) -> Flask:
        app = Flask("flaky")

        @app.post("/projects/<int:pid>/predict")
        def predict(pid):
            body = request.get_json()
            texts = [d["text"] for d in body["data"]]
            with self._lock:
                fault = self.plan.get(texts[0], []).pop(0) if self.plan.get(texts[0]) else "ok"
                self.batch_sizes.append(len(texts))
                self.log.extend((t, fault) for t in texts)
                self.times.setdefault(texts[0], []).append(time.monotonic())
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                if self.key is not None and request.headers.get("X-API-Key") != self.key:
                    return jsonify({"detail": "bad key"}), 401
                if self.delay_s:
                    time.sleep(self.delay_s)
                answer = [
                    {"data": {"text": t}, "predictions": [{"output": "intent", "value": [] if t in self.empty else [
                        {"label": label_of(t), "confidence": 0.7}, {"label": "other", "confidence": 0.2}][:body["n_best"]]}]}
                    for t in texts
                ]
                if fault == "500":
                    return jsonify({"detail": "internal error"}), 500
                if fault in ("429", "503"):
                    return jsonify({"detail": "slow down"}), int(fault), {"Retry-After": self.retry_after}
                if fault == "401":
                    return jsonify({"detail": "bad key"}), 401
                if fault == "422":
                    return jsonify({"detail": [{"loc": ["body"], "msg": "bad", "type": "x"}]}), 422
                if fault == "slow":
                    time.sleep(self.slow_s)
                if fault == "short":
                    answer = answer[:-1]
                if fault == "shuffled":
                    answer = answer[::-1]
                if fault == "garbage":
                    return "<html>oops</html>", 200
                return jsonify(answer)
            finally:
                with self._lock:
                    self.in_flight -= 1

        return app


@pytest.fixture
def serve():
    servers = []

    def _serve(flaky: FlakyServer) -> str:
        st = ServerThread(flaky.app).start()
        servers.append(st)
        return st.url

    yield _serve
    for st in servers:
        st.shutdown()


def make_client(url, **kw) -> PredictClient:
    opts = {"project_id": 7, "n_best": 2, "timeout": 1.0, "max_retries": 3, "backoff_base": 0.001,
            "backoff_cap": 0.01}
    return PredictClient(url, **{**opts, **kw})


TEXTS = [f"utterance number {i}" for i in range(47)]


def run_all(client, texts=TEXTS, **kw):
    return list(client.predict_many(texts, **kw))


# -- parse_answer ---------------------------------------------------------------------


def _item(text, value):
    return {"data": {"text": text}, "predictions": [{"output": "intent", "value": value}]}


def test_parse_answer_ranks_and_reads_empty_values():
    payload = [_item("a", [{"label": "x", "confidence": 0.2}, {"label": "y", "confidence": 0.8}]), _item("b", [])]
    assert parse_answer(payload, ["a", "b"]) == [[("y", 0.8), ("x", 0.2)], []]


def test_parse_answer_accepts_answers_without_output_name():
    payload = [{"data": {"text": "a"}, "predictions": [{"value": [{"label": "x", "confidence": 1}]}]}]
    assert parse_answer(payload, ["a"]) == [[("x", 1.0)]]


@pytest.mark.parametrize("payload, texts, match", [
    ({"a": 1}, ["a"], "expected a JSON array of 1"),
    ([_item("a", [])], ["a", "b"], "expected 2 answers"),
    ([_item("b", []), _item("a", [])], ["a", "b"], r"answer item 0: field 'data.text'.*out of order"),
    (["x"], ["a"], "answer item 0: expected an object"),
    ([{"data": {"text": "a"}}], ["a"], "answer item 0: field 'predictions'"),
    ([_item("a", [{"label": "", "confidence": 0.5}])], ["a"], r"value\[0\].label"),
    ([_item("a", [{"label": "x", "confidence": 1.5}])], ["a"], r"value\[0\].confidence"),
    ([_item("a", [{"label": "x", "confidence": "high"}])], ["a"], r"value\[0\].confidence"),
    ([{"data": {"text": "a"}, "predictions": [{"output": "sentiment", "value": []}]}], ["a"], "no prediction for output"),
])
def test_parse_answer_rejects_bad_shapes(payload, texts, match):
    with pytest.raises(AnswerShapeError, match=match):
        parse_answer(payload, texts)


def test_retry_after_parses_seconds_and_dates():
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert 8 <= retry_after_seconds(formatdate(time.time() + 10, usegmt=True)) <= 10


# -- the flaky server -------------------------------------------------------------------


def test_clean_run_batches_at_most_20_and_keeps_order(serve):
    flaky = FlakyServer(empty={TEXTS[3], TEXTS[30]})
    outcomes = run_all(make_client(serve(flaky)), concurrency=3)
    assert max(flaky.batch_sizes) <= 20 and sorted(flaky.batch_sizes) == [7, 20, 20]
    answers = {t: a for o in outcomes for t, a in zip(o.texts, o.answers)}
    assert set(answers) == set(TEXTS)
    assert all(answers[t] == [(label_of(t), 0.7), ("other", 0.2)] for t in TEXTS if t not in flaky.empty)
    assert answers[TEXTS[3]] == [] and answers[TEXTS[30]] == []
    assert flaky.ok_counts() == Counter(TEXTS)


def test_transient_faults_are_retried_and_nothing_is_lost_or_asked_twice(serve):
    # batches start at TEXTS[0], TEXTS[20], TEXTS[40]
    flaky = FlakyServer({TEXTS[0]: ["500", "500"], TEXTS[20]: ["slow"], TEXTS[40]: ["429"]}, retry_after="0")
    client = make_client(serve(flaky))
    outcomes = run_all(client, concurrency=4)
    assert all(o.error is None for o in outcomes)
    assert sorted(t for o in outcomes for t in o.texts) == sorted(TEXTS)
    # every text answered exactly once; only the faulted batches were re-sent
    assert flaky.ok_counts() == Counter(TEXTS)
    faulted = Counter(outcome for _, outcome in flaky.log if outcome != "ok")
    assert faulted == {"500": 40, "slow": 20, "429": 7}
    assert client.stats.retries == 4 and client.stats.by_status["timeout"] == 1


@pytest.mark.parametrize("status", ["429", "503"])
def test_retry_after_is_honoured(serve, status):
    flaky = FlakyServer({TEXTS[0]: [status]}, retry_after="1")
    run_all(make_client(serve(flaky)), texts=TEXTS[:5])
    t = flaky.times[TEXTS[0]]
    assert len(t) == 2 and t[1] - t[0] >= 0.9  # the backoff alone would wait ~1 ms


def test_retry_after_is_capped(serve):
    flaky = FlakyServer({TEXTS[0]: ["429"]}, retry_after="3600")
    t0 = time.monotonic()
    outcomes = run_all(make_client(serve(flaky), retry_after_cap=0.05), texts=TEXTS[:5])
    assert outcomes[0].answers is not None and time.monotonic() - t0 < 5


def test_backoff_grows_exponentially_up_to_the_cap(monkeypatch):
    client = make_client("http://127.0.0.1:9", backoff_base=0.1, backoff_cap=1.0)
    monkeypatch.setattr("hl_debug.sources.remote.random.random", lambda: 1.0)  # no jitter
    assert [round(client._delay(n), 6) for n in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    monkeypatch.setattr("hl_debug.sources.remote.random.random", lambda: 0.0)  # most jitter: half the delay
    assert client._delay(2) == pytest.approx(0.2)


def test_retries_wait_between_attempts(serve):
    flaky = FlakyServer({TEXTS[0]: ["500"] * 3})
    client = make_client(serve(flaky), backoff_base=0.05, backoff_cap=0.2, max_retries=3)
    (outcome,) = run_all(client, texts=TEXTS[:2])
    t = flaky.times[TEXTS[0]]
    gaps = [b - a for a, b in zip(t, t[1:])]
    assert outcome.answers is not None and len(gaps) == 3
    assert gaps[0] >= 0.025 and gaps[1] >= 0.05 and gaps[2] >= 0.1  # at least half of base * 2**n


def test_short_or_shuffled_answer_fails_only_its_batch(serve):
    flaky = FlakyServer({TEXTS[0]: ["short"], TEXTS[20]: ["shuffled"]})
    outcomes = {o.index: o for o in run_all(make_client(serve(flaky)), concurrency=2)}
    assert outcomes[0].answers is None and "expected 20 answers" in outcomes[0].error
    assert outcomes[1].answers is None and "out of order" in outcomes[1].error
    assert outcomes[2].answers is not None and outcomes[2].texts == TEXTS[40:]
    # a malformed answer is not retried within the run (it is retried on the next run)
    assert len(flaky.times[TEXTS[0]]) == 1 and len(flaky.times[TEXTS[20]]) == 1


def test_non_json_answer_fails_its_batch(serve):
    flaky = FlakyServer({TEXTS[0]: ["garbage"]})
    (outcome,) = run_all(make_client(serve(flaky)), texts=TEXTS[:3])
    assert outcome.answers is None and "not JSON" in outcome.error


def test_retries_exhausted_fail_the_batch_not_the_run(serve):
    flaky = FlakyServer({TEXTS[0]: ["500"] * 10})
    outcomes = {o.index: o for o in run_all(make_client(serve(flaky), max_retries=2))}
    assert outcomes[0].answers is None and "failed 3 times" in outcomes[0].error and "HTTP 500" in outcomes[0].error
    assert outcomes[1].answers is not None and outcomes[2].answers is not None
    assert len(flaky.times[TEXTS[0]]) == 3


def test_wrong_key_stops_the_run_without_retrying(serve):
    flaky = FlakyServer(key="right")
    client = make_client(serve(flaky), api_key="wrong")
    with pytest.raises(PredictionAPIError, match="refused the API key") as info:
        run_all(client, concurrency=1)
    assert "--api-key" in info.value.hint
    assert len(flaky.batch_sizes) == 1


def test_422_is_fatal(serve):
    flaky = FlakyServer({TEXTS[0]: ["422"]})
    with pytest.raises(PredictionAPIError, match="HTTP 422"):
        run_all(make_client(serve(flaky)), concurrency=1)


def test_connection_refused_is_retried_then_fails_the_batch():
    st = ServerThread(FlakyServer().app)
    url = st.url
    st.shutdown()  # nothing listens on that port any more
    (outcome,) = run_all(make_client(url, max_retries=1), texts=TEXTS[:3])
    assert outcome.answers is None and "connection error" in outcome.error


def test_concurrency_is_bounded(serve):
    flaky = FlakyServer(delay_s=0.05)
    run_all(make_client(serve(flaky)), texts=[f"t{i}" for i in range(200)], batch_size=5, concurrency=4)
    assert 2 <= flaky.max_in_flight <= 4


def test_key_is_sent_but_never_logged(serve, caplog):
    flaky = FlakyServer({TEXTS[0]: ["500"]}, key="very-secret-key")
    client = make_client(serve(flaky), api_key="very-secret-key")
    with caplog.at_level(logging.DEBUG):
        outcomes = run_all(client, texts=TEXTS[:4])
    assert outcomes[0].answers is not None
    assert "very-secret-key" not in caplog.text and "very-secret-key" not in repr(client)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_size": 21}, "batch_size must be between 1 and 20"),
    ({"batch_size": 0}, "batch_size must be between 1 and 20"),
    ({"concurrency": 0}, "concurrency must be >= 1"),
])
def test_bad_options_are_rejected(kwargs, match):
    client = make_client("http://127.0.0.1:9")
    with pytest.raises(ValueError, match=match):
        run_all(client, **kwargs)


def test_bad_url_is_rejected():
    with pytest.raises(PredictionAPIError, match="http"):
        PredictClient("localhost:8765", project_id=1)
