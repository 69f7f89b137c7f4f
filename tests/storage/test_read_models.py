"""The named read models return exactly what the legacy SQL-fragment calls they replace returned."""

from __future__ import annotations

import pytest

from hl_debug.signals.label_issues import ISSUES
from hl_debug.signals.queue import QUEUE
from hl_debug.signals.registry import evidence
from hl_debug.storage import CLUSTERS, Column, Evidence, Store, Table
from tests.webapp_fixtures import ENDPOINT, PLANTED_ERROR_ID, fill_synthetic


@pytest.fixture
def web(db_path, tiny_export_path) -> Store:
    store = fill_synthetic(Store(db_path), tiny_export_path)
    store.add_annotation(PLANTED_ERROR_ID, "relabel", "chat_settings", "bill_question")
    store.add_annotation(1000, "skip", None, "bill_question")
    return store


def test_inspector_rows_equal_the_legacy_join_in_the_order_asked(web):
    ids = [1018, 1000, 1023, 1005, 99999]
    assert web.inspector_rows(ids, evidence=evidence()) == web.web_dicts_in_order(ids)
    assert web.inspector_rows(sorted(ids), evidence=evidence()) == web.web_dicts(ids)
    assert [r["id"] for r in web.inspector_rows(ids, evidence=evidence())] == [1018, 1000, 1023, 1005]
    assert web.inspector_rows([], evidence=evidence()) == []
    row = web.inspector_rows([PLANTED_ERROR_ID], evidence=evidence())[0]
    assert row["label"] == "chat_settings" and row["decision"] == "relabel"


def test_inspector_rows_of_many_ids_page_under_the_parameter_limit(web):
    ids = [r["id"] for r in web.utterance_rows(["id"])] * 50
    assert len(web.inspector_rows(ids, columns=["id"])) == len(ids)


def test_inspector_columns_come_from_the_evidence(web):
    toy = Table("toy", (Column("id", int), Column("oddness", float)))
    web.replace_table(toy, [{"id": 1000, "oddness": 0.5}])
    ev = (Evidence(toy, {"toy_oddness": "oddness"}),)
    assert web.inspector_columns(ev)[-2:] == ("toy_oddness", "decision")
    rows = web.inspector_rows([1000, 1001], evidence=ev)
    assert [r["toy_oddness"] for r in rows] == [0.5, None] and "issue_score" not in rows[0]
    missing = (Evidence(Table("not_yet", (Column("id", int), Column("v", int))), {"v": "v"}),)
    assert web.inspector_rows([1000], evidence=missing)[0]["v"] is None


def test_map_columns_equal_the_legacy_columns_in_id_order(web):
    names = ["id", "x", "y", "text", "intent", "usage", "cluster_id", "predicted_label", "confidence",
             "entropy", "issue_score", "suggested_label", "flagged"]
    cols, rows = web.web_rows(columns=names)
    assert web.map_columns(names, evidence=evidence()) == {c: [r[k] for r in rows] for k, c in enumerate(cols)}
    with pytest.raises(ValueError, match="unknown column"):
        web.map_columns(["id", "u.text"])


def test_cluster_and_its_members(web):
    assert web.cluster(0)["cluster_id"] == 0 and web.cluster(12345) is None
    assert web.cluster_members(0, evidence=evidence()) == web.web_dicts(where="p.cluster_id = ?", params=[0])


def test_minority_rows_match_the_clusters_page_query(web):
    web.add_annotation(1001, "relabel", "card_issue", None)  # a second minority row
    web.add_annotation(PLANTED_ERROR_ID, "relabel", "bill_question", None)
    where = ("p.cluster_id >= 0 AND COALESCE(el.label, u.intent) != "
             "(SELECT c.majority_intent FROM clusters c WHERE c.cluster_id = p.cluster_id)")
    legacy = web.web_rows(columns=["id", "cluster_id"], where=where, order_by="p.cluster_id, i.score DESC, u.id")[1]
    minority, counts = web.minority_rows(1)
    expected: dict[int, int] = {}
    for _, c in legacy:
        expected[c] = expected.get(c, 0) + 1
    assert counts == expected and counts
    firsts = [next(uid for uid, c in legacy if c == cluster) for cluster in expected]
    assert [r["id"] for rows in minority.values() for r in rows] == firsts


def test_queue_progress_matches_the_legacy_counts(web):
    web.add_annotation(1019, "relabel", "card_issue", None)
    total = web.ranked_ids("queue", order_by="id", limit=0)[1]
    pending = web.ranked_ids("queue", order_by="id", pending_only=True, limit=0)[1]
    labelled = web.web_count(where="q.id IS NOT NULL AND COALESCE(el.label, u.intent) IS NOT NULL")
    assert web.queue_progress() == {"total": total, "pending": pending, "done": total - pending,
                                    "labelled": labelled}
    assert web.queue_progress(QUEUE) == web.queue_progress("queue")
    assert Store().queue_progress() == {"total": 0, "pending": 0, "done": 0, "labelled": 0}


@pytest.mark.parametrize("pending, flagged", [(False, False), (True, False), (False, True)])
def test_ranked_page_of_issues_equals_ranked_ids(web, pending, flagged):
    legacy = web.ranked_ids("issues", order_by="score DESC, id", pending_only=pending, flagged_only=flagged,
                            limit=5, offset=2)
    assert web.ranked_page(ISSUES, order="score", pending_only=pending, equals={"flagged": 1} if flagged else None,
                           limit=5, offset=2) == legacy
    assert web.ranked_page(QUEUE, order="rank", limit=50) == web.ranked_ids("queue", order_by="rank, id")


@pytest.mark.parametrize("order, legacy", [
    ("impurity", "impurity_rank IS NULL, impurity_rank, purity, cluster_id"),
    ("unannotated", "unannotated_rank IS NULL, unannotated_rank, unannotated_share DESC, cluster_id"),
    ("size", "size DESC, cluster_id"),
    ("cluster_id", "cluster_id"),
])
def test_cluster_orders_equal_the_pages_orders(web, order, legacy):
    assert web.table_rows(CLUSTERS, order=order) == web.rows("clusters", order_by=legacy)


def test_table_rows_sort_as_null_on_columns_the_stored_table_lacks(store):
    store.replace_rows("issues", [{"id": 2}, {"id": 1}])  # no score column
    assert [r["id"] for r in store.table_rows(ISSUES, order="score")] == [1, 2]
    assert store.ranked_page(ISSUES, order="score") == ([1, 2], 2)


def test_utterance_reads_by_named_columns(web):
    assert web.utterance_rows(["id", "text_hash"]) == web.utterances(columns="id, text_hash")
    assert web.utterance_rows(["id", "text"], order="position") == web.utterances(columns="id, text",
                                                                                 order_by="position, id")
    cols = web.utterance_columns(["id", "intent"])
    assert cols["id"] == [r["id"] for r in web.utterances(columns="id")] and len(cols["intent"]) == len(cols["id"])
    assert web.training_examples() == web.utterances(columns="text_hash, intent",
                                                     where="usage = 'training' AND intent IS NOT NULL")
    assert web.export_records() == web.utterances(columns="id, raw, intent", order_by="position, id")
    assert web.text_hashes_by_position() == [r["text_hash"] for r in web.utterances(columns="text_hash",
                                                                                      order_by="position, id")]
    assert web.utterances_hash(["id", "text_hash"]) == web.utterances_hash("id, text_hash")
    for bad in (["id; DROP TABLE x"], ["u.id"], []):
        with pytest.raises(ValueError, match="unknown utterance column"):
            web.utterance_rows(bad)
    with pytest.raises(ValueError, match="unknown order"):
        web.utterance_rows(["id"], order="text")


def test_prediction_columns(web):
    names = ["text_hash", "label", "confidence", "entropy"]
    assert web.prediction_columns(names) == web.column_lists("predictions", names, endpoint=ENDPOINT)
    by_id = web.prediction_columns(["id", "label", "confidence"], align="id")
    df = web.predictions_df()
    assert by_id["id"] == df["id"].tolist()
    assert [x if isinstance(x, str) else None for x in df["label"]] == by_id["label"]
    with pytest.raises(ValueError, match="unknown prediction column"):
        web.prediction_columns(["id"])  # id only with align="id"


def test_confusion_cell_ids_match_the_report(web):
    from hl_debug.domain import EVAL_SPLITS
    from webapp import model_report

    for given in web.intents():
        for predicted in web.intents():
            for split, usages in (("evaluation", EVAL_SPLITS), ("training", ("training",)), ("all", None)):
                assert web.confusion_cell_ids(given, predicted, usages=usages) == model_report.cell_ids(
                    web, given=given, predicted=predicted, split=split)


def test_effective_label_is_defined_once(web):
    labels = web.effective_labels()
    assert labels[PLANTED_ERROR_ID] == "chat_settings"  # relabelled
    assert labels[1000] == web.get_utterance(1000)["intent"]  # skip changes nothing
    assert all(web.effective_label(i) == lab for i, lab in labels.items())
    assert web.n_decided() == len(web.decided_labels()) == 1
    assert {r["id"]: r["label"] for r in web.inspector_rows(list(labels))} == labels


def test_search_and_neighbours(web):
    assert web.search_ids("CAFé CRèME") == [1023] and web.search_ids("%") == []
    nbrs = web.neighbors_of(1000)
    assert [n["rank"] for n in nbrs] == sorted(n["rank"] for n in nbrs) and nbrs


def test_every_view_write_bumps_the_data_version(tiny_store):
    from hl_debug.storage import POINTS

    s = tiny_store
    seen = [s.data_version()]
    states = [s.map_state()]

    def changed():
        seen.append(s.data_version())
        states.append(s.map_state())
        assert seen[-1] > seen[-2] and states[-1] != states[-2]

    h = s.utterance_rows(["text_hash"])[0]["text_hash"]
    s.save_predictions("ep", [{"text_hash": h, "label": "x"}]); changed()  # noqa: E702
    s.set_meta("active_endpoint", "ep"); changed()  # noqa: E702
    import numpy as np
    s.save_embeddings("enc", [h], np.zeros((1, 3))); changed()  # noqa: E702
    s.replace_table(POINTS, [{"id": 1000, "x": 0.0, "y": 0.0}]); changed()  # noqa: E702
    s.save_report("analysis", {"n": 1}); changed()  # noqa: E702
    s.add_annotation(1000, "skip", None, None); changed()  # noqa: E702
    assert s.data_version(reviews=False) == seen[-2]  # decisions are counted apart
    s.save_cache("web_map_payload", {"x": 1})
    assert s.data_version() == seen[-1] and s.map_state() == states[-1]
