"""The storage contract: what every engine behind :class:`hl_debug.storage.StoreProtocol`
must do. Only protocol methods are used (no SQL, no engine internals), so a second engine
passes by adding itself to ``tests/storage/conftest.py``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hl_debug.domain import EVAL_SPLITS
from hl_debug.errors import MissingStepError, NotFoundError
from hl_debug.signals.label_issues import ISSUES
from hl_debug.signals.queue import QUEUE
from hl_debug.signals.registry import evidence, get_signal
from hl_debug.storage import CLUSTERS, POINTS, Column, Evidence, StoreProtocol, Table
from hl_debug.storage.schema import UTTERANCES
from tests.webapp_fixtures import CLUSTER_OF, PLANTED_ERROR_ID

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
    with pytest.raises(TypeError, match="sequence of column names"):  # never a SELECT list
        tiny.utterances_hash("id, text_hash")  # type: ignore[arg-type]


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


def test_replace_table_replaces_every_row_of_derived_tables_only(tiny):
    tiny.replace_table(CLUSTERS, [{"cluster_id": 1, "size": 3}, {"cluster_id": 2, "size": 4}])
    assert [r["size"] for r in tiny.table_rows(CLUSTERS, order="cluster_id")] == [3, 4]
    tiny.replace_table(CLUSTERS, [{"cluster_id": 9, "size": 1}])
    assert tiny.table_rows(CLUSTERS) == [{**dict.fromkeys(CLUSTERS.column_names), "cluster_id": 9, "size": 1}]
    with pytest.raises(ValueError, match="core table"):
        tiny.replace_table(UTTERANCES, [])
    assert tiny.count_utterances() == 24
    assert tiny.table_rows(ISSUES) == [] and tiny.table_count(ISSUES) == 0  # the step has not run


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
    tiny.replace_table(POINTS, [{"id": tiny.utterance_columns(["id"])["id"][0], "x": 0.0, "y": 0.0}])
    bumped()
    tiny.save_report("analysis", {})
    bumped()
    tiny.add_annotation(tiny.utterance_columns(["id"])["id"][0], "skip", None, None)
    bumped()
    assert tiny.data_version(reviews=False) == versions[-2]
    tiny.save_cache("a_cache", {"x": 1})  # caches never invalidate themselves
    assert tiny.data_version() == versions[-1] and tiny.map_state() == states[-1]
    assert tiny.report("a_cache") == {"x": 1}


# -- read models over the synthetic store (tests/webapp_fixtures.fill_synthetic) ---------
# Every expected value below is a row fill_synthetic writes: ids 1000-1023 (position = id -
# 1000; 1019-1023 unannotated), clusters per CLUSTER_OF, issues for the annotated 1000-1018
# (1018 flagged, score 0.95), the queue 1019-1023 in rank order, predictions of every row but
# 1023 (1010 predicted card_issue, 1018 chat_settings); decisions: 1018 relabelled to
# chat_settings, 1000 skipped (the ``synthetic`` fixture).

IDS = list(range(1000, 1024))
UNANNOTATED = [1019, 1020, 1021, 1022, 1023]
INSPECTOR = ("id", "text", "intent", "label", "usage", "complete", "x", "y", "cluster_id", "outlier_score",
             "predicted_label", "confidence", "entropy", "margin", "issue_score", "suggested_label", "flagged",
             "issue_reason", "issue_rank", "oos_score", "oos_group", "queue_rank", "queue_reason", "decision")
#: Issue ids by score, highest first, ties by id.
ISSUES_BY_SCORE = [1018, 1000, 1007, 1014, 1006, 1013, 1005, 1012, 1004, 1011, 1003, 1010, 1017, 1002, 1009,
                   1016, 1001, 1008, 1015]
PREDICTED = (["card_issue"] * 6 + ["bill_question"] * 4 + ["card_issue", "bill_question"] + ["chat_settings"] * 7
             + ["card_issue", "bill_question", "chat_settings", "bill_question", None])


def test_inspector_rows_join_every_table_in_the_order_asked(synthetic):
    ev = evidence()
    assert synthetic.inspector_columns(ev) == INSPECTOR
    rows = synthetic.inspector_rows([1018, 1000, 1023, 1005, 99_999], evidence=ev)
    assert [r["id"] for r in rows] == [1018, 1000, 1023, 1005]  # asked order; the unknown id left out
    assert all(tuple(r) == INSPECTOR for r in rows)
    planted, skipped, unanswered, plain = rows
    assert (planted["intent"], planted["label"], planted["decision"]) == ("bill_question", "chat_settings", "relabel")
    assert (planted["cluster_id"], planted["predicted_label"], planted["usage"]) == (2, "chat_settings", "training")
    assert planted["confidence"] == pytest.approx(0.79)
    assert (planted["issue_score"], planted["flagged"], planted["suggested_label"], planted["issue_rank"]) == (
        0.95, 1, "chat_settings", 1)
    assert planted["queue_rank"] is None and planted["queue_reason"] is None
    point = synthetic.table_rows(POINTS, ids=[1018])[0]
    assert (planted["x"], planted["y"], planted["outlier_score"]) == (point["x"], point["y"], point["outlier_score"])
    assert (skipped["label"], skipped["decision"], skipped["issue_rank"], skipped["issue_score"]) == (
        "card_issue", "skip", 2, 0.35)  # skip changes no label
    assert (unanswered["label"], unanswered["cluster_id"], unanswered["complete"]) == (None, -1, 0)
    assert all(unanswered[c] is None for c in ("predicted_label", "confidence", "entropy", "margin",
                                                "issue_score", "flagged", "issue_rank", "decision"))
    assert (unanswered["queue_rank"], unanswered["queue_reason"]) == (5, "uncertain; few labels nearby")
    assert plain["decision"] is None and plain["label"] == plain["intent"] == "card_issue"
    # a subset of columns, still in the asked order; no evidence asked, none joined
    assert synthetic.inspector_rows([1005, 1000], columns=["label", "decision"]) == [
        {"label": "card_issue", "decision": None}, {"label": "card_issue", "decision": "skip"}]
    assert "issue_score" not in synthetic.inspector_rows([1000])[0]
    other = synthetic.inspector_rows([1018], endpoint="not-an-endpoint")[0]
    assert other["predicted_label"] is None and other["confidence"] is None
    assert synthetic.inspector_rows([]) == [] and synthetic.inspector_rows([99_999]) == []
    with pytest.raises(ValueError, match="unknown column"):
        synthetic.inspector_rows([1000], columns=["u.id"])


def test_inspector_rows_of_many_ids_keep_every_one_in_order(synthetic):
    ids = IDS[::-1] * 50  # 1,200 ids, duplicates included
    assert [r["id"] for r in synthetic.inspector_rows(ids, columns=["id"])] == ids
    labels = synthetic.inspector_rows(ids, columns=["label"], evidence=evidence())
    assert len(labels) == 1200 and labels[5] == {"label": "chat_settings"}  # 1018, relabelled


def test_inspector_columns_come_from_the_evidence(synthetic):
    toy = Table("toy", (Column("id", int), Column("oddness", float)))
    synthetic.replace_table(toy, [{"id": 1000, "oddness": 0.5}])
    ev = (Evidence(toy, {"toy_oddness": "oddness"}),)
    assert synthetic.inspector_columns(ev) == (*INSPECTOR[:14], "toy_oddness", "decision")
    rows = synthetic.inspector_rows([1000, 1001], evidence=ev)
    assert [r["toy_oddness"] for r in rows] == [0.5, None] and "issue_score" not in rows[0]
    missing = (Evidence(Table("not_yet", (Column("id", int), Column("v", int))), {"v": "v"}),)
    assert synthetic.inspector_rows([1000], evidence=missing)[0]["v"] is None  # step not run: NULL


def test_map_columns_are_whole_columns_in_id_order(synthetic):
    names = ["id", "x", "y", "text", "intent", "label", "usage", "cluster_id", "predicted_label", "confidence",
             "entropy", "issue_score", "suggested_label", "flagged", "queue_rank"]
    cols = synthetic.map_columns(names, evidence=evidence())
    assert list(cols) == names and cols["id"] == IDS and all(len(v) == 24 for v in cols.values())
    assert cols["cluster_id"] == [CLUSTER_OF[i] for i in IDS]
    points = synthetic.table_rows(POINTS, order="id")
    assert cols["x"] == [p["x"] for p in points] and cols["y"] == [p["y"] for p in points]
    assert cols["text"] == synthetic.utterance_columns(["text"])["text"]
    assert cols["predicted_label"] == PREDICTED
    preds = synthetic.prediction_columns(["confidence", "entropy"], align="id")
    assert cols["confidence"] == preds["confidence"] and cols["entropy"] == preds["entropy"]
    scores = {r["id"]: r["score"] for r in synthetic.table_rows(ISSUES)}
    assert cols["issue_score"] == [scores.get(i) for i in IDS] and cols["issue_score"][-5:] == [None] * 5
    assert [i for i, f in zip(IDS, cols["flagged"]) if f] == [PLANTED_ERROR_ID]
    assert cols["queue_rank"] == [None] * 19 + [1, 2, 3, 4, 5]
    assert (cols["intent"][18], cols["label"][18]) == ("bill_question", "chat_settings")  # original, effective
    assert cols["label"][-5:] == [None] * 5
    assert synthetic.map_columns(["id"], endpoint="nope") == {"id": IDS}
    assert synthetic.map_columns(["predicted_label"], endpoint="nope") == {"predicted_label": [None] * 24}
    with pytest.raises(ValueError, match="unknown column"):
        synthetic.map_columns(["id", "u.text"])


def test_cluster_and_its_members(synthetic):
    c0 = synthetic.cluster(0)
    assert (c0["cluster_id"], c0["size"], c0["n_annotated"], c0["majority_intent"]) == (0, 7, 6, "card_issue")
    assert synthetic.cluster(2)["impurity_rank"] == 1 and synthetic.cluster(12345) is None
    members = synthetic.cluster_members(0, evidence=evidence())
    assert [r["id"] for r in members] == [1000, 1001, 1002, 1003, 1004, 1005, 1019]
    assert {r["cluster_id"] for r in members} == {0} and tuple(members[0]) == INSPECTOR
    assert members == synthetic.inspector_rows([r["id"] for r in members], evidence=evidence())
    assert [r["id"] for r in synthetic.cluster_members(2)] == [1012, 1013, 1014, 1015, 1016, 1017, 1018, 1021]
    assert [r["id"] for r in synthetic.cluster_members(-1)] == [1023] and synthetic.cluster_members(7) == []


def test_minority_rows_follow_effective_labels_most_suspicious_first(synthetic):
    # the planted error (bill_question among chat_settings) is relabelled, so no cluster has one
    assert synthetic.minority_rows(5, evidence=evidence()) == ({}, {})
    synthetic.add_annotation(1001, "relabel", "bill_question", "card_issue")  # cluster 0, issue score 0.05
    synthetic.add_annotation(1002, "relabel", "chat_settings", "card_issue")  # cluster 0, issue score 0.1
    synthetic.add_annotation(1019, "accept", "chat_settings", None)  # cluster 0, unannotated: no issue row
    synthetic.add_annotation(1023, "relabel", "bill_question", None)  # noise is never a minority
    synthetic.add_annotation(1003, "skip", None, "card_issue")  # skip changes no label
    synthetic.add_annotation(PLANTED_ERROR_ID, "keep", "bill_question", "chat_settings")  # back to its intent
    minority, counts = synthetic.minority_rows(2, evidence=evidence())
    assert counts == {0: 3, 2: 1}
    assert {c: [r["id"] for r in rows] for c, rows in minority.items()} == {0: [1002, 1001], 2: [1018]}
    assert [r["label"] for r in minority[0]] == ["chat_settings", "bill_question"]
    assert tuple(minority[0][0]) == INSPECTOR and minority[2][0]["issue_score"] == 0.95
    everything, _ = synthetic.minority_rows(5, evidence=evidence())
    assert [r["id"] for r in everything[0]] == [1002, 1001, 1019]  # no score sorts last
    by_id, counts = synthetic.minority_rows(5)  # no evidence, no score: by id
    assert [r["id"] for r in by_id[0]] == [1001, 1002, 1019] and counts == {0: 3, 2: 1}
    by_queue, _ = synthetic.minority_rows(5, score=Evidence(QUEUE, {"s": "score"}))
    assert [r["id"] for r in by_queue[0]] == [1019, 1001, 1002]  # 1019 alone has a queue score


def test_queue_progress_counts_decisions_over_the_queue(synthetic):
    assert synthetic.queue_progress() == {"total": 5, "pending": 5, "done": 0, "labelled": 0}
    synthetic.add_annotation(1019, "relabel", "card_issue", None)
    synthetic.add_annotation(1020, "skip", None, None)  # done, but still unlabelled
    progress = {"total": 5, "pending": 3, "done": 2, "labelled": 1}
    assert synthetic.queue_progress() == synthetic.queue_progress(QUEUE) == synthetic.queue_progress("queue") == progress
    mixed = Table("mixed_queue", (Column("id", int), Column("rank", int)))
    synthetic.replace_table(mixed, [{"id": 1000, "rank": 1}, {"id": 1021, "rank": 2}])  # 1000 skipped, annotated
    assert synthetic.queue_progress(mixed) == {"total": 2, "pending": 1, "done": 1, "labelled": 1}
    assert synthetic.queue_progress("not_yet") == {"total": 0, "pending": 0, "done": 0, "labelled": 0}


@pytest.mark.parametrize("pending, flagged, page", [
    (False, False, (ISSUES_BY_SCORE[2:7], 19)),
    (True, False, ([1006, 1013, 1005, 1012, 1004], 17)),  # 1018 and 1000 have decisions
    (False, True, ([], 1)),  # one flagged row: page 2 of it is empty
])
def test_ranked_page_of_issues(synthetic, pending, flagged, page):
    equals = {"flagged": 1} if flagged else None
    assert synthetic.ranked_page(ISSUES, order="score", pending_only=pending, equals=equals, limit=5, offset=2) == page
    first = synthetic.ranked_page(ISSUES, order="score", pending_only=pending, equals=equals, limit=50)
    assert first[1] == page[1] and first[0][2:7] == page[0]


def test_ranked_pages_in_every_declared_order(synthetic):
    assert synthetic.ranked_page(ISSUES, order="score", limit=50) == (ISSUES_BY_SCORE, 19)
    assert synthetic.ranked_page(ISSUES, order="rank", limit=50) == (ISSUES_BY_SCORE, 19)
    assert synthetic.ranked_page(ISSUES, equals={"flagged": 1}) == ([PLANTED_ERROR_ID], 1)
    assert synthetic.ranked_page(QUEUE, order="rank") == (UNANNOTATED, 5)
    synthetic.add_annotation(1020, "skip", None, None)
    assert synthetic.ranked_page(QUEUE, order="rank", pending_only=True) == ([1019, 1021, 1022, 1023], 4)
    assert synthetic.ranked_page(QUEUE, order="rank", limit=2, offset=3) == ([1022, 1023], 5)


@pytest.mark.parametrize("order, ids", [
    ("impurity", [2, 0, 1]),  # only cluster 2 is impure: the unranked pure ones after it (NULLs last)
    ("unannotated", [1, 0, 2]),  # shares 0.25, 1/7, 0.125
    ("size", [1, 2, 0]),  # 8, 8 (tie by id), 7
    ("cluster_id", [0, 1, 2]),
    ("purity", [2, 0, 1]),
])
def test_cluster_orders(synthetic, order, ids):
    rows = synthetic.table_rows(CLUSTERS, order=order)
    assert [r["cluster_id"] for r in rows] == ids and set(rows[0]) == set(CLUSTERS.column_names)


def test_utterance_reads_by_named_columns_and_orders(engine, tmp_path):
    from hl_debug.steps.ingest import ingest
    from tests.storage.conftest import TINY_EXPORT

    records = json.loads(TINY_EXPORT.read_text(encoding="utf-8"))[::-1]  # the export lists 1023 first
    path = tmp_path / "reversed.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    ingest(engine, path)
    assert engine.utterance_rows(["id", "text_hash"])[0].keys() == {"id", "text_hash"}
    assert [r["id"] for r in engine.utterance_rows(["id"])] == IDS
    assert [r["id"] for r in engine.utterance_rows(["id", "position"], order="position")] == IDS[::-1]
    assert engine.utterance_columns(["id"], order="position") == {"id": IDS[::-1]}
    by_id = engine.utterance_columns(["id", "text_hash", "intent", "usage"])
    assert by_id["id"] == IDS and by_id["intent"][-5:] == [None] * 5
    assert engine.text_hashes_by_position() == by_id["text_hash"][::-1]
    records_out = engine.export_records()
    assert [r["id"] for r in records_out] == IDS[::-1] and set(records_out[0]) == {"id", "raw", "intent"}
    assert all(json.loads(r["raw"])["id"] == r["id"] for r in records_out)
    training = engine.training_examples(["id", "intent", "usage"])
    assert [r["id"] for r in training] == [1000, 1001, 1002, 1005, 1006, 1007, 1008, 1011, 1012, 1013, 1014,
                                           1017, 1018]
    assert {r["usage"] for r in training} == {"training"} and all(r["intent"] for r in training)
    assert engine.training_examples()[0].keys() == {"text_hash", "intent"}
    digest = engine.utterances_hash(["id", "text_hash"])
    assert len(digest) == 40 and digest == engine.utterances_hash(("id", "text_hash"))
    assert digest != engine.utterances_hash(["id", "intent"])
    for bad in (["id; DROP TABLE x"], ["u.id"], []):
        with pytest.raises(ValueError, match="unknown utterance column"):
            engine.utterance_rows(bad)
    with pytest.raises(ValueError, match="unknown order"):
        engine.utterance_rows(["id"], order="text")


def test_prediction_columns_by_hash_and_by_id(synthetic):
    by_id = synthetic.prediction_columns(["id", "label", "confidence"], align="id")
    assert by_id["id"] == IDS and by_id["label"] == PREDICTED
    assert by_id["confidence"][18] == pytest.approx(0.79) and by_id["confidence"][-1] is None
    hashes = synthetic.utterance_columns(["text_hash"])["text_hash"]
    cached = synthetic.prediction_columns(["text_hash", "label"])
    assert cached["text_hash"] == sorted(hashes)  # 1023's unanswered row is cached too
    assert dict(zip(cached["text_hash"], cached["label"])) == dict(zip(hashes, PREDICTED))
    assert synthetic.prediction_columns(["label"], endpoint="nope") == {"label": []}
    assert synthetic.prediction_columns(["label"], endpoint="nope", align="id") == {"label": [None] * 24}
    with pytest.raises(ValueError, match="unknown prediction column"):
        synthetic.prediction_columns(["id"])  # id only with align="id"
    with pytest.raises(ValueError, match="unknown align"):
        synthetic.prediction_columns(["label"], align="position")


def test_confusion_cells_are_the_rows_behind_the_stored_report(synthetic):
    (report,) = synthetic.report(get_signal("report").report_name)["endpoints"]
    usages = {"evaluation": EVAL_SPLITS, "testing": ["testing"], "validation": ["validation"],
              "training": ["training"], "all": None}
    assert set(report["splits"]) == set(usages)
    for split, body in report["splits"].items():
        labels, matrix = body["confusion"]["labels"], body["confusion"]["matrix"]
        for i, given in enumerate(labels):
            for j, predicted in enumerate(labels):
                cell = synthetic.confusion_cell_ids(given, predicted, usages=usages[split])
                assert len(cell) == matrix[i][j], (split, given, predicted)
        for pair in body["most_confused"]:
            for example in pair["examples"]:
                assert example["id"] in synthetic.confusion_cell_ids(
                    example["given"], example["predicted"], usages=usages[split])
    assert synthetic.confusion_cell_ids("bill_question", "card_issue") == [1010]
    assert synthetic.confusion_cell_ids("bill_question", "card_issue", usages=EVAL_SPLITS) == [1010]
    assert synthetic.confusion_cell_ids("bill_question", "chat_settings") == [1018]  # the original intent counts
    assert synthetic.confusion_cell_ids("bill_question", "chat_settings", usages=EVAL_SPLITS) == []
    assert synthetic.confusion_cell_ids("card_issue", "card_issue", usages=["testing"]) == [1004]
    assert synthetic.confusion_cell_ids("card_issue", "card_issue", usages=[]) == []
    assert synthetic.confusion_cell_ids("card_issue", "card_issue", endpoint="nope") == []


def test_effective_labels_after_decisions(synthetic):
    labels = synthetic.effective_labels()
    assert list(labels) == IDS and labels[PLANTED_ERROR_ID] == "chat_settings"  # relabelled
    assert labels[1000] == "card_issue"  # skipped: its intent
    assert [i for i, lab in labels.items() if lab is None] == UNANNOTATED
    intents = dict(zip(IDS, synthetic.utterance_columns(["intent"])["intent"]))
    assert {i: lab for i, lab in labels.items() if lab != intents[i]} == {PLANTED_ERROR_ID: "chat_settings"}
    assert all(synthetic.effective_label(i) == lab for i, lab in labels.items())
    assert synthetic.decided_labels() == {PLANTED_ERROR_ID: "chat_settings"}
    assert synthetic.latest_actions() == {PLANTED_ERROR_ID: "relabel", 1000: "skip"} and synthetic.n_decided() == 1
    assert {r["id"]: r["label"] for r in synthetic.inspector_rows(IDS)} == labels
    assert dict(zip(IDS, synthetic.map_columns(["label"])["label"])) == labels


def test_search_and_neighbours(synthetic):
    assert synthetic.search_ids("CAFé CRèME") == [1023] and synthetic.search_ids("<img") == [1022]
    assert synthetic.search_ids("bill") == [1006, 1007, 1008, 1009, 1010, 1020, 1022]
    assert synthetic.search_ids("BILL", limit=2) == [1006, 1007]
    assert synthetic.search_ids("%") == [] and synthetic.search_ids("_") == []  # literal, not LIKE patterns
    neighbours = synthetic.neighbors_of(1000)
    assert [(n["rank"], n["id"], n["similarity"]) for n in neighbours] == [
        (1, 1001, 0.85), (2, 1002, 0.8), (3, 1003, 0.75), (4, 1004, 0.7), (5, 1005, 0.65)]
    assert neighbours[0]["text"] == "i lost my debit card yesterday" and neighbours[0]["usage"] == "training"
    synthetic.add_annotation(1002, "relabel", "bill_question", "card_issue")
    relabelled = synthetic.neighbors_of(1000)[1]
    assert (relabelled["intent"], relabelled["label"]) == ("card_issue", "bill_question")
    assert synthetic.neighbors_of(99_999) == []


def test_decisions_carry_reviewer_and_batch(tiny):
    uid = next(iter(tiny.effective_labels()))
    one = tiny.add_annotation(uid, "relabel", "x", None, reviewer="ana")
    many = tiny.add_annotations([{"utterance_id": uid, "action": "relabel", "label": "y",
                                  "previous_label": "x", "batch": "merge-1"}])
    assert (one["reviewer"], one["batch"]) == ("ana", None) and many[0]["id"] > one["id"]
    assert [(a["label"], a["reviewer"], a["batch"]) for a in tiny.annotations(uid)] \
        == [("x", "ana", None), ("y", None, "merge-1")]


def test_review_outcomes_leave_taxonomy_batches_out(tiny):
    """A merge relabels many rows at once; those are label-set changes, not errors found,
    so the errors-remaining estimate must not count them (a reviewed row keeps its outcome)."""
    uids = list(tiny.effective_labels())[:3]
    tiny.add_annotation(uids[0], "relabel", "x", None)
    tiny.add_annotations([{"utterance_id": u, "action": "relabel", "label": "y", "previous_label": None,
                           "batch": "merge:1"} for u in uids])
    outcomes = tiny.review_outcomes()
    assert [(o["utterance_id"], o["label"]) for o in outcomes] == [(uids[0], "x")]


def test_search_with_a_nul_matches_the_whole_query_not_its_first_part(synthetic):
    # SQLite's LIKE stops reading its pattern at a NUL: "bill\x00zzz" must not match every "bill" row
    assert synthetic.search_ids("bill\x00zzz") == []
    assert synthetic.search_ids("\x00") == []
    assert synthetic.search_ids("BILL") == synthetic.search_ids("bill") != []


def test_intents_follow_every_write_and_a_rollback(tiny):
    before = tiny.intents()
    rows = tiny.utterance_rows()
    assert tiny.intents() == before  # memoised read, same answer
    with pytest.raises(RuntimeError), tiny.transaction():
        tiny.upsert_utterances([{**rows[0], "intent": "zz_new_intent", "row_hash": "changed"}])
        assert "zz_new_intent" in tiny.intents()  # seen inside the transaction
        raise RuntimeError("roll back")
    # the next write takes the data version back to the value the rolled-back one had
    tiny.upsert_utterances([{**rows[0], "intent": "zz_other", "row_hash": "changed again"}])
    assert "zz_other" in tiny.intents() and "zz_new_intent" not in tiny.intents()
    assert tiny.intents() == sorted({*before, "zz_other"} - ({rows[0]["intent"]} if sum(
        r["intent"] == rows[0]["intent"] for r in rows) == 1 else set()))


def test_whole_columns_write_and_read_back_like_rows(tiny):
    from hl_debug.storage import NEIGHBORS

    rows = [{"id": 7, "rank": 2, "neighbor_id": 9, "similarity": 0.5}, {"id": 7, "rank": 1, "neighbor_id": 8,
                                                                        "similarity": float("nan")},
            {"id": 3, "rank": 1, "neighbor_id": 7, "similarity": 0.25}]
    columns = {k: np.array([r[k] for r in rows]) for k in ("id", "rank", "neighbor_id", "similarity")}
    assert tiny.replace_table_columns(NEIGHBORS, columns, chunk=2) == 3
    by_columns = tiny.table_rows(NEIGHBORS, order="id")
    tiny.replace_table(NEIGHBORS, rows)
    assert tiny.table_rows(NEIGHBORS, order="id") == by_columns
    assert [r["id"] for r in by_columns] == [3, 7, 7] and by_columns[1]["similarity"] is None
    back = tiny.table_arrays(NEIGHBORS, ("id", "rank", "neighbor_id"), order="id", chunk=2)
    assert back["id"].tolist() == [3, 7, 7] and back["rank"].tolist() == [1, 1, 2]
    with pytest.raises(ValueError, match="undeclared column"):
        tiny.replace_table_columns(NEIGHBORS, {"nope": [1]})
    with pytest.raises(ValueError, match="different lengths"):
        tiny.replace_table_columns(NEIGHBORS, {"id": [1, 2], "rank": [1]})
    assert tiny.table_rows(NEIGHBORS, order="id") == by_columns  # refused writes changed nothing
