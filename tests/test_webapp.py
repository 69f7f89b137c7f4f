"""The web app through Flask's test client: every page, every API route, every API error,
the cross-site and content-type checks, escaping, and graceful pages before analysis."""

from __future__ import annotations

import gzip
import json

import pytest
from bokeh.models import BoxSelectTool, HoverTool, LassoSelectTool, TapTool

from hl_debug.mapdata import POINT_COLUMNS, decode_column
from hl_debug.storage import POINTS, Store
from tests.webapp_fixtures import ENDPOINT, PLANTED_ERROR_ID, XSS_ID, fill_synthetic, store_model_report
from webapp import create_app
from webapp.plots import MAP_SELECTION_JS, map_figure

XSS = "<img src=x onerror=alert(1)>"
PAGES = ("/", "/clusters", "/issues", "/queue", "/report", "/discover")


@pytest.fixture
def web_db(db_path, tiny_export_path):
    s = fill_synthetic(Store(db_path), tiny_export_path)
    s.close()
    return db_path


@pytest.fixture
def app(web_db):
    return create_app({"DB": str(web_db), "TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, body, **headers):
    headers.setdefault("Content-Type", "application/json")
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post("/api/annotations", data=data, headers=headers)


# -- pages ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_and_escapes_utterance_text(client, path):
    r = client.get(path)
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert XSS not in html  # never raw markup
    assert "cdn.bokeh.org" not in html and "https://" not in html  # no CDN, nothing remote
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert "<script>" not in html.replace(" ", "")  # no inline scripts (CSP forbids them)


def test_map_page_embeds_the_figure_and_not_the_points(client):
    html = client.get("/").get_data(as_text=True)
    assert 'id="map-item"' in html and '"name": "points"' in html
    assert "i want to rename you to jarvis" not in html  # point data comes from /api/points
    assert "/bokehjs/bokeh.min.js" in html and "/static/map.js" in html


def test_map_figure_paints_points_as_one_image_and_keeps_the_scatter_for_hits():
    p = map_figure()
    assert p.output_backend == "canvas"  # the points are one image (static/raster.js): no per-marker GL work
    source = p.select_one({"name": "points"})
    callbacks = source.selected.js_property_callbacks["change:indices"]
    assert callbacks[0].code == MAP_SELECTION_JS
    scatter, image = p.select_one({"name": "scatter"}), p.select_one({"name": "points_image"})
    assert scatter.glyph.fill_alpha == 0 and scatter.glyph.line_alpha == 0  # map.js switches its painting off
    assert image.data_source.name == "raster"
    # the ranges fit the points only (the image always covers the view: it must not widen them)
    assert p.x_range.renderers == [scatter] and p.y_range.renderers == [scatter]
    for tool in (LassoSelectTool, BoxSelectTool, TapTool, HoverTool):
        assert p.select_one(tool).renderers == [scatter]  # the image is never selected or hovered


def test_issues_page_lists_the_planted_error_first_with_evidence(client):
    html = client.get("/issues").get_data(as_text=True)
    first = html.index('data-id="')
    assert html[first:first + 20].startswith(f'data-id="{PLANTED_ERROR_ID}"')
    assert "neighbours and the model say chat_settings" in html and "knn_agreement" in html


def test_issues_page_flagged_only_and_estimated_precision(client):
    html = client.get("/issues?flagged=1").get_data(as_text=True)
    assert html.count('<li class="card"') == 1 and f'data-id="{PLANTED_ERROR_ID}"' in html
    assert "1 row flagged as likely errors (estimated precision 90%)" in html
    body = client.get("/api/issues?flagged=1").json
    assert body["total"] == 1 and body["issues"][0]["id"] == PLANTED_ERROR_ID


def test_issues_page_hides_decided_rows_when_pending(client):
    assert post(client, {"id": PLANTED_ERROR_ID, "action": "accept"}).status_code == 201
    assert f'data-id="{PLANTED_ERROR_ID}"' not in client.get("/issues").get_data(as_text=True)
    html = client.get("/issues?pending=0").get_data(as_text=True)
    assert f'data-id="{PLANTED_ERROR_ID}"' in html and "now <b class=\"effective\">chat_settings" in html


def test_queue_page_preselects_the_prediction_and_counts_progress(client):
    html = client.get("/queue").get_data(as_text=True)
    assert "0 of 5 reviewed" in html and 'data-suggested="card_issue"' in html
    post(client, {"id": 1019, "action": "relabel", "label": "card_issue"})
    html = client.get("/queue").get_data(as_text=True)
    assert "1 of 5 reviewed" in html and 'data-id="1019"' not in html


def test_clusters_page_ranks_by_impurity_and_lists_minority_rows(client):
    html = client.get("/clusters").get_data(as_text=True)
    assert html.index('id="cluster-2"') < html.index('id="cluster-0"')  # cluster 2 holds the planted error
    assert "1 minority-label row" in html and "i want to rename you to jarvis" in html
    assert "/?cluster=2&amp;select=all" in html
    assert "likely error" not in html  # no analysis report: nothing is marked


def test_clusters_page_marks_the_analyze_steps_likely_errors_first(app, client):
    from webapp.db import get_store

    with app.app_context():
        get_store().save_report("analysis", {"impure_clusters": [{"cluster_id": 2, "suspects": [
            {"id": PLANTED_ERROR_ID, "likely_error": True}, {"id": 1, "likely_error": False}]}]})
    html = client.get("/clusters").get_data(as_text=True)
    assert "1 minority-label row, <strong>1 likely error</strong>" in html
    row = html[html.index("i want to rename you to jarvis"):]
    assert row.index('class="flag"') < row.index("</tr>")  # the badge sits on the planted row


def test_report_page_shows_metrics_and_plots(client):
    r = client.get("/report")
    html = r.get_data(as_text=True)
    for name in ("confusion_matrix", "reliability", "entropy_by_split", "entropy_by_intent"):
        assert f'"name": "{name}"' in html
    assert 'id="per-intent"' in html and "Rows without a prediction (1)" in html
    # every split is summarised; the selected one (validation + testing by default) in detail
    assert 'id="split-summary"' in html and 'class="selected"' in html
    assert '<b id="accuracy">0.833</b>' in html and "<td>0.667</td>" in html  # evaluation; testing alone
    assert 'id="most-confused"' in html and "bill_question ↔ card_issue" in html
    assert "did my internet bill go through" in html  # the confused pair's example


def test_report_page_split_selector_scores_the_chosen_rows(client):
    html = client.get("/report?split=testing").get_data(as_text=True)
    assert "3 of 3 annotated rows answered" in html and '<b id="accuracy">0.667</b>' in html
    assert "bill_question ↔ card_issue" in html
    html = client.get("/report?split=validation").get_data(as_text=True)
    assert '<b id="accuracy">1.000</b>' in html and 'id="most-confused"' not in html
    html = client.get("/report?split=all").get_data(as_text=True)
    assert "19 of 19 annotated rows answered" in html


def test_report_page_and_confusion_cells_for_any_endpoint(web_db):
    s = Store(web_db)  # a second endpoint that answers card_issue for every row
    s.save_predictions("other:model", [{"text_hash": u["text_hash"], "label": "card_issue", "confidence": 0.9,
                                        "distribution": [["card_issue", 0.9]], "entropy": 0.3, "margin": 0.8}
                                       for u in s.utterance_rows(["text_hash"])])
    store_model_report(s)  # the signals step stores the report of every endpoint
    s.close()
    client = create_app({"DB": str(web_db), "TESTING": True}).test_client()
    html = client.get("/report?endpoint=other:model").get_data(as_text=True)
    assert "Rows without a prediction (0)" in html and "bill_question ↔ card_issue" in html
    body = client.get("/api/confusion?given=bill_question&predicted=card_issue&endpoint=other:model").json
    assert body["n"] == 2 and {r["predicted_label"] for r in body["rows"]} == {"card_issue"}


def test_report_page_unknown_endpoint_is_404(client):
    r = client.get("/report?endpoint=nope")
    assert r.status_code == 404 and "no predictions for endpoint" in r.get_data(as_text=True)


def test_report_page_unknown_split_is_400(client):
    r = client.get("/report?split=prod")
    assert r.status_code == 400 and "unknown split" in r.get_data(as_text=True)


def test_bad_page_number_is_400(client):
    assert client.get("/issues?page=x").status_code == 400


@pytest.mark.parametrize(("path", "step"), [("/", "analyze"), ("/clusters", "analyze"), ("/issues", "signals"),
                                            ("/queue", "signals"), ("/report", "predict"), ("/discover", "signals")])
def test_pages_before_analysis_say_what_to_run(db_path, tiny_export_path, path, step):
    fill_synthetic(Store(db_path), tiny_export_path, with_analysis=False).close()
    client = create_app({"DB": str(db_path), "TESTING": True}).test_client()
    r = client.get(path)
    assert r.status_code == 200
    assert f"hl-debug {step}" in r.get_data(as_text=True)


def test_missing_database_is_a_clear_error(tmp_path):
    client = create_app({"DB": str(tmp_path / "none.db"), "TESTING": True}).test_client()
    r = client.get("/")
    assert r.status_code == 409 and "hl-debug ingest" in r.get_data(as_text=True)
    r = client.get("/api/points")
    assert r.status_code == 409 and "hl-debug ingest" in r.json["hint"]
    assert not (tmp_path / "none.db").exists()


def test_bokehjs_is_served_from_the_installed_package(client):
    r = client.get("/bokehjs/bokeh.min.js")
    assert r.status_code == 200 and b"Bokeh" in r.data[:2000]
    r.close()
    assert client.get("/bokehjs/../secret").status_code == 404
    assert client.get("/bokehjs/bokeh-api.js").status_code == 404


def test_api_key_never_reaches_a_page(web_db, monkeypatch):
    monkeypatch.setenv("HL_API_KEY", "sekrit-key-123")
    client = create_app({"DB": str(web_db), "TESTING": True}).test_client()
    for path in (*PAGES, "/api/points", "/api/issues"):
        assert b"sekrit-key-123" not in client.get(path).data


# -- API: reads -----------------------------------------------------------------------


def points_columns(client) -> dict[str, list]:
    """``/api/points`` decoded back to plain lists (None for missing)."""
    return {name: decode_column(col) for name, col in client.get("/api/points").json["columns"].items()}


def test_api_points_are_column_arrays(client):
    body = client.get("/api/points").json
    assert body["n"] == 24 and body["has_map"] is True
    assert body["columns"]["x"]["dtype"] == "float32" and body["columns"]["label"]["dtype"] == "int8"
    cols = points_columns(client)
    assert set(cols) == set(POINT_COLUMNS) and all(len(v) == 24 for v in cols.values())
    k = cols["id"].index(XSS_ID)
    assert cols["label"][k] is None
    texts = client.get("/api/points/text").json  # the hover's texts, in the same row order
    assert texts["key"] == body["key"] and decode_column(texts["columns"]["text"])[k].startswith(XSS)  # raw, as data
    k = cols["id"].index(PLANTED_ERROR_ID)
    assert cols["predicted_label"][k] == "chat_settings" and cols["cluster_id"][k] == 2


def test_api_utterances_full_rows_and_missing(client):
    body = client.get(f"/api/utterances?ids={PLANTED_ERROR_ID},1019,424242").json
    assert [r["id"] for r in body["rows"]] == [PLANTED_ERROR_ID, 1019] and body["missing"] == [424242]
    row = body["rows"][0]
    assert row["suggested_label"] == "chat_settings" and row["issue_score"] == 0.95 and row["flagged"] == 1


@pytest.mark.parametrize(("query", "status", "message"), [
    ("", 400, "missing query parameter 'ids'"),
    ("?ids=", 400, "missing query parameter 'ids'"),
    ("?ids=1,abc", 400, "got 'abc'"),
    ("?ids=" + ",".join(["1"] * 1001), 400, "at most 1000"),
    ("?ids=424242", 404, "no utterance with id 424242"),
])
def test_api_utterances_errors(client, query, status, message):
    r = client.get("/api/utterances" + query)
    assert r.status_code == status and message in r.json["error"]


def test_api_one_utterance_with_history(client):
    post(client, {"id": 1000, "action": "keep"})
    body = client.get("/api/utterances/1000").json
    assert body["decision"] == "keep" and body["annotations"][0]["action"] == "keep"
    assert client.get("/api/utterances/424242").status_code == 404


def test_api_neighbors(client):
    body = client.get(f"/api/neighbors/{PLANTED_ERROR_ID}").json
    assert [n["rank"] for n in body["neighbors"]] == [1, 2, 3, 4, 5]
    assert {n["label"] for n in body["neighbors"]} == {"chat_settings"}
    r = client.get("/api/neighbors/424242")
    assert r.status_code == 404 and "no utterance with id 424242" in r.json["error"]


def test_api_search_is_literal_and_case_insensitive(client):
    assert client.get("/api/search?q=CARD").json["ids"] == [1000, 1001, 1002, 1003, 1004, 1005, 1019]
    assert client.get("/api/search?q=%25").json["ids"] == []  # % is not a wildcard
    assert client.get("/api/search?q=<img").json["ids"] == [XSS_ID]
    assert client.get("/api/search").status_code == 400
    assert client.get("/api/search?q=a&limit=0").status_code == 400
    assert client.get("/api/search?q=a&limit=x").status_code == 400


def test_api_clusters(client):
    body = client.get("/api/clusters").json
    assert [c["cluster_id"] for c in body["clusters"]][0] == 2
    assert body["clusters"][0]["label_counts"] == {"chat_settings": 6, "bill_question": 1}
    one = client.get("/api/clusters/2").json
    assert [r["id"] for r in one["minority"]] == [PLANTED_ERROR_ID] and len(one["ids"]) == 8
    assert client.get("/api/clusters/99").status_code == 404


def test_api_issues_and_pending(client):
    body = client.get("/api/issues?limit=3").json
    assert body["total"] == 19 and body["issues"][0]["id"] == PLANTED_ERROR_ID and len(body["issues"]) == 3
    post(client, {"id": PLANTED_ERROR_ID, "action": "accept"})
    pending = client.get("/api/issues?pending=1").json
    assert pending["total"] == 18 and PLANTED_ERROR_ID not in [r["id"] for r in pending["issues"]]
    assert client.get("/api/issues?limit=-1").status_code == 400


def test_api_queue_progress(client):
    body = client.get("/api/queue").json
    assert (body["total"], body["done"], body["labelled"]) == (5, 0, 0)
    post(client, {"id": 1019, "action": "relabel", "label": "card_issue"})
    post(client, {"id": 1020, "action": "skip"})
    body = client.get("/api/queue").json
    assert (body["done"], body["labelled"]) == (2, 1)


def test_api_labels(client):
    assert client.get("/api/labels").json["labels"] == ["bill_question", "card_issue", "chat_settings"]


def test_api_confusion_cell(client):
    body = client.get("/api/confusion?given=bill_question&predicted=card_issue").json
    assert body["n"] == 1 and body["rows"][0]["id"] == 1010
    assert client.get(f"/api/confusion?given=bill_question&predicted=card_issue&endpoint={ENDPOINT}&split=all").json["n"] == 1
    assert client.get("/api/confusion?given=bill_question").status_code == 400
    r = client.get("/api/confusion?given=a&predicted=b&split=prod")
    assert r.status_code == 400 and "unknown split 'prod'" in r.json["error"]


@pytest.mark.parametrize("path", ["/api/neighbors/1000", "/api/clusters", "/api/clusters/0", "/api/issues", "/api/queue"])
def test_api_before_analysis_is_409_naming_the_step(db_path, tiny_export_path, path):
    fill_synthetic(Store(db_path), tiny_export_path, with_analysis=False).close()
    client = create_app({"DB": str(db_path), "TESTING": True}).test_client()
    r = client.get(path)
    assert r.status_code == 409 and "first" in r.json["error"]


def test_api_points_before_analysis_has_no_map(db_path, tiny_export_path):
    fill_synthetic(Store(db_path), tiny_export_path, with_analysis=False).close()
    body = create_app({"DB": str(db_path), "TESTING": True}).test_client().get("/api/points").json
    assert body["has_map"] is False and body["n"] == 24


def test_api_unknown_route_is_json_404(client):
    r = client.get("/api/nope")
    assert r.status_code == 404 and r.is_json


# -- API: decisions -------------------------------------------------------------------


def test_post_annotation_then_views_show_the_effective_label(client):
    r = post(client, {"id": PLANTED_ERROR_ID, "action": "accept"})
    assert r.status_code == 201
    assert r.json["effective_label"] == "chat_settings" and r.json["previous_label"] == "bill_question"
    row = client.get(f"/api/utterances?ids={PLANTED_ERROR_ID}").json["rows"][0]
    assert (row["intent"], row["label"], row["decision"]) == ("bill_question", "chat_settings", "accept")
    cols = points_columns(client)
    k = cols["id"].index(PLANTED_ERROR_ID)
    assert (cols["label"][k], cols["intent"][k], cols["decision"][k]) == ("chat_settings", "bill_question", "accept")
    assert client.get("/api/annotations").json["annotations"][0]["utterance_id"] == PLANTED_ERROR_ID


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"action": "skip"}, 400, "missing field 'id'"),
    ({"id": 1000}, 400, "missing field 'action'"),
    ({"id": 1000, "action": "relabel"}, 400, "missing field 'label'"),
    ({"id": 1000, "action": "skip", "extra": 1}, 400, "unknown field(s) extra"),
    ([1, 2], 400, "must be a JSON object"),
    ("{not json", 400, "must be a JSON object"),
    ({"id": 424242, "action": "skip"}, 404, "no utterance with id 424242"),
    ({"id": 1000, "action": "relabel", "label": "nope"}, 422, "unknown label 'nope'"),
    ({"id": 1000, "action": "burn"}, 422, "unknown action 'burn'"),
    ({"id": "x1", "action": "skip"}, 422, "must be an integer"),
    ({"id": 1019, "action": "keep"}, 422, "no label to keep"),
])
def test_post_annotation_errors(client, body, status, message):
    r = post(client, body)
    assert r.status_code == status, r.json
    assert message in r.json["error"] and r.json["status"] == status
    assert client.get("/api/annotations").json["annotations"] == []


def test_post_requires_json_content_type(client):
    r = client.post("/api/annotations", data={"id": 1000, "action": "skip"})  # an HTML form post
    assert r.status_code == 415 and "application/json" in r.json["error"]
    r = post(client, json.dumps({"id": 1000, "action": "skip"}), **{"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert client.get("/api/annotations").json["annotations"] == []


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "http://localhost:9999"},  # same machine, another port: another site
    {"Origin": "null"},
    {"Referer": "https://evil.example/page"},
])
def test_cross_site_writes_are_refused(client, headers):
    r = post(client, {"id": 1000, "action": "skip"}, **headers)
    assert r.status_code == 403 and "cross-site" in r.json["error"]
    assert client.get("/api/annotations").json["annotations"] == []


@pytest.mark.parametrize("headers", [{"Origin": "http://localhost"}, {"Referer": "http://localhost/issues"}, {}])
def test_same_site_and_script_writes_are_allowed(client, headers):
    # the test client's host is "localhost"; scripts send neither header
    assert post(client, {"id": 1000, "action": "skip"}, **headers).status_code == 201


def test_get_is_not_blocked_by_origin(client):
    assert client.get("/api/labels", headers={"Origin": "https://evil.example"}).status_code == 200


def test_post_to_a_page_is_405(client):
    assert client.post("/", headers={"Content-Type": "application/json"}).status_code == 405


def test_clusters_page_sorts_by_unannotated_share_and_rejects_unknown_sort(client):
    html = client.get("/clusters?sort=unannotated").get_data(as_text=True)
    assert html.index('id="cluster-1"') < html.index('id="cluster-0"')  # 2 of 8 unannotated vs 1 of 7
    r = client.get("/clusters?sort=colour")
    assert r.status_code == 400 and "unknown sort &#39;colour&#39;" in r.get_data(as_text=True)


# -- transfer: gzip, ETag, 304 ------------------------------------------------------


def test_api_points_gzip_when_accepted(client):
    plain = client.get("/api/points")
    assert "Content-Encoding" not in plain.headers  # the client did not ask for gzip
    r = client.get("/api/points", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert r.headers["Content-Encoding"] == "gzip" and "Accept-Encoding" in r.headers["Vary"]
    assert gzip.decompress(r.data) == plain.data and len(r.data) < len(plain.data)


def test_large_json_responses_are_gzipped_small_ones_are_not(client):
    r = client.get("/api/issues?limit=50&pending=0", headers={"Accept-Encoding": "gzip"})
    assert r.headers["Content-Encoding"] == "gzip" and json.loads(gzip.decompress(r.data))["issues"]
    r = client.get("/api/labels", headers={"Accept-Encoding": "gzip"})
    assert "Content-Encoding" not in r.headers and r.json["labels"]
    r = client.get("/api/nope", headers={"Accept-Encoding": "gzip"})  # errors are never compressed
    assert r.status_code == 404 and "Content-Encoding" not in r.headers


def test_api_points_reload_is_304_until_a_decision(client):
    r = client.get("/api/points")
    etag = r.headers["ETag"]
    assert r.headers["Cache-Control"] == "no-cache" and etag.startswith('W/"')
    again = client.get("/api/points", headers={"If-None-Match": etag, "Accept-Encoding": "gzip"})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    assert post(client, {"id": PLANTED_ERROR_ID, "action": "accept"}).status_code == 201
    changed = client.get("/api/points", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag


def test_api_point_texts_gzip_and_304_until_the_pipeline_data_changes(client, web_db):
    r = client.get("/api/points/text")
    etag, plain = r.headers["ETag"], r.data
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-cache" and json.loads(plain)["n"] == 24
    zipped = client.get("/api/points/text", headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped.data) == plain
    assert client.get("/api/points/text", headers={"If-None-Match": etag}).status_code == 304
    assert post(client, {"id": PLANTED_ERROR_ID, "action": "accept"}).status_code == 201
    assert client.get("/api/points/text", headers={"If-None-Match": etag}).status_code == 304  # texts unchanged
    store = Store(web_db)
    try:
        store.replace_table(POINTS, [{**row, "x": 0.0} for row in store.table_rows(POINTS)])  # a new pipeline run
    finally:
        store.close()
    assert client.get("/api/points/text", headers={"If-None-Match": etag}).status_code == 200
