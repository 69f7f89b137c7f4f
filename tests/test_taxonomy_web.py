"""The /taxonomy page and its JSON routes on the tiny export with the real signal's output
(``tests/taxonomy_fixtures.py``): heatmap, cards linked to the map, preview / apply / revert,
typed errors, the same-origin checks, and ``export corrected`` carrying a merge and a split."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hl_debug.cli import cli
from hl_debug.storage import Store
from tests.taxonomy_fixtures import fill_taxonomy
from tests.webapp_fixtures import fill_synthetic
from webapp import create_app

KNOBS = {"min_group_size": 3, "split_threshold": 0.0}  # the tiny export's intents are small: show a split card


@pytest.fixture
def web_db(db_path, tiny_export_path):
    fill_taxonomy(fill_synthetic(Store(db_path), tiny_export_path), **KNOBS).close()
    return db_path


@pytest.fixture
def store(web_db):
    s = Store(web_db)
    yield s
    s.close()


@pytest.fixture
def client(web_db):
    return create_app({"DB": str(web_db), "TESTING": True}).test_client()


def post(client, path, body, **headers):
    headers.setdefault("Content-Type", "application/json")
    return client.post(path, data=json.dumps(body), headers=headers)


def test_page_shows_heatmap_cards_with_map_links_and_the_nav_link(client, store):
    html = client.get("/taxonomy").get_data(as_text=True)
    assert 'href="/taxonomy"' in html and 'class="active"' in html
    item = json.loads(html.split('id="taxonomy-heatmap">', 1)[1].split("</script>", 1)[0])
    assert item["target_id"] is None and item["doc"]["roots"]  # a Bokeh json_item
    assert "/bokehjs/bokeh.min.js" in html and "cdn.bokeh.org" not in html
    assert html.count('class="finding card merge"') == 1 and 'class="finding card split"' in html
    merge = html[html.index('class="finding card merge"'):]
    merge = merge[:merge.index('<li class="finding', 10) if '<li class="finding' in merge[10:] else merge.index("</ol>")]
    assert "bill_question" in merge and "card_issue" in merge
    assert "Near-identical utterances labelled differently" in merge
    assert '/?ids=1006' in merge  # each example row opens on the map / in the inspector
    assert 'data-fill="merge" data-from="bill_question" data-to="card_issue"' in merge
    assert "Suggested guideline" in merge and "mentions bill" in merge
    assert "No merges, renames or splits yet" in html and "from the last <code>hl-debug signals</code> run" not in html


def test_page_before_the_signal_ran_says_what_to_run(db_path, tiny_export_path):
    fill_synthetic(Store(db_path), tiny_export_path).close()
    html = create_app({"DB": str(db_path), "TESTING": True}).test_client().get("/taxonomy").get_data(as_text=True)
    assert "No taxonomy analysis yet" in html and "hl-debug signals" in html and 'id="overlap"' not in html


def test_cell_lists_the_rows_two_intents_exchange(client, store):
    r = client.get("/api/taxonomy/cell?a=card_issue&b=bill_question")
    assert r.status_code == 200
    body = r.json
    assert body["score"] > 0.2 and {1000, 1001, 1002} <= {row["id"] for row in body["rows"]}
    assert all(row["label"] in ("card_issue", "bill_question") for row in body["rows"])
    diag = client.get("/api/taxonomy/cell?a=chat_settings&b=chat_settings").json
    assert diag["n"] == store.label_counts()["chat_settings"] == 6 and {row["label"] for row in diag["rows"]} == {"chat_settings"}
    assert client.get("/api/taxonomy/cell?a=card_issue&b=nope").status_code == 404
    assert client.get("/api/taxonomy/cell?a=card_issue").status_code == 400


def test_preview_apply_revert_round_trip_and_export_corrected(client, store, web_db, tmp_path):
    before = store.label_counts()
    p = post(client, "/api/taxonomy/preview", {"kind": "merge", "a": "bill_question", "b": "card_issue"})
    assert p.status_code == 200 and p.json["n_rows"] == before["bill_question"]
    assert store.annotations() == []
    r = post(client, "/api/taxonomy/apply", {"kind": "merge", "a": "bill_question", "b": "card_issue",
                                             "expected_rows": p.json["n_rows"]})
    assert r.status_code == 201 and r.json["batch"].startswith("merge:")
    out = tmp_path / "corrected.json"
    res = CliRunner().invoke(cli, ["--db", str(web_db), "export", "corrected", "-o", str(out)], obj={})
    assert res.exit_code == 0, res.output
    intents = [json.loads(rec["data"])["intent"] for rec in json.loads(out.read_text())]
    assert "bill_question" not in intents and intents.count("card_issue") == before["card_issue"] + before["bill_question"]
    html = client.get("/taxonomy").get_data(as_text=True)
    assert f'data-revert="{r.json["batch"]}"' in html and "from the last <code>hl-debug signals</code> run" in html
    assert client.get("/api/taxonomy/changes").json["changes"][0]["batch"] == r.json["batch"]
    pv = post(client, "/api/taxonomy/revert", {"batch": r.json["batch"], "preview": True})
    assert pv.status_code == 200 and pv.json["n_rows"] == before["bill_question"] and len(store.annotations()) == p.json["n_rows"]
    rv = post(client, "/api/taxonomy/revert", {"batch": r.json["batch"]})
    assert rv.status_code == 201 and store.label_counts() == before
    assert post(client, "/api/taxonomy/revert", {"batch": r.json["batch"]}).status_code == 422


def test_split_a_cards_group_off_previewed_applied_exported_and_reverted(client, store, web_db, tmp_path):
    report = store.report("taxonomy")
    rec = next(s for s in report["split"] if len(s["groups"]) == 2)
    intent, group = rec["intent"], rec["groups"][1]
    html = client.get("/taxonomy").get_data(as_text=True)
    card = html[html.index(f'data-kind="split" data-a="{intent}"'):]
    card = card[:card.index('<li class="finding', 10) if '<li class="finding' in card[10:] else card.index("</ol>")]
    assert 'data-fill="split" data-group="1"' in card and 'data-fill="split" data-group="2"' in card
    before = store.label_counts()
    body = {"kind": "split", "a": intent, "group": 2, "label": f"{intent}_b"}
    p = post(client, "/api/taxonomy/preview", body)
    assert p.status_code == 200, p.json
    assert p.json["kind"] == "split" and p.json["n_rows"] == group["size"] and p.json["n_skipped"] == 0
    assert set(p.json["ids"]) == set(group["ids"]) and store.annotations() == []
    r = post(client, "/api/taxonomy/apply", {**body, "expected_rows": p.json["n_rows"]})
    assert r.status_code == 201 and r.json["batch"].startswith("split:")
    after = store.label_counts()
    assert after[f"{intent}_b"] == group["size"] and after[intent] == before[intent] - group["size"]
    out = tmp_path / "corrected.json"
    res = CliRunner().invoke(cli, ["--db", str(web_db), "export", "corrected", "-o", str(out)], obj={})
    assert res.exit_code == 0, res.output
    by_id = {int(rec["id"]): json.loads(rec["data"])["intent"] for rec in json.loads(out.read_text())}
    assert {by_id[i] for i in group["ids"]} == {f"{intent}_b"}
    assert post(client, "/api/taxonomy/revert", {"batch": r.json["batch"]}).status_code == 201
    assert store.label_counts() == before


def test_cli_splits_a_group_off_and_reverts_it(store, web_db):
    rec = next(s for s in store.report("taxonomy")["split"] if len(s["groups"]) == 2)
    intent, size = rec["intent"], rec["groups"][1]["size"]
    before = store.label_counts()
    run = lambda *args: CliRunner().invoke(cli, ["--db", str(web_db), "taxonomy", *args], obj={})  # noqa: E731
    r = run("split", intent, "the_new_one")
    assert r.exit_code == 0 and f"{size} row(s) would be labelled the_new_one (new intent)" in r.output, r.output
    assert store.annotations() == []
    r = run("split", intent, "the_new_one", "--group", "2", "--apply", "--format", "json")
    assert r.exit_code == 0, r.output
    batch = json.loads(r.output)["batch"]
    assert batch.startswith("split:") and store.label_counts()["the_new_one"] == size
    assert batch in run("changes").output
    r = run("split", intent, "other", "--group", "7")
    assert r.exit_code != 0 and "no split group 7" in r.output and "Traceback" not in r.output
    assert run("revert", batch, "--apply").exit_code == 0 and store.label_counts() == before


@pytest.mark.parametrize(("body", "status", "match"), [
    ({"kind": "split", "a": "SPLIT", "label": "x"}, 400, "field 'group'"),
    ({"kind": "split", "a": "SPLIT", "label": "x", "group": 0}, 422, "positive integer"),
    ({"kind": "split", "a": "SPLIT", "label": "x", "group": "2"}, 422, "positive integer"),
    ({"kind": "split", "a": "SPLIT", "label": "x", "group": 9}, 404, "no split group 9"),
    ({"kind": "split", "a": "nope", "label": "x", "group": 1}, 404, "no split group 1"),
    ({"kind": "merge", "a": "card_issue", "b": "bill_question", "group": 1}, 422, "split only"),
])
def test_bad_splits_are_typed_errors_and_store_nothing(client, store, body, status, match):
    intent = next(s["intent"] for s in store.report("taxonomy")["split"] if len(s["groups"]) == 2)
    body = {k: intent if v == "SPLIT" else v for k, v in body.items()}
    for route in ("/api/taxonomy/preview", "/api/taxonomy/apply"):
        r = post(client, route, body)
        assert r.status_code == status and match in r.json["error"], (route, r.json)
    assert store.annotations() == []


@pytest.mark.parametrize(("body", "status", "match"), [
    ({"kind": "merge", "a": "nope", "b": "card_issue"}, 422, "unknown intent"),
    ({"kind": "merge", "a": "card_issue", "b": "card_issue"}, 422, "same intent"),
    ({"kind": "rename", "a": "card_issue", "label": "Bill_Question"}, 422, "clashes"),
    ({"kind": "rename", "a": "card_issue", "label": ""}, 400, "label"),
    ({"kind": "merge", "a": "card_issue"}, 400, "field 'b'"),
    ({"kind": "merge", "a": "card_issue", "b": "bill_question", "oops": 1}, 400, "unknown field"),
    ({"kind": "merge", "a": "card_issue", "b": "bill_question", "allow_clash": "yes"}, 422, "true or false"),
    ({"kind": "merge", "a": "card_issue", "b": "bill_question", "expected_rows": "6"}, 422, "integer"),
])
def test_bad_actions_are_typed_errors_and_store_nothing(client, store, body, status, match):
    r = post(client, "/api/taxonomy/apply", body)
    assert r.status_code == status and match in r.json["error"]
    assert store.annotations() == []


def test_cross_site_and_non_json_posts_are_refused(client, store):
    body = {"kind": "merge", "a": "bill_question", "b": "card_issue"}
    assert post(client, "/api/taxonomy/apply", body, Origin="http://evil.example").status_code == 403
    r = client.post("/api/taxonomy/apply", data=json.dumps(body), headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    assert post(client, "/api/taxonomy/revert", {"batch": "merge:x"}, Origin="null").status_code == 403
    assert store.annotations() == []


def test_the_form_offers_current_labels_but_never_out_of_scope(client, store):
    from hl_debug.steps.review import record_decision

    record_decision(store, 1019, "out_of_scope")
    record_decision(store, 1020, "relabel", "voice_change", new_intent=True)
    html = client.get("/taxonomy").get_data(as_text=True)
    form = html[html.index('id="intent-a"'):html.index('id="intent-b"')]
    assert '<option value="voice_change">voice_change (1)</option>' in form
    assert 'value="out_of_scope"' not in form and '<option value="card_issue">card_issue (6)</option>' in form


def test_the_reviewer_of_team_mode_is_stored_with_the_batch(client, store, monkeypatch):
    from webapp import security

    monkeypatch.setattr(security, "reviewer", lambda: "ana", raising=False)
    r = post(client, "/api/taxonomy/apply", {"kind": "rename", "a": "chat_settings", "label": "assistant"})
    assert r.status_code == 201
    assert {d["reviewer"] for d in store.annotations()} == {"ana"}
    assert post(client, "/api/taxonomy/revert", {"batch": r.json["batch"]}).status_code == 201
    assert {d["reviewer"] for d in store.annotations()} == {"ana"}
