"""The answer-source protocol (hl_debug.sources): remote, local and recorded sources, and a toy one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hl_debug.domain import text_hash
from hl_debug.errors import PredictionsFileError
from hl_debug.models.intent_model import LocalIntentModel
from hl_debug.sources.base import AnswerSource, BatchOutcome, ClientStats, Query
from hl_debug.sources.local import LocalSource
from hl_debug.sources.recorded import read_recorded
from hl_debug.sources.remote import PredictClient, RemoteSource
from hl_debug.steps.predict import predict
from tests.test_predict import predictions_frame


class ToySource:
    """Answers every text with its first word, in batches of two; fails texts containing 'fail'."""

    identity = "toy:first-word"
    needs_vectors = False

    def __init__(self) -> None:
        self.stats = ClientStats()
        self.parameters = {"endpoint": self.identity, "source": "toy"}

    def answers(self, query):
        for index, start in enumerate(range(0, len(query.texts), 2)):
            batch = query.texts[start:start + 2]
            self.stats.requests += 1
            if any("fail" in t for t in batch):
                yield BatchOutcome(index, batch, error="toy failure")
            else:
                yield BatchOutcome(index, batch, answers=[[(t.split()[0], 1.0)] for t in batch])


def test_every_source_follows_the_protocol():
    model = LocalIntentModel(calibration=None).fit(np.eye(4, dtype=np.float32), list("aabb"))
    model.metadata_ = {"model_hash": "f" * 40}
    client = PredictClient("http://127.0.0.1:9", project_id=7, n_best=3)
    for source in (ToySource(), LocalSource(model, n_best=None), RemoteSource(client, n_best=3)):
        assert isinstance(source, AnswerSource), source
    assert LocalSource(model).identity == "local:ffffffffffff" and LocalSource(model, n_best=1).n_ask == 1
    assert RemoteSource(client, n_best=3).identity == "api:http://127.0.0.1:9/projects/7?n_best=3"
    assert "k" not in RemoteSource(client).parameters  # never the key


def test_the_step_saves_what_any_source_answers(tiny_store):
    source = ToySource()
    counts = predict(tiny_store, source=source, progress=False)
    assert counts["endpoint"] == "toy:first-word" and counts["n_predicted"] == 24 and counts["n_failed"] == 0
    assert counts["requests"] == 12 == source.stats.requests
    df = predictions_frame(tiny_store, "toy:first-word")
    assert (df["label"] == df["text"].str.split().str[0]).all()
    assert predict(tiny_store, source=ToySource(), progress=False)["skipped"]


def test_the_local_source_scores_the_vectors_it_is_given():
    X = np.eye(3, 4, dtype=np.float32)
    model = LocalIntentModel(calibration=None).fit(np.vstack([X, X]), list("abcabc"))
    model.metadata_ = {"model_hash": "0" * 40}
    source = LocalSource(model, chunk_size=2)
    outcomes = list(source.answers(Query(["x", "y", "z"], X)))
    assert [o.texts for o in outcomes] == [["x", "y"], ["z"]] and source.stats.requests == 2
    assert [a[0][0] for o in outcomes for a in o.answers] == ["a", "b", "c"]
    assert all(len(a) == 3 for o in outcomes for a in o.answers)  # n_best None: every intent
    with pytest.raises(ValueError, match="one vector per text"):
        list(source.answers(Query(["x"])))


def test_the_local_source_on_an_engine_gives_the_in_process_answers():
    from hl_debug.engines import LocalEngine

    class Reversed(LocalEngine):  # an engine that hands its batches back last first, as a cluster may
        name = "reversed"

        def predict_proba(self, model, X, *, batch_size=4096):
            return reversed(list(super().predict_proba(model, X, batch_size=batch_size)))

    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 4)).astype(np.float32)
    model = LocalIntentModel(calibration=None).fit(np.vstack([X, X]), list("abcabca") * 2)
    model.metadata_ = {"model_hash": "0" * 40}
    texts = [f"t{i}" for i in range(7)]
    plain = {t: a for o in LocalSource(model, n_best=2, chunk_size=3).answers(Query(texts, X))
             for t, a in zip(o.texts, o.answers)}
    source = LocalSource(model, n_best=2, chunk_size=3, engine=Reversed())
    outcomes = list(source.answers(Query(texts, X)))
    assert [o.texts for o in outcomes] == [["t6"], ["t3", "t4", "t5"], ["t0", "t1", "t2"]]
    assert {t: a for o in outcomes for t, a in zip(o.texts, o.answers)} == plain
    assert source.parameters["mode"] == "engine:reversed" and source.stats.requests == 3


def test_the_recorded_source_matches_by_text_or_position(tmp_path):
    items = [{"data": {"text": "hello there"}, "predictions": [{"value": [{"label": "greet", "confidence": 0.9}]}]},
             {"data": {"text": "not in the db"}, "predictions": [{"value": []}]}]
    path = tmp_path / "answers.v1.json"
    path.write_text(json.dumps(items))
    source = read_recorded(path, [text_hash("hello there"), text_hash("bye")])
    assert source.identity == "recorded:answers" and source.n_unmatched == 1 and source.n_items == 2
    assert isinstance(source, AnswerSource)
    (ok,) = source.answers(Query(["hello there"]))
    assert ok.answers == [[("greet", 0.9)]]
    (missing,) = source.answers(Query(["bye"]))
    assert missing.answers is None and "not in the recorded file" in missing.error
    positional = tmp_path / "p.json"
    positional.write_text(json.dumps([{"predictions": [{"value": []}]}] * 2))
    assert read_recorded(positional, ["h1", "h2"]).answers_by_hash == {"h1": [], "h2": []}
    with pytest.raises(PredictionsFileError, match="export order cannot be used"):
        read_recorded(positional, ["h1"])
