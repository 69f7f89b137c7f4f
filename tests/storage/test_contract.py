"""The storage contract: what every engine behind :class:`hl_debug.storage.StoreProtocol`
must do. Only protocol methods are used (no SQL, no engine internals), so a second engine
passes by adding itself to ``tests/storage/conftest.py``."""

from __future__ import annotations

import numpy as np
import pytest

from hl_debug.errors import MissingStepError, NotFoundError
from hl_debug.storage import CLUSTERS, POINTS, Column, Evidence, StoreProtocol, Table

TOY = Table("toy", (Column("id", int), Column("score", float), Column("kind", str)),
            orders={"score": (("score", True),), "kind": (("kind", False), ("score", True))})


def _hashes(store) -> list[str]:
    return [r["text_hash"] for r in store.utterance_rows(["text_hash"])]


def test_engine_implements_the_protocol(engine):
    assert isinstance(engine, StoreProtocol)
    assert engine.schema_version >= 1 and engine.data_version() == 0


def test_core_tables_have_the_declared_columns(engine):
    from hl_debug.storage.schema import CORE_TABLES

    for table in CORE_TABLES:
        assert engine.table_columns(table.name) == list(table.column_names), table.name


def test_stats(tiny):
    s = tiny.stats()
    assert s["n_utterances"] == 24 and s["n_annotated"] == 19 and s["n_unannotated"] == 5
    assert s["by_usage"] == {"testing": 3, "training": 13, "validation": 3, "none": 5}
    assert s["by_intent"] == {"bill_question": 7, "card_issue": 6, "chat_settings": 6}
    assert tiny.count_utterances() == 24 and tiny.intents() == ["bill_question", "card_issue", "chat_settings"]


def test_missing_steps_name_the_step(engine):
    with pytest.raises(MissingStepError) as exc:
        engine.require_utterances()
    assert "ingest" in exc.value.hint
    with pytest.raises(MissingStepError, match="points"):
        engine.require_table(POINTS, "analyze")


def test_run_records_success_and_failure(engine):
    with engine.run("demo", parameters={"k": 3}, inputs_hash="abc") as counts:
        counts["n"] = 5
    last = engine.last_run("demo")
    assert last["counts"] == {"n": 5} and last["parameters"] == {"k": 3} and last["status"] == "ok"
    assert "numpy" not in last["versions"] and "python" in last["versions"]
    assert engine.is_up_to_date("demo", "abc") and not engine.is_up_to_date("demo", "xyz")
    with pytest.raises(RuntimeError):
        with engine.run("demo", inputs_hash="xyz"):
            raise RuntimeError("boom")
    failed = engine.last_run("demo", status=None)
    assert failed["status"] == "failed" and "boom" in failed["error"]
    assert engine.last_run("demo")["inputs_hash"] == "abc"
    assert [r["status"] for r in engine.runs()] == ["failed", "ok"]


def test_transaction_rolls_back(engine):
    with pytest.raises(ValueError):
        with engine.transaction():
            engine.save_report("x", {})
            raise ValueError
    assert engine.report("x") is None and engine.data_version() == 0


def test_reports_round_trip_numpy_values(engine):
    engine.save_report("model", {"accuracy": np.float32(0.5), "n": np.int64(3), "v": np.arange(2)})
    assert engine.report("model") == {"accuracy": 0.5, "n": 3, "v": [0, 1]}
    assert engine.report("nope") is None


def test_utterance_reads(tiny):
    rows = tiny.utterance_rows(["id", "text", "intent"])
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows) and set(rows[0]) == {"id", "text", "intent"}
    cols = tiny.utterance_columns(["id", "usage"])
    assert cols["id"] == [r["id"] for r in rows] and len(cols["usage"]) == 24
    assert tiny.get_utterance(rows[0]["id"])["text"] == rows[0]["text"]
    with pytest.raises(NotFoundError):
        tiny.get_utterance(999_999)
    assert [r["id"] for r in tiny.get_utterances([rows[2]["id"], rows[1]["id"]])] == [rows[1]["id"], rows[2]["id"]]
    training = tiny.training_examples(["text_hash", "intent"])
    assert len(training) == 13 and all(r["intent"] for r in training)
    records = tiny.export_records()
    assert len(records) == 24 and set(records[0]) == {"id", "raw", "intent"}
    assert len(tiny.text_hashes_by_position()) == 24
    assert tiny.texts_by_hash() == {h: t for h, t in zip(_hashes(tiny), [r["text"] for r in rows])}
    assert tiny.utterances_hash(["id", "text_hash"]) != tiny.utterances_hash(["id", "intent"])
    with pytest.raises(ValueError, match="unknown utterance column"):
        tiny.utterance_rows(["text; DROP TABLE utterances"])


def test_embeddings_round_trip_and_missing(tiny):
    hashes = _hashes(tiny)
    vecs = np.random.default_rng(0).normal(size=(len(hashes), 4)).astype(np.float32)
    with pytest.raises(MissingStepError):
        tiny.load_embeddings("enc")
    tiny.save_embeddings("enc", hashes, vecs)
    ids, X = tiny.load_embeddings("enc")
    assert ids.tolist() == tiny.utterance_columns(["id"])["id"]
    np.testing.assert_array_equal(X, vecs)
    assert tiny.embedded_hashes("enc") == set(hashes) and tiny.embedded_hashes("other") == set()
    assert tiny.encoders() == [{"encoder": "enc", "n": len(hashes), "dim": 4}]


def test_predictions_cache_and_columns(tiny):
    hashes = _hashes(tiny)
    tiny.save_predictions("ep", [
        {"text_hash": hashes[0], "label": "card_issue", "confidence": 0.9,
         "distribution": [["card_issue", 0.9]], "entropy": 0.3, "margin": 0.8},
        {"text_hash": hashes[1], "label": None},
    ])
    tiny.set_meta("active_endpoint", "ep")
    assert tiny.active_endpoint() == "ep"
    assert tiny.cached_prediction_hashes("ep") == {hashes[0], hashes[1]}
    by_id = tiny.prediction_columns(["id", "label", "confidence"], align="id")
    assert len(by_id["id"]) == 24 and by_id["label"][0] == "card_issue" and by_id["confidence"][0] == 0.9
    assert sum(lab is not None for lab in by_id["label"]) == 1
    cached = tiny.prediction_columns(["text_hash", "label"])
    assert cached["text_hash"] == sorted(hashes[:2])
    (ep,) = tiny.endpoints()
    assert ep["endpoint"] == "ep" and ep["n"] == 2 and ep["n_without_prediction"] == 1


def test_derived_tables_from_declarations(tiny):
    ids = tiny.utterance_columns(["id"])["id"]
    assert tiny.table_rows(TOY) == [] and tiny.table_count(TOY) == 0 and tiny.ranked_page(TOY) == ([], 0)
    rows = [{"id": ids[0], "score": 0.2, "kind": "b"}, {"id": ids[1], "score": None, "kind": "a"},
            {"id": ids[2], "score": 0.9, "kind": "b"}]
    assert tiny.replace_table(TOY, rows) == 3
    assert [r["id"] for r in tiny.table_rows(TOY, order="score")] == [ids[2], ids[0], ids[1]]  # NULLs last
    assert [r["id"] for r in tiny.table_rows(TOY, order="kind")] == [ids[1], ids[2], ids[0]]
    assert tiny.table_rows(TOY, equals={"kind": "a"}) == [{"id": ids[1], "score": None, "kind": "a"}]
    assert [r["id"] for r in tiny.table_rows(TOY, ids=[ids[0], ids[2]], order="score")] == [ids[2], ids[0]]
    assert tiny.table_count(TOY, equals={"kind": "b"}) == 2
    assert tiny.ranked_page(TOY, order="score", limit=1, offset=1) == ([ids[0]], 3)
    tiny.add_annotation(ids[2], "keep", None, None)
    assert tiny.ranked_page(TOY, order="score", pending_only=True) == ([ids[0], ids[1]], 2)
    with pytest.raises(ValueError, match="undeclared column"):
        tiny.replace_table(TOY, [{"id": 1, "extra": 2}])
    with pytest.raises(ValueError, match="unknown order"):
        tiny.table_rows(TOY, order="nope")
    with pytest.raises(ValueError, match="unknown column"):
        tiny.table_rows(TOY, equals={"nope": 1})
    assert tiny.table_count(TOY) == 3  # the failed replace wrote nothing
    tiny.replace_table(TOY, [])
    assert tiny.table_exists("toy") and tiny.table_count(TOY) == 0


def test_effective_label_and_append_only_reviews(tiny):
    uid = tiny.utterance_columns(["id"])["id"][0]
    original = tiny.get_utterance(uid)["intent"]
    assert tiny.effective_label(uid) == original and tiny.decided_labels() == {}
    tiny.add_annotation(uid, "relabel", "card_issue", original)
    tiny.add_annotation(uid, "skip", None, "card_issue")
    assert tiny.effective_label(uid) == "card_issue"  # skip changes nothing
    assert tiny.latest_actions() == {uid: "skip"} and tiny.decided_labels() == {uid: "card_issue"}
    assert tiny.n_decided() == 1 and tiny.effective_labels()[uid] == "card_issue"
    tiny.add_annotation(uid, "keep", original, "card_issue")
    assert tiny.effective_label(uid) == original
    history = tiny.annotations(uid)
    assert [a["action"] for a in history] == ["relabel", "skip", "keep"]
    assert history[0]["original_label"] == original and tiny.annotations() == history
    with pytest.raises(NotFoundError):
        tiny.effective_label(999_999)


def test_inspector_rows_work_after_ingest_only(tiny):
    ids = tiny.utterance_columns(["id"])["id"]
    rows = tiny.inspector_rows([ids[3], ids[0], 999_999])
    assert [r["id"] for r in rows] == [ids[3], ids[0]]
    assert rows[0]["x"] is None and rows[0]["predicted_label"] is None and rows[0]["decision"] is None
    assert tuple(rows[0]) == tiny.inspector_columns()
    cols = tiny.map_columns(["id", "label", "cluster_id"])
    assert cols["id"] == ids and cols["cluster_id"] == [None] * 24
    assert tiny.cluster(0) is None and tiny.cluster_members(0) == [] and tiny.minority_rows(3) == ({}, {})
    assert tiny.queue_progress() == {"total": 0, "pending": 0, "done": 0, "labelled": 0}
    assert tiny.neighbors_of(ids[0]) == [] and tiny.confusion_cell_ids("a", "b") == []


def test_inspector_rows_join_points_predictions_evidence_and_decisions(tiny):
    ids = tiny.utterance_columns(["id"])["id"]
    tiny.replace_table(POINTS, [{"id": i, "x": float(k), "y": 0.0, "cluster_id": k % 2} for k, i in enumerate(ids)])
    tiny.replace_table(CLUSTERS, [{"cluster_id": 0, "size": 12, "majority_intent": "card_issue"},
                                  {"cluster_id": 1, "size": 12, "majority_intent": "bill_question"}])
    tiny.replace_table(TOY, [{"id": ids[0], "score": 0.5}, {"id": ids[2], "score": 0.7}])
    tiny.save_predictions("ep", [{"text_hash": h, "label": "card_issue", "confidence": 0.6} for h in _hashes(tiny)])
    tiny.set_meta("active_endpoint", "ep")
    tiny.add_annotation(ids[0], "relabel", "chat_settings", None)
    ev = [Evidence(TOY, {"toy_score": "score"})]
    row = tiny.inspector_rows([ids[0]], evidence=ev)[0]
    assert (row["x"], row["cluster_id"], row["predicted_label"], row["toy_score"]) == (0.0, 0, "card_issue", 0.5)
    assert row["label"] == "chat_settings" and row["decision"] == "relabel"
    assert [r["id"] for r in tiny.cluster_members(1, evidence=ev)] == ids[1::2]
    assert tiny.cluster(1)["majority_intent"] == "bill_question"
    minority, counts = tiny.minority_rows(1, evidence=ev, score=Evidence(TOY, {"s": "score"}))
    labels = tiny.effective_labels()
    expected = {c: sum(1 for k, i in enumerate(ids) if k % 2 == c and labels[i] is not None
                       and labels[i] != ("card_issue", "bill_question")[c]) for c in (0, 1)}
    assert counts == {c: n for c, n in expected.items() if n}
    toy = {ids[0]: 0.5, ids[2]: 0.7}
    in_0 = [i for k, i in enumerate(ids) if k % 2 == 0 and labels[i] is not None and labels[i] != "card_issue"]
    first = min(in_0, key=lambda i: (i not in toy, -toy.get(i, 0), i))  # highest score first, NULLs last
    assert [r["id"] for r in minority[0]] == [first]
    assert tiny.confusion_cell_ids("card_issue", "card_issue", usages=["training"]) == [
        r["id"] for r in tiny.utterance_rows(["id", "intent", "usage"])
        if r["intent"] == "card_issue" and r["usage"] == "training"]


def test_search_is_literal_and_case_insensitive(tiny):
    rows = tiny.utterance_rows(["id", "text"])
    word = rows[0]["text"].split()[0]
    assert rows[0]["id"] in tiny.search_ids(word.upper())
    assert tiny.search_ids("%") == [r["id"] for r in rows if "%" in r["text"]]
    assert len(tiny.search_ids("", limit=3)) == 3


def test_data_version_grows_with_every_view_write_and_keys_map_state(tiny):
    versions, states = [tiny.data_version()], [tiny.map_state()]

    def bumped() -> None:
        versions.append(tiny.data_version())
        states.append(tiny.map_state())
        assert versions[-1] > versions[-2] and states[-1] != states[-2]

    h = _hashes(tiny)[0]
    tiny.save_predictions("ep", [{"text_hash": h, "label": "x"}])
    bumped()
    tiny.set_meta("active_endpoint", "ep")
    bumped()
    tiny.save_embeddings("enc", [h], np.zeros((1, 3)))
    bumped()
    tiny.replace_table(TOY, [])
    bumped()
    tiny.save_report("analysis", {})
    bumped()
    tiny.add_annotation(tiny.utterance_columns(["id"])["id"][0], "skip", None, None)
    bumped()
    assert tiny.data_version(reviews=False) == versions[-2]
    tiny.save_cache("a_cache", {"x": 1})  # caches never invalidate themselves
    assert tiny.data_version() == versions[-1] and tiny.map_state() == states[-1]
    assert tiny.report("a_cache") == {"x": 1}
