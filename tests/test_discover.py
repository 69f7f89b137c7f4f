"""Out of scope in the product: the /discover page, a group named as a new intent or marked
``out_of_scope`` in one decision, the validation of new intent names, the queue's grouped
rows without a pre-selected intent, the map's ``oos_score`` column, and the corrected export
carrying the new labels back into ``hl-debug ingest``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from hl_debug.cli import cli
from hl_debug.domain import ACTIONS, LABELLING_ACTIONS, OUT_OF_SCOPE
from hl_debug.errors import AnnotationError, MissingFieldError, NotFoundError
from hl_debug.mapdata import decode_column
from hl_debug.steps.review import corrected_records, record_decision, record_decisions
from hl_debug.storage import Store
from tests import oos_fixtures
from tests.oos_fixtures import GROUPS, NEW_GROUP, PHRASING_GROUP, fill_oos
from tests.webapp_fixtures import XSS_ID, fill_synthetic
from webapp import create_app

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def web_db(db_path, tiny_export_path):
    fill_oos(fill_synthetic(Store(db_path), tiny_export_path)).close()
    return db_path


@pytest.fixture
def store(web_db):
    s = Store(web_db)
    yield s
    s.close()


@pytest.fixture
def client(web_db):
    return create_app({"DB": str(web_db), "TESTING": True}).test_client()


def batch(client, body, **headers):
    headers.setdefault("Content-Type", "application/json")
    return client.post("/api/annotations/batch", data=json.dumps(body), headers=headers)


# -- the page ------------------------------------------------------------------------


def test_discover_lists_the_groups_with_their_evidence_and_the_share(client):
    r = client.get("/discover")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert html.index('id="group-1"') < html.index('id="group-2"')  # by rank
    assert "2 rows" in html and "café" in html and "crème" in html and "new intent" in html
    assert "missing phrasing of chat_settings" in html
    assert "<b>chat_settings</b> (0.31)" in html and "<b>bill_question</b> (0.22)" in html
    assert "make your voice deeper" in html  # an example
    assert "40.0%" in html and "12.0–77.0%" in html and "of the 5 unannotated" in html  # the share, its interval
    assert "5% false positives" in html and "score ≥ 0.62" in html
    assert "ids=1023,1022" in html and "color=oos_score" in html  # the group's map link
    assert 'data-ids="[1023, 1022]"' in html  # what the group's action labels
    assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html  # examples are text
    assert 'href="/discover"' in html and "Discover" in html  # in the nav


def test_discover_before_the_signal_ran_says_what_to_run(db_path, tiny_export_path):
    fill_synthetic(Store(db_path), tiny_export_path).close()
    html = create_app({"DB": str(db_path), "TESTING": True}).test_client().get("/discover").get_data(as_text=True)
    assert "No out-of-scope analysis yet" in html and "hl-debug signals" in html and 'id="groups"' not in html


def test_discover_without_the_signal_installed_is_a_friendly_page(db_path, tiny_export_path):
    fill_synthetic(Store(db_path), tiny_export_path).close()
    r = create_app({"DB": str(db_path), "TESTING": True}).test_client().get("/discover")
    assert r.status_code == 200 and "No out-of-scope analysis yet" in r.get_data(as_text=True)


def test_discover_with_no_groups_says_so(db_path, tiny_export_path):
    fill_oos(fill_synthetic(Store(db_path), tiny_export_path), with_groups=False).close()
    html = create_app({"DB": str(db_path), "TESTING": True}).test_client().get("/discover").get_data(as_text=True)
    assert "No candidate groups" in html and "40.0%" in html and 'id="group-1"' not in html


# -- one decision for a group ------------------------------------------------------------


def test_a_group_named_as_a_new_intent_labels_every_row_and_keeps_the_originals(client, store):
    ids = GROUPS[PHRASING_GROUP]  # 1021 unannotated, 1016 annotated chat_settings
    r = batch(client, {"ids": ids, "action": "relabel", "label": "voice_change", "new_intent": True})
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["n"] == 2 and body["effective_label"] == "voice_change"
    assert [store.effective_label(i) for i in ids] == ["voice_change", "voice_change"]
    assert store.get_utterance(1016)["intent"] == "chat_settings"  # the original is never overwritten
    assert [(a["utterance_id"], a["previous_label"]) for a in store.annotations()] == [(1021, None), (1016, "chat_settings")]
    assert "voice_change" in client.get("/api/labels").get_json()["labels"]
    assert '<option value="voice_change"' in client.get("/issues").get_data(as_text=True)  # offered for fixes too
    # from now on it is an ordinary label: no new_intent needed, and creating it again is refused
    assert client.post("/api/annotations", json={"id": 1019, "action": "relabel", "label": "voice_change"}).status_code == 201
    again = batch(client, {"ids": [1020], "action": "relabel", "label": "voice_change", "new_intent": True})
    assert again.status_code == 422 and "already exists" in again.get_json()["error"]


def test_only_the_selected_rows_are_labelled(client, store):
    assert batch(client, {"ids": [1023], "action": "relabel", "label": "coffee", "new_intent": True}).status_code == 201
    assert store.effective_label(1023) == "coffee" and store.effective_label(XSS_ID) is None


def test_a_group_marked_out_of_scope(client, store):
    r = batch(client, {"ids": GROUPS[NEW_GROUP], "action": "out_of_scope"})
    assert r.status_code == 201 and r.get_json()["effective_label"] == OUT_OF_SCOPE
    assert {store.effective_label(i) for i in GROUPS[NEW_GROUP]} == {OUT_OF_SCOPE}
    assert OUT_OF_SCOPE in store.created_labels()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"ids": [1023], "action": "relabel", "label": "", "new_intent": True}, 400, "missing field 'label'"),
        ({"ids": [1023], "action": "relabel", "label": "   ", "new_intent": True}, 400, "missing field 'label'"),
        ({"ids": [1023], "action": "relabel", "label": "x" * 101, "new_intent": True}, 422,
         "field 'label': a new intent's name has at most 100 characters, this one has 101"),
        ({"ids": [1023], "action": "relabel", "label": "Card_Issue", "new_intent": True}, 422,
         "clashes with the existing intent 'card_issue'"),
        ({"ids": [1023], "action": "relabel", "label": "card_issue", "new_intent": True}, 422,
         "intent 'card_issue' already exists"),
        ({"ids": [1023], "action": "relabel", "label": "Out_Of_Scope", "new_intent": True}, 422,
         "'out_of_scope' is reserved; use action 'out_of_scope'"),
        ({"ids": [1023], "action": "relabel", "label": "a\nb", "new_intent": True}, 422, "one line of printable"),
        ({"ids": [1023], "action": "relabel", "label": "coffee"}, 422,
         "unknown label 'coffee'; valid: bill_question, card_issue, chat_settings (or send new_intent=true"),
        ({"ids": [1023], "action": "relabel", "label": "coffee", "new_intent": "yes"}, 422,
         "field 'new_intent' must be true or false"),
        ({"ids": [1023], "action": "out_of_scope", "label": "coffee", "new_intent": True}, 422,
         "field 'new_intent' only applies to action 'relabel'"),
        ({"ids": [1023], "action": "out_of_scope", "label": "coffee"}, 422, "leave out field 'label'"),
        ({"ids": [1023], "action": "relabel", "label": OUT_OF_SCOPE}, 422, "is set by action 'out_of_scope'"),
        ({"ids": [], "action": "out_of_scope"}, 400, "missing field 'ids'"),
        ({"ids": 1023, "action": "out_of_scope"}, 422, "field 'ids' must be a list"),
        ({"ids": [1023, "x"], "action": "out_of_scope"}, 422, "field 'id' must be an integer"),
        ({"ids": [1023, 999999], "action": "out_of_scope"}, 404, "no utterance with id 999999"),
        ({"ids": [1023], "action": "out_of_scope", "extra": 1}, 400, "unknown field(s) extra"),
    ],
)
def test_batch_errors_name_the_field_and_store_nothing(client, store, body, status, message):
    r = batch(client, body)
    assert r.status_code == status and message in r.get_json()["error"], r.get_json()
    assert store.annotations() == []  # all or nothing: 1023 is not stored when 999999 is refused


def test_a_clash_the_user_means_is_allowed(client, store):
    r = batch(client, {"ids": [1023], "action": "relabel", "label": " Card_Issue ", "new_intent": True,
                       "allow_clash": True})
    assert r.status_code == 201 and store.effective_label(1023) == "Card_Issue"  # blanks trimmed


def test_writes_are_protected_like_every_decision(client, store):
    body = {"ids": [1023], "action": "out_of_scope"}
    assert batch(client, body, Origin="http://evil.example").status_code == 403
    r = client.post("/api/annotations/batch", data=json.dumps(body), headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and store.annotations() == []


def test_the_out_of_scope_action_is_a_labelling_action(store):
    assert "out_of_scope" in ACTIONS and "out_of_scope" in LABELLING_ACTIONS
    row = record_decision(store, 1019, "out_of_scope")
    assert row["label"] == row["effective_label"] == OUT_OF_SCOPE and store.n_decided() == 1
    record_decision(store, 1019, "skip")  # a later skip changes nothing
    assert store.effective_label(1019) == OUT_OF_SCOPE
    record_decision(store, 1019, "relabel", "card_issue")  # the latest labelling decision wins
    assert store.effective_label(1019) == "card_issue"
    with pytest.raises(NotFoundError):
        record_decisions(store, [1019, 424242], "out_of_scope")
    with pytest.raises(MissingFieldError):
        record_decision(store, 1019, "relabel", None, new_intent=True)
    with pytest.raises(AnnotationError, match="at most 3 utterances"):
        record_decisions(store, [1019, 1020, 1021, 1023], "skip", limit=3)


# -- the export round trip ------------------------------------------------------------------


def test_export_corrected_carries_new_intents_and_out_of_scope_and_ingests_back(store, web_db, tmp_path):
    record_decisions(store, GROUPS[PHRASING_GROUP], "relabel", "voice_change", new_intent=True)
    record_decisions(store, GROUPS[NEW_GROUP], "out_of_scope")
    out = tmp_path / "corrected.json"
    runner = CliRunner()
    r = runner.invoke(cli, ["--db", str(web_db), "export", "corrected", "-o", str(out)], obj={})
    assert r.exit_code == 0, r.output
    records = {x["id"]: x for x in json.loads(out.read_text(encoding="utf-8"))}
    assert json.loads(records[1021]["data"])["intent"] == "voice_change" and records[1021]["complete"] is True
    assert json.loads(records[1016]["data"])["intent"] == "voice_change"
    assert json.loads(records[1023]["data"])["intent"] == OUT_OF_SCOPE and records[1023]["usage"] == "training"
    assert records == {x["id"]: x for x in corrected_records(store)}
    fresh = tmp_path / "fresh.db"
    r = runner.invoke(cli, ["--db", str(fresh), "ingest", str(out)], obj={})
    assert r.exit_code == 0, r.output
    again = Store(fresh)
    try:
        assert {"voice_change", OUT_OF_SCOPE} <= set(again.intents())
        assert again.get_utterance(1021)["intent"] == "voice_change" and again.get_utterance(1023)["intent"] == OUT_OF_SCOPE
        assert again.stats()["n_unannotated"] == 2  # 1019, 1020 still open
    finally:
        again.close()


# -- the queue, the map and the inspector ------------------------------------------------------


def test_queue_lists_candidates_under_their_group_without_a_preselected_intent(client):
    html = client.get("/queue").get_data(as_text=True)
    assert 'id="queue-group-1"' in html and 'id="queue-group-2"' in html
    assert "Possibly out of scope · group 1: café, crème, naïve" in html and "/discover#group-1" in html
    for uid in (1021, 1022, 1023):
        card = html[html.index(f'data-id="{uid}"'):]
        card = card[:card.index("</li>")]
        assert 'data-suggested=""' in card and '<option value="" selected>' in card
        assert "selected>" not in card.replace('<option value="" selected>', "")  # no intent pre-selected
    assert html.index(f'data-id="{XSS_ID}"') > html.index('id="queue-group-1"')
    first = html[html.index('data-id="1019"'):]
    assert '<option value="card_issue" selected>' in first[:first.index("</li>")]  # in-scope rows keep theirs
    assert html.index('data-id="1019"') < html.index('id="queue-group-1"')


def test_map_payload_and_colour_by_carry_the_out_of_scope_score(client):
    cols = {k: decode_column(c) for k, c in client.get("/api/points").get_json()["columns"].items()}
    score = dict(zip(cols["id"], cols["oos_score"]))
    assert score[1023] == pytest.approx(0.9, abs=1e-3) and score[1000] == pytest.approx(0.05 + 1 / 30, abs=1e-3)
    html = client.get("/").get_data(as_text=True)
    assert '<option value="oos_score">out-of-scope score</option>' in html and "<th title=\"out-of-scope score\">oos</th>" in html


def test_inspector_rows_carry_the_out_of_scope_evidence(client):
    rows = {r["id"]: r for r in client.get("/api/utterances?ids=1016,1000").get_json()["rows"]}
    assert rows[1016]["oos_group"] == PHRASING_GROUP and rows[1016]["oos_score"] == pytest.approx(0.87)
    assert rows[1000]["oos_group"] is None


def test_a_batch_is_stored_in_one_transaction(store):
    rows = [{"utterance_id": 1019, "action": "out_of_scope", "label": OUT_OF_SCOPE, "previous_label": None},
            {"utterance_id": 424242, "action": "out_of_scope", "label": OUT_OF_SCOPE, "previous_label": None}]
    version = store.data_version()
    with pytest.raises(Exception, match="FOREIGN KEY"):  # the second row fails after the first was inserted
        store.add_annotations(rows)
    assert store.annotations() == [] and store.data_version() == version
    stored = store.add_annotations(rows[:1])
    assert [r["utterance_id"] for r in stored] == [1019] and stored[0]["id"] and store.effective_label(1019) == OUT_OF_SCOPE


def test_queue_never_preselects_for_a_candidate_even_without_the_queue_knowing(store, client):
    """Before the queue carries ``oos_group_id`` (and with its predictions still set), the page
    groups candidates by the out-of-scope evidence; a candidate in no group is not pre-selected
    either."""
    from hl_debug.signals.registry import get_signal
    from hl_debug.storage.schema import Table
    from webapp.discover import optional_table

    q = get_signal("queue").table
    plain = Table(q.name, tuple(c for c in q.columns if c.name != "oos_group_id"), q.pk, q.orders)
    store.replace_table(plain, [{k: v for k, v in r.items() if k != "oos_group_id"} | {"predicted_label": "card_issue"}
                                for r in store.table_rows(q)])
    scores = optional_table("oos")
    store.replace_table(scores, [r | {"is_candidate": 1} if r["id"] == 1019 else r for r in store.table_rows(scores)])
    html = client.get("/queue").get_data(as_text=True)
    assert html.index('data-id="1021"') > html.index('id="queue-group-2"')
    for uid in (1019, 1021, 1023):
        card = html[html.index(f'data-id="{uid}"'):]
        assert '<option value="" selected>' in card[:card.index("</li>")], uid
    card = html[html.index('data-id="1020"'):]
    assert '<option value="bill_question" selected>' in card[:card.index("</li>")]  # not a candidate: the model's label


def test_queue_follows_a_queue_row_without_a_predicted_label(store, client):
    """The queue's own rule (a row that fits no intent gets no predicted_label) is honoured
    without any out-of-scope result."""
    q = oos_fixtures.QUEUE
    store.replace_table(q, [r | {"predicted_label": None, "oos_group_id": None} if r["id"] == 1020 else r
                            for r in store.table_rows(q)])
    html = client.get("/queue").get_data(as_text=True)
    card = html[html.index('data-id="1020"'):]
    assert '<option value="" selected>' in card[:card.index("</li>")] and 'data-suggested=""' in card[:200]
    card = html[html.index('data-id="1019"'):]
    assert '<option value="card_issue" selected>' in card[:card.index("</li>")]


def test_queue_badges_only_the_candidates(client):
    html = client.get("/queue").get_data(as_text=True)
    badge = html[html.index('data-id="1023"'):]
    assert "out of scope 0.90</span>" in badge[:badge.index("</li>")]
    card = html[html.index('data-id="1019"'):]
    assert 'class="oos"' not in card[:card.index("</li>")]  # a low score is no finding


def test_one_row_can_name_a_new_intent_through_the_single_decision_route(client, store):
    r = client.post("/api/annotations", json={"id": 1020, "action": "relabel", "label": "cable_tv", "new_intent": True})
    assert r.status_code == 201 and r.get_json()["effective_label"] == "cable_tv"
    r = client.post("/api/annotations", json={"id": 1019, "action": "out_of_scope"})
    assert r.status_code == 201 and store.effective_label(1019) == OUT_OF_SCOPE
    assert store.review_labels() == ["bill_question", "cable_tv", "card_issue", "chat_settings", OUT_OF_SCOPE]
