"""The read models on what only the SQLite engine meets: its bound-parameter limit, tables a
file written by an older hl-debug holds, and a database file reopened. Everything an engine
must do whatever it is lives in the contract suite (``test_contract.py``)."""

from __future__ import annotations

import pytest

from hl_debug.signals.label_issues import ISSUES
from hl_debug.signals.registry import evidence
from hl_debug.storage import Column, Store, Table
from tests.webapp_fixtures import PLANTED_ERROR_ID, fill_synthetic

IDS = list(range(1000, 1024))


@pytest.fixture
def web(db_path, tiny_export_path) -> Store:
    store = fill_synthetic(Store(db_path), tiny_export_path)
    store.add_annotation(PLANTED_ERROR_ID, "relabel", "chat_settings", "bill_question")
    store.add_annotation(1000, "skip", None, "card_issue")
    return store


def test_inspector_rows_page_under_the_parameter_limit(web):
    ids = IDS[::-1] * 50  # 1,200 ids: past SQLite's 999 bound parameters in one IN (...)
    one_by_one = {i: web.inspector_rows([i], evidence=evidence())[0] for i in IDS}
    assert web.inspector_rows(ids, evidence=evidence()) == [one_by_one[i] for i in ids]
    assert one_by_one[PLANTED_ERROR_ID]["label"] == "chat_settings" and one_by_one[1000]["decision"] == "skip"


def test_a_table_an_older_version_wrote_reads_missing_columns_as_null(web):
    older_issues = Table("issues", (Column("id", int), Column("rank", int)))  # no score, no flagged yet
    web.replace_table(older_issues, [{"id": 1002, "rank": 2}, {"id": 1001, "rank": 1}])
    assert [r["id"] for r in web.table_rows(ISSUES, order="score")] == [1001, 1002]  # score NULL: by id
    assert web.ranked_page(ISSUES, order="score") == ([1001, 1002], 2)
    assert web.ranked_page(ISSUES, order="rank") == ([1001, 1002], 2)
    row = web.inspector_rows([1001], evidence=evidence())[0]
    assert row["issue_rank"] == 1 and row["issue_score"] is None and row["flagged"] is None
    web.add_annotation(1001, "relabel", "bill_question", "card_issue")
    web.add_annotation(1003, "relabel", "chat_settings", "card_issue")
    minority, counts = web.minority_rows(5, evidence=evidence())  # the score column is missing: by id
    assert counts == {0: 2} and [r["id"] for r in minority[0]] == [1001, 1003]


def test_read_models_survive_reopening_the_file(web, db_path):
    before = (web.map_columns(["id", "label", "cluster_id", "issue_score"], evidence=evidence()),
              web.inspector_rows(IDS, evidence=evidence()), web.queue_progress(), web.data_version(),
              web.map_state(), web.effective_labels())
    web.close()
    again = Store(db_path, create=False)
    after = (again.map_columns(["id", "label", "cluster_id", "issue_score"], evidence=evidence()),
             again.inspector_rows(IDS, evidence=evidence()), again.queue_progress(), again.data_version(),
             again.map_state(), again.effective_labels())
    assert after == before and after[5][PLANTED_ERROR_ID] == "chat_settings" and after[3] > 0
