"""Contract tests of the local model server (shape, ordering, n_best, 401, 422, 404)."""

from __future__ import annotations

import numpy as np
import pytest
import requests

from hl_debug.models.intent_model import LocalIntentModel
from hl_debug.sources.local import EncodedModel
from hl_debug.sources.model_server import ServerThread, create_model_app
from tests.fakes import FakeEncoder

TEXTS = {
    "card_issue": ["my card got stuck in the atm", "i lost my debit card", "card reader rejects my card",
                   "someone stole my credit card", "block my card please"],
    "bill_question": ["when is my water bill due", "how much do i owe on the gas bill", "bill amount due today",
                      "electricity bill due date", "what is on my phone bill"],
    "chat_settings": ["change your name please", "can you speak more formally", "switch the chat language",
                      "make the chat voice slower", "change chat settings"],
}


@pytest.fixture
def model() -> EncodedModel:
    texts = [t for ts in TEXTS.values() for t in ts]
    labels = [lbl for lbl, ts in TEXTS.items() for _ in ts]
    enc = FakeEncoder()
    return EncodedModel(enc, LocalIntentModel(calibration=None).fit(enc.transform(texts), labels))


@pytest.fixture
def app(model):
    return create_model_app(model, project_id=7, api_key="s3cret", test_config={"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, body, *, key="s3cret", project=7, **kw):
    headers = {"X-API-Key": key} if key is not None else {}
    return client.post(f"/projects/{project}/predict", json=body, headers=headers, **kw)


def test_answer_shape_and_order(client):
    texts = ["block my card please", "when is my water bill due", "change chat settings"]
    r = post(client, {"data": [{"text": t} for t in texts], "n_best": 1})
    assert r.status_code == 200
    body = r.get_json()
    assert [item["data"] for item in body] == [{"text": t} for t in texts]
    for item in body:
        assert set(item) == {"data", "predictions"}
        (pred,) = item["predictions"]
        assert pred["output"] == "intent" and len(pred["value"]) == 1
        assert set(pred["value"][0]) == {"label", "confidence"}
    assert [item["predictions"][0]["value"][0]["label"] for item in body] == [
        "card_issue", "bill_question", "chat_settings"]


def test_echo_keeps_extra_fields(client):
    r = post(client, {"data": [{"text": "lost my card", "id": 12}]})
    assert r.get_json()[0]["data"] == {"text": "lost my card", "id": 12}


@pytest.mark.parametrize("n_best, expected", [(1, 1), (2, 2), (3, 3), (50, 3)])
def test_n_best_caps_at_the_number_of_intents(client, n_best, expected):
    r = post(client, {"data": [{"text": "my card is lost"}], "n_best": n_best})
    value = r.get_json()[0]["predictions"][0]["value"]
    assert len(value) == expected
    conf = [v["confidence"] for v in value]
    assert conf == sorted(conf, reverse=True)
    if expected == 3:
        assert sum(conf) == pytest.approx(1.0)
        assert {v["label"] for v in value} == set(TEXTS)


def test_confidences_match_the_model(client, model):
    text = "how much is the gas bill"
    r = post(client, {"data": [{"text": text}], "n_best": 3})
    got = {v["label"]: v["confidence"] for v in r.get_json()[0]["predictions"][0]["value"]}
    proba = model.model.predict_proba(model.encoder.transform([text]))[0]
    np.testing.assert_allclose([got[c] for c in model.classes_], proba)


def test_n_best_defaults_to_one(client):
    r = post(client, {"data": [{"text": "my card is lost"}]})
    assert len(r.get_json()[0]["predictions"][0]["value"]) == 1


def test_empty_data_gives_empty_answer(client):
    r = post(client, {"data": []})
    assert r.status_code == 200 and r.get_json() == []


@pytest.mark.parametrize("key", [None, "wrong", ""])
def test_missing_or_wrong_key_is_401(client, key):
    r = post(client, {"data": [{"text": "hi"}]}, key=key)
    assert r.status_code == 401 and "API key" in r.get_json()["detail"]


def test_no_key_configured_means_open(model):
    c = create_model_app(model, project_id=7).test_client()
    assert post(c, {"data": [{"text": "hi"}]}, key=None).status_code == 200


def test_21_items_is_422(client):
    r = post(client, {"data": [{"text": f"text {i}"} for i in range(21)]})
    assert r.status_code == 422
    (d,) = r.get_json()["detail"]
    assert d["loc"] == ["body", "data"] and "at most 20" in d["msg"] and d["type"] == "value_error.list.max_items"


def test_20_items_is_fine(client):
    r = post(client, {"data": [{"text": f"card {i}"} for i in range(20)]})
    assert r.status_code == 200 and len(r.get_json()) == 20


@pytest.mark.parametrize("body, loc, type_", [
    ({}, ["body", "data"], "value_error.missing"),
    ({"data": "hello"}, ["body", "data"], "type_error.list"),
    ({"data": ["hello"]}, ["body", "data", 0], "type_error.dict"),
    ({"data": [{"txt": "hello"}]}, ["body", "data", 0, "text"], "value_error.missing"),
    ({"data": [{"text": "ok"}, {"text": 5}]}, ["body", "data", 1, "text"], "type_error.str"),
    ({"data": [{"text": "ok"}], "n_best": 0}, ["body", "n_best"], "value_error.number.not_ge"),
    ({"data": [{"text": "ok"}], "n_best": "3"}, ["body", "n_best"], "type_error.integer"),
    ([{"text": "ok"}], ["body"], "type_error.dict"),
])
def test_bad_bodies_are_422_with_detail(client, body, loc, type_):
    r = post(client, body)
    assert r.status_code == 422
    details = r.get_json()["detail"]
    assert {"loc": loc, "type": type_} == {k: details[0][k] for k in ("loc", "type")}
    assert details[0]["msg"]


def test_invalid_json_is_422(client):
    r = client.post("/projects/7/predict", data="{not json", headers={"X-API-Key": "s3cret",
                                                                       "Content-Type": "application/json"})
    assert r.status_code == 422 and r.get_json()["detail"][0]["type"] == "value_error.jsondecode"


def test_other_project_is_404(client):
    r = post(client, {"data": [{"text": "hi"}]}, project=8)
    assert r.status_code == 404 and "project 8" in r.get_json()["detail"]


def test_wrong_method_is_json_405(client):
    r = client.get("/projects/7/predict")
    assert r.status_code == 405 and "detail" in r.get_json()


def test_health_names_the_model(model):
    c = create_model_app(model, project_id=7, identity="local:abc").test_client()
    body = c.get("/health").get_json()
    assert body["model"] == "local:abc" and body["classes"] == sorted(TEXTS) and body["project_id"] == 7


def test_unfitted_or_missing_model_is_rejected():
    with pytest.raises(TypeError, match="top_k"):
        create_model_app(None)


def test_server_thread_serves_over_http(app):
    with ServerThread(app) as server:
        r = requests.post(f"{server.url}/projects/7/predict", json={"data": [{"text": "lost card"}]},
                          headers={"X-API-Key": "s3cret"}, timeout=10)
        assert r.status_code == 200 and r.json()[0]["data"] == {"text": "lost card"}
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{server.url}/projects/7/predict", json={}, timeout=2)


# -- hl-debug serve-model -----------------------------------------------------------------


class _StubServer:
    server_port = 8765

    def __init__(self):
        self.served = self.closed = False

    def serve_forever(self):
        self.served = True

    def server_close(self):
        self.closed = True


def test_cli_serve_model_trains_reports_accuracy_and_serves(tiny_store, db_path, monkeypatch):
    import werkzeug.serving
    from click.testing import CliRunner

    from hl_debug.cli import cli

    monkeypatch.setattr("hl_debug.models.encoders.default_encoder", lambda name=None, backend=None: FakeEncoder())
    made = {}

    def fake_make_server(host, port, app, threaded):
        made.update(host=host, port=port, app=app, server=_StubServer())
        return made["server"]

    monkeypatch.setattr(werkzeug.serving, "make_server", fake_make_server)
    r = CliRunner().invoke(cli, ["--db", str(db_path), "serve-model", "--port", "8765", "--api-key", "k"], obj={})
    assert r.exit_code == 0, r.output
    assert "3 intents; accuracy training 1.000 (n=13), validation" in r.output and ", testing " in r.output
    assert "/projects/7/predict (X-API-Key required)" in r.output and "k" not in r.output.split("required")[1]
    assert made["server"].served and made["server"].closed and made["port"] == 8765
    # the app it served answers the contract with the trained model
    c = made["app"].test_client()
    ok = c.post("/projects/7/predict", json={"data": [{"text": "lost card"}], "n_best": 3},
                headers={"X-API-Key": "k"})
    assert ok.status_code == 200 and len(ok.get_json()[0]["predictions"][0]["value"]) == 3
    assert (db_path.with_name("hl.model") / "meta.json").exists()


def test_cli_serve_model_port_in_use_is_one_message(tiny_store, db_path, monkeypatch):
    import socket

    from click.testing import CliRunner

    from hl_debug.cli import cli

    monkeypatch.setattr("hl_debug.models.encoders.default_encoder", lambda name=None, backend=None: FakeEncoder())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = CliRunner().invoke(cli, ["--db", str(db_path), "serve-model", "--port", str(port)], obj={})
    assert r.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in r.output and "--port" in r.output


def test_other_project_404_says_how_to_reach_the_model(client):
    """The brief's snippet posts to /projects/716/predict; the server serves the export's id."""
    r = post(client, {"data": [{"text": "hi"}]}, project=716)
    detail = r.get_json()["detail"]
    assert r.status_code == 404
    assert "POST /projects/7/predict" in detail and "--project-id 716" in detail, detail


def test_unknown_path_404_names_the_predict_route(client):
    r = client.post("/predict", json={"data": [{"text": "hi"}]})
    assert r.status_code == 404 and "POST /projects/7/predict" in r.get_json()["detail"]


def test_client_404_hint_names_the_project_id(model):
    from hl_debug.errors import PredictionAPIError
    from hl_debug.sources.model_server import ServerThread
    from hl_debug.sources.remote import PredictClient

    with ServerThread(create_model_app(model, project_id=411)) as server:
        client = PredictClient(server.url, project_id=716, max_retries=0)
        with pytest.raises(PredictionAPIError) as exc:
            client.predict_batch(["lost card"])
    assert "HTTP 404" in exc.value.message and "/projects/411/predict" in exc.value.message
    assert "--project-id" in exc.value.hint


@pytest.mark.parametrize("url", ["http://[::1", "http://exa mple.com", "http://:99999", "https://", "http://host:abc",
                                 "http://host:70000"])
def test_malformed_base_url_is_refused_up_front(url):
    from hl_debug.errors import PredictionAPIError
    from hl_debug.sources.remote import PredictClient

    with pytest.raises(PredictionAPIError, match="--api-url"):
        PredictClient(url, project_id=1)
