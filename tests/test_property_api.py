"""Every JSON API route answers hostile parameters with 2xx or a 4xx JSON error, never a 500
(issue 15): integers beyond SQLite's range in a path, query or body, non-ASCII digits, lone
surrogates, deep nesting, arbitrary JSON bodies.

The property tests walk the app's ``url_map``, so a route added later (taxonomy, compare, ...)
is covered without an edit here; what each parameter may hold is the explicit list of
parameter kinds below (path converters, query parameters, body fields).
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hl_debug.signals.registry import all_signals
from hl_debug.storage import Store
from tests.property_profiles import examples
from tests.webapp_fixtures import fill_synthetic
from webapp import create_app

BIG = 10**20  # beyond SQLite's INTEGER (2**63 - 1)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from tests.conftest import TINY_EXPORT

    db = tmp_path_factory.mktemp("api") / "hl.db"
    store = fill_synthetic(Store(db), TINY_EXPORT)
    store.close()
    return create_app({"DB": str(db), "TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


def _assert_handled(r, what: str) -> None:
    assert r.status_code < 500, f"{what}: HTTP {r.status_code}: {r.get_data(as_text=True)[:300]}"
    if r.status_code >= 400:
        body = r.get_json(silent=True)
        assert isinstance(body, dict) and body.get("error"), f"{what}: {r.status_code} without a JSON error"


# -- the failures the issue lists, one by one ----------------------------------------------------


@pytest.mark.parametrize("url, status, names", [
    (f"/api/utterances/{BIG}", 400, "utterance_id"),
    (f"/api/neighbors/{BIG}", 400, "utterance_id"),
    (f"/api/clusters/{BIG}", 400, "cluster_id"),
    ("/api/utterances/" + "9" * 5000, 404, ""),  # werkzeug's converter refuses it: no such URL
    (f"/api/utterances?ids={BIG}", 400, "ids"),
    ("/api/utterances?ids=1000,\u00b2", 400, "ids"),  # a superscript two: str.isdigit() says yes, int() no
    ("/api/signals/issues?limit=\u00b2", 400, "limit"),
    ("/api/signals/issues?offset=" + "9" * 5000, 400, "offset"),
])
def test_out_of_range_and_odd_digits_in_path_and_query(client, url, status, names):
    r = client.get(url)
    _assert_handled(r, url)
    assert r.status_code == status and names in r.get_json()["error"], r.get_json()


@pytest.mark.parametrize("body, names", [
    ({"id": BIG, "action": "keep"}, "'id'"),
    ({"id": str(BIG), "action": "keep"}, "'id'"),
    ({"id": "\u00b2", "action": "keep"}, "'id'"),
    ({"id": -(BIG), "action": "keep"}, "'id'"),
])
def test_out_of_range_ids_in_a_body(client, body, names):
    r = client.post("/api/annotations", json=body)
    _assert_handled(r, json.dumps(body))
    assert r.status_code in (400, 404, 422) and names in r.get_json()["error"], r.get_json()
    r = client.post("/api/annotations/batch", json={**{k: v for k, v in body.items() if k != "id"}, "ids": [body["id"]]})
    _assert_handled(r, "batch")


def test_a_body_nested_100000_deep(client):
    r = client.post("/api/annotations", data="[" * 100_000 + "]" * 100_000, content_type="application/json")
    _assert_handled(r, "deep body")
    assert r.status_code == 400 and "nested" in r.get_json()["error"]


def test_negative_ids_cannot_exist(client):
    """Ingest refuses negative ids (see test_ingest), so the API has no negative id to reach:
    asking for one is a 404/400 naming it, never a 500."""
    for url in ("/api/utterances/-5", "/api/utterances?ids=-5"):
        _assert_handled(client.get(url), url)


# -- the properties ---------------------------------------------------------------------------------

# any unicode, lone surrogates included
TEXT = st.text(st.characters(exclude_categories=()), max_size=30)
EDGE_INTS = [0, -1, 1018, 2**53, 2**63 - 1, 2**63, BIG, -(2**63) - 1]
INTS = st.sampled_from(EDGE_INTS) | st.integers()
JSON = st.recursive(st.none() | st.booleans() | INTS | st.floats(allow_nan=False) | TEXT,
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
                    max_leaves=12)
INT_TEXT = INTS.map(str) | st.sampled_from(["", " 1", "1.5", "\u00b2", "\u0665", "1_000", "-0", "0" * 30 + "1",
                                            "9" * 5000])
IDS_TEXT = st.lists(INT_TEXT, min_size=1, max_size=5).map(",".join) | TEXT

#: What each query parameter of the API may be sent (known values mixed with hostile ones).
QUERY_KINDS = {
    "ids": IDS_TEXT, "limit": INT_TEXT, "offset": INT_TEXT, "page": INT_TEXT, "per_page": INT_TEXT,
    "q": TEXT, "given": st.sampled_from(["card_issue", "bill_question"]) | TEXT,
    "predicted": st.sampled_from(["card_issue", "chat_settings"]) | TEXT,
    "split": st.sampled_from(["evaluation", "testing", "all"]) | TEXT, "endpoint": TEXT,
    "order": st.sampled_from(["score", "rank", "id"]) | TEXT, "a": TEXT, "b": TEXT, "intent": TEXT,
    **{name: st.sampled_from(["0", "1"]) | TEXT
       for name in {"pending", "flagged", *(f.name for cls in all_signals() for f in cls.flags)}},
}
#: What each field of a JSON body may hold.
BODY_KINDS = {
    "id": INTS | INT_TEXT | JSON, "ids": st.lists(INTS | INT_TEXT, max_size=5) | JSON,
    "action": st.sampled_from(["relabel", "accept", "keep", "skip", "out_of_scope"]) | TEXT,
    "label": st.sampled_from(["card_issue", "bill_question", "new one"]) | TEXT | JSON,
    "new_intent": st.booleans() | JSON, "allow_clash": st.booleans() | JSON,
    "intents": st.lists(TEXT, max_size=3) | JSON, "name": TEXT | JSON, "into": TEXT | JSON,
    "batch": TEXT | JSON, "rows": JSON,
}
#: Values of the path converters (anything else: text without a slash).
PATH_KINDS = {"int": INTS.map(str) | INT_TEXT.filter(lambda s: s.isdigit()),
              "default": st.sampled_from([cls.name for cls in all_signals()]) | TEXT.filter(lambda s: "/" not in s),
              "path": TEXT}


def _api_rules() -> list[tuple[str, str]]:
    app = create_app({"DB": "unused.db", "TESTING": True})
    return sorted((rule.rule, method) for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/")
                  for method in sorted(rule.methods - {"HEAD", "OPTIONS"}))


ARG = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def _bytes_quote(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def requests_for(draw, rule: str, method: str):
    path = ARG.sub(lambda m: _bytes_quote(draw(PATH_KINDS.get(m.group(1) or "default", PATH_KINDS["default"]))), rule)
    # every parameter kind, each present half the time: a route ignores those it does not read
    names = [n for n in sorted(QUERY_KINDS) if draw(st.booleans())]
    query = "&".join(f"{n}={_bytes_quote(draw(QUERY_KINDS[n]))}" for n in names)
    body = None
    if method != "GET":
        obj = {f: draw(BODY_KINDS[f]) for f in sorted(BODY_KINDS) if draw(st.booleans())}
        body = draw(st.sampled_from([json.dumps(obj), json.dumps(draw(JSON)), "{not json", "[" * 5000, ""])
                    | st.just(json.dumps(obj)))
    return path + (f"?{query}" if query else ""), body


@pytest.mark.parametrize("rule, method", _api_rules())
def test_every_api_route_answers_hostile_parameters_without_a_500(client, rule, method):
    @examples(20)
    @given(requests_for(rule, method))
    def check(request):
        url, body = request
        r = client.open(url, method=method, data=body, content_type="application/json")
        _assert_handled(r, f"{method} {url} {body!r:.200}")

    check()


def test_a_decision_on_a_read_only_database_is_a_503_saying_so(tmp_path, monkeypatch):
    import hl_debug.storage.connection as connection
    from tests.conftest import TINY_EXPORT

    db = tmp_path / "hl.db"
    fill_synthetic(Store(db), TINY_EXPORT).close()
    monkeypatch.setattr(connection, "_writable", lambda path: False)
    client = create_app({"DB": str(db), "TESTING": True}).test_client()
    assert client.get("/api/utterances/1000").status_code == 200  # reading works
    r = client.post("/api/annotations", json={"id": 1000, "action": "keep"})
    assert r.status_code == 503 and "read-only" in r.get_json()["error"] and r.get_json()["hint"]
