"""The web app's guards (issue 15.2, 15.3): the Host allow-list (DNS rebinding), origins
compared by scheme, host and port, the access token of team mode with its cookie, the
reviewer of each decision, disagreements on /issues, and the page cache."""

from __future__ import annotations

import json

import pytest

from hl_debug.scoring.agreement import agreement, disagreements, pair_agreement
from hl_debug.storage import Store
from tests.webapp_fixtures import PLANTED_ERROR_ID, fill_synthetic, store_model_report
from webapp import create_app, security


@pytest.fixture
def web_db(db_path, tiny_export_path):
    s = fill_synthetic(Store(db_path), tiny_export_path)
    store_model_report(s)
    s.close()
    return db_path


def make_client(web_db, **config):
    return create_app({"DB": str(web_db), "TESTING": True, **config}).test_client()


@pytest.fixture
def client(web_db):
    return make_client(web_db)


def post(client, body, path="/api/annotations", **headers):
    headers.setdefault("Content-Type", "application/json")
    return client.post(path, data=json.dumps(body), headers=headers)


def decisions(web_db) -> list[dict]:
    s = Store(web_db, create=False)
    try:
        return s.annotations()
    finally:
        s.close()


# -- DNS rebinding: the Host allow-list -----------------------------------------------------


def test_dns_rebinding_read_is_refused(client):
    """Issue 15: a page on a foreign name resolving to 127.0.0.1 read GET /api/points (200)."""
    r = client.get("/api/points", headers={"Host": "rebind.evil.example:5000"})
    assert r.status_code == 400
    assert b"not served here" in r.data and b"--allowed-host" in r.data
    assert client.get("/", headers={"Host": "rebind.evil.example"}).status_code == 400


def test_dns_rebinding_write_is_refused(client, web_db):
    """Issue 15: the same page wrote a decision (POST /api/annotations 201), its Origin
    matching its own (foreign) Host."""
    r = post(client, {"id": 1000, "action": "skip"}, Host="rebind.evil.example:5000",
             Origin="http://rebind.evil.example:5000")
    assert r.status_code == 400
    assert decisions(web_db) == []


@pytest.mark.parametrize("host", ["localhost", "localhost:5000", "127.0.0.1:5000", "[::1]:5000", "LOCALHOST:80"])
def test_loopback_names_are_served(client, host):
    assert client.get("/api/labels", headers={"Host": host}).status_code == 200


@pytest.mark.parametrize("host", ["localhost:abc", "user@localhost", "local host", "", "localhost.evil.example",
                                  "127.0.0.1.nip.io"])
def test_malformed_or_foreign_hosts_are_refused(client, host):
    assert client.get("/api/labels", headers={"Host": host}).status_code == 400


def test_allowed_hosts_extend_the_list(web_db):
    client = make_client(web_db, ALLOWED_HOSTS=["reviews.example.lan", "10.0.0.5"])
    for host in ("reviews.example.lan:5000", "10.0.0.5:5000", "localhost:5000"):
        assert client.get("/api/labels", headers={"Host": host}).status_code == 200
    assert client.get("/api/labels", headers={"Host": "other.example.lan"}).status_code == 400


def test_allowed_hosts_normalise_names():
    assert security.allowed_hosts("0.0.0.0", ["Reviews.Example:5000", "[fe80::1]"]) == frozenset(
        {"127.0.0.1", "localhost", "::1", "reviews.example", "fe80::1"})
    assert "10.1.2.3" in security.allowed_hosts("10.1.2.3")


# -- origins: scheme, host and port ---------------------------------------------------------


@pytest.mark.parametrize("origin", [
    "https://localhost:5000",  # another scheme: ignored before (the netloc alone matched)
    "http://localhost:5001",  # another port
    "http://evil.example:5000",
    "ftp://localhost:5000",
])
def test_origin_with_another_scheme_host_or_port_is_refused(client, web_db, origin):
    r = post(client, {"id": 1000, "action": "skip"}, Host="localhost:5000", Origin=origin)
    assert r.status_code == 403 and "cross-site" in r.json["error"]
    assert decisions(web_db) == []


def test_referer_with_another_scheme_is_refused(client, web_db):
    r = post(client, {"id": 1000, "action": "skip"}, Host="localhost:5000", Referer="https://localhost:5000/issues")
    assert r.status_code == 403
    assert decisions(web_db) == []


@pytest.mark.parametrize("origin", ["http://localhost:5000", "http://127.0.0.1:5000", "http://[::1]:5000"])
def test_origins_of_this_app_may_write(client, origin):
    # the same server under another loopback name is the same app
    assert post(client, {"id": 1000, "action": "skip"}, Host="localhost:5000", Origin=origin).status_code == 201


# -- team mode: the access token --------------------------------------------------------------


TOKEN = "s3cret-Token_42"


@pytest.fixture
def team(web_db):
    return make_client(web_db, TOKEN=TOKEN, TEAM=True)


def test_token_is_required(team):
    r = team.get("/api/labels")
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert "token" in r.json["error"] and "Authorization: Bearer" in r.json["hint"]
    assert team.get("/", headers={"X-HL-Reviewer": "ana"}).status_code == 401
    assert team.get("/static/style.css").status_code == 401
    assert team.get("/api/labels", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert team.get("/api/labels?token=wrong").status_code == 401


def test_bearer_header_for_api_clients(team, web_db):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert team.get("/api/labels", headers=auth).status_code == 200
    r = post(team, {"id": 1000, "action": "skip"}, **auth, **{"X-HL-Reviewer": "script"})
    assert r.status_code == 201
    assert decisions(web_db)[-1]["reviewer"] == "script"


def test_token_link_sets_a_strict_httponly_cookie(team):
    r = team.get(f"/issues?token={TOKEN}&page=1")
    assert r.status_code == 303
    assert r.headers["Location"].endswith("/issues?page=1")  # the token leaves the address bar
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and security.SESSION_COOKIE in cookie
    assert TOKEN not in cookie  # the cookie holds an HMAC of the token, not the token
    assert team.get("/api/labels").status_code == 200  # the cookie is enough from now on
    team.set_cookie(security.SESSION_COOKIE, "forged", domain="localhost")
    assert team.get("/api/labels").status_code == 401


def test_token_comparison_is_constant_time(team, monkeypatch):
    calls = []
    real = security.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(security.hmac, "compare_digest", spy)
    assert team.get("/api/labels", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert calls and calls[-1] == (TOKEN.encode(), TOKEN.encode())
    calls.clear()
    assert team.get("/api/labels?token=nope").status_code == 401
    assert (b"nope", TOKEN.encode()) in calls
    assert security.tokens_equal("é\ud800", "é\ud800") and not security.tokens_equal("a", "b")  # any text


# -- the reviewer of each decision --------------------------------------------------------------


def test_reviewer_header_is_recorded(client, web_db):
    assert post(client, {"id": 1000, "action": "skip"}, **{"X-HL-Reviewer": " ana "}).status_code == 201
    r = post(client, {"ids": [1001, 1002], "action": "out_of_scope"}, path="/api/annotations/batch",
             **{"X-HL-Reviewer": "bob"})
    assert r.status_code == 201
    assert post(client, {"id": 1003, "action": "skip"}).status_code == 201  # single-user mode: no name
    assert [(d["utterance_id"], d["reviewer"]) for d in decisions(web_db)] == [
        (1000, "ana"), (1001, "bob"), (1002, "bob"), (1003, None)]


@pytest.mark.parametrize("name", ["", "x" * 65, "<script>", "a\tb"])
def test_malformed_reviewer_header_is_refused(client, web_db, name):
    assert post(client, {"id": 1000, "action": "skip"}, **{"X-HL-Reviewer": name}).status_code == 400
    assert decisions(web_db) == []


def test_team_mode_login_names_the_reviewer(team, web_db):
    team.get(f"/?token={TOKEN}")
    r = team.get("/issues")
    assert r.status_code == 303 and "/login?next=/issues" in r.headers["Location"]
    assert team.get("/login").status_code == 200
    assert team.post("/login", data={"name": "<b>", "next": "/issues"}).status_code == 400
    r = team.post("/login", data={"name": "Carla", "next": "/issues"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/issues")
    assert "HttpOnly" in r.headers["Set-Cookie"] and "SameSite=Strict" in r.headers["Set-Cookie"]
    assert team.get("/issues").status_code == 200
    assert post(team, {"id": 1000, "action": "skip"}).status_code == 201
    assert decisions(web_db)[-1]["reviewer"] == "Carla"


def test_login_never_redirects_off_site(team):
    team.get(f"/?token={TOKEN}")
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        r = team.post("/login", data={"name": "ana", "next": target})
        assert r.headers["Location"] in ("/", "http://localhost/")


def test_single_user_mode_asks_no_name(client):
    assert client.get("/issues").status_code == 200


# -- disagreements and kappa ---------------------------------------------------------------------


def test_disagreement_is_shown_on_issues(client):
    assert b'id="disagreements"' not in client.get("/issues").data
    for who, label in (("ana", "chat_settings"), ("bob", "card_issue")):
        r = post(client, {"id": PLANTED_ERROR_ID, "action": "relabel", "label": label}, **{"X-HL-Reviewer": who})
        assert r.status_code == 201
    post(client, {"id": 1000, "action": "keep"}, **{"X-HL-Reviewer": "ana"})
    post(client, {"id": 1000, "action": "keep"}, **{"X-HL-Reviewer": "bob"})
    page = client.get("/issues").get_data(as_text=True)
    assert "Reviewers disagree on 1 row" in page
    section = page[page.index('id="disagreements"'):page.index("</section>")]
    assert f"#{PLANTED_ERROR_ID}" in section and "#1000<" not in section
    assert "ana</span>: <b>chat_settings" in section and "bob</span>: <b>card_issue" in section
    assert "agreement 50%" in section


def test_kappa_on_a_known_case():
    # po = 3/4; pe = 0.5*0.25 + 0.5*0.75 = 0.5; kappa = (0.75 - 0.5) / 0.5 = 0.5
    a = {1: "x", 2: "x", 3: "y", 4: "y"}
    b = {1: "x", 2: "y", 3: "y", 4: "y", 5: "x"}  # row 5: only b decided it
    pair = pair_agreement(a, b)
    assert pair == {"n_rows": 4, "n_agree": 3, "agreement": 0.75, "kappa": pytest.approx(0.5)}
    rows = [{"id": i, "reviewer": "a", "label": v} for i, v in a.items()] + \
           [{"id": i, "reviewer": "b", "label": v} for i, v in b.items()]
    summary = agreement(rows)
    assert summary["n_reviewers"] == 2 and summary["kappa"] == pytest.approx(0.5)
    assert summary["decided"] == {"a": 4, "b": 5} and summary["n_disagreements"] == 1
    assert [d["id"] for d in disagreements(rows)] == [2]


def test_kappa_is_undefined_for_a_single_shared_label():
    assert pair_agreement({1: "x", 2: "x"}, {1: "x", 2: "x"})["kappa"] is None
    assert pair_agreement({1: "x"}, {2: "x"}) == {"n_rows": 0, "n_agree": 0, "agreement": None, "kappa": None}
    assert agreement([])["kappa"] is None


def test_report_gives_inter_reviewer_agreement(web_db):
    from click.testing import CliRunner

    from hl_debug.cli import cli

    client = make_client(web_db)
    for i, (la, lb) in enumerate([("card_issue", "card_issue"), ("card_issue", "bill_question"),
                                  ("bill_question", "bill_question"), ("bill_question", "bill_question")]):
        for who, label in (("ana", la), ("bob", lb)):
            assert post(client, {"id": 1000 + i, "action": "relabel", "label": label},
                        **{"X-HL-Reviewer": who}).status_code == 201
    runner = CliRunner()
    r = runner.invoke(cli, ["--db", str(web_db), "report", "--format", "json"])
    assert r.exit_code == 0, r.output
    team = json.loads(r.output)["reviewers"]
    assert team["n_reviewers"] == 2 and team["n_disagreements"] == 1
    assert team["kappa"] == pytest.approx(0.5) and team["agreement"] == 0.75
    r = runner.invoke(cli, ["--db", str(web_db), "report"])
    assert r.exit_code == 0 and "Cohen's kappa 0.50" in r.output


# -- expensive parts once per data state ---------------------------------------------------------


def test_pages_are_built_once_per_data_state(web_db):
    app = create_app({"DB": str(web_db), "TESTING": True})
    client, cache = app.test_client(), app.extensions["hl_pages"]
    first = client.get("/clusters")
    assert first.status_code == 200 and cache.builds == 1
    again = client.get("/clusters")
    assert again.data == first.data and cache.builds == 1
    assert client.get("/clusters", headers={"If-None-Match": first.headers["ETag"]}).status_code == 304
    gz = client.get("/clusters", headers={"Accept-Encoding": "gzip"})
    assert gz.headers["Content-Encoding"] == "gzip" and cache.builds == 1
    assert post(client, {"id": 1000, "action": "skip"}).status_code == 201  # a new data state
    assert client.get("/clusters").status_code == 200 and cache.builds == 2
    assert client.get("/clusters", headers={"If-None-Match": first.headers["ETag"]}).status_code == 200


def test_a_decision_shows_on_the_next_page_view(client):
    assert b"decided: relabel" not in client.get("/issues?pending=0").data
    post(client, {"id": PLANTED_ERROR_ID, "action": "relabel", "label": "chat_settings"})
    assert b"decided: relabel" in client.get("/issues?pending=0").data


def test_the_token_is_checked_before_the_cache(web_db):
    app = create_app({"DB": str(web_db), "TESTING": True, "TOKEN": TOKEN})
    client = app.test_client()
    assert client.get("/clusters", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert app.test_client().get("/clusters").status_code == 401  # cached, yet refused without the token
    assert app.test_client().get("/clusters", headers={"Host": "evil.example"}).status_code == 400


def test_export_annotations_carries_the_reviewer(client, web_db):
    from click.testing import CliRunner

    from hl_debug.cli import cli

    post(client, {"id": 1000, "action": "skip"}, **{"X-HL-Reviewer": "ana"})
    r = CliRunner().invoke(cli, ["--db", str(web_db), "export", "annotations", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[0]["reviewer"] == "ana"


def test_report_of_a_single_user_database_has_no_reviewers_key(web_db):
    from click.testing import CliRunner

    from hl_debug.cli import cli

    post(make_client(web_db), {"id": 1000, "action": "skip"})  # no reviewer named
    r = CliRunner().invoke(cli, ["--db", str(web_db), "report", "--format", "json"])
    assert r.exit_code == 0 and "reviewers" not in json.loads(r.output)
