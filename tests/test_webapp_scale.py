"""What keeps the web app's pages small at 100k utterances: /clusters lists the first few
minority-label rows of each cluster with the full count (the map's inspector lists all)."""

from __future__ import annotations

import re

import pytest

from hl_debug.signals.registry import get_signal
from hl_debug.storage import Store
from tests.webapp_fixtures import PLANTED_ERROR_ID, fill_synthetic
from webapp import create_app


@pytest.fixture
def web_db(db_path, tiny_export_path):
    s = fill_synthetic(Store(db_path), tiny_export_path)
    s.add_annotation(1013, "relabel", "card_issue", "chat_settings")  # a second minority row in cluster 2
    s.close()
    return db_path


def minority_ids(html: str, cluster: int) -> list[int]:
    block = html.split(f'id="cluster-{cluster}"')[1].split('<tr id="cluster-')[0]
    return [int(i) for i in re.findall(r'<tr><td><a href="/\?ids=(\d+)"', block)]


def test_clusters_page_lists_the_most_suspicious_minority_rows_with_the_full_count(web_db):
    s = Store(web_db)
    scores = {r["id"]: r["score"] for r in s.table_rows(get_signal("issues").table)}
    s.close()
    top = max((1013, PLANTED_ERROR_ID), key=lambda i: (scores[i], -i))
    html = create_app({"DB": str(web_db), "TESTING": True, "MINORITY_ROWS": 1}).test_client() \
        .get("/clusters").get_data(as_text=True)
    assert "2 minority-label rows, the 1 most suspicious listed" in html
    assert minority_ids(html, 2) == [top]
    assert html.split('id="cluster-2"')[1].count("/?cluster=2&amp;select=all") == 2  # row link + "for all"


def test_clusters_page_lists_every_minority_row_under_the_limit(web_db):
    html = create_app({"DB": str(web_db), "TESTING": True}).test_client().get("/clusters").get_data(as_text=True)
    assert "2 minority-label rows</summary>" in html
    assert sorted(minority_ids(html, 2)) == [1013, PLANTED_ERROR_ID]
