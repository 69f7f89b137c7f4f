"""The local model server (``hl-debug serve-model``) answers any request body with 200 or a
contract error (401/404/422 JSON ``detail``), never a 500 (issue 15)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hl_debug.models.intent_model import LocalIntentModel
from hl_debug.sources.local import EncodedModel
from hl_debug.sources.model_server import create_model_app
from tests.fakes import FakeEncoder
from tests.property_profiles import examples
from tests.test_property_api import INTS, JSON, TEXT


@pytest.fixture(scope="module")
def client():
    texts = ["my card got stuck", "i lost my card", "when is my bill due", "how much is the bill"]
    enc = FakeEncoder()
    model = EncodedModel(enc, LocalIntentModel(calibration=None).fit(enc.transform(texts), ["card", "card", "bill",
                                                                                            "bill"]))
    return create_model_app(model, project_id=411, test_config={"TESTING": True}).test_client()


ITEMS = st.lists(st.fixed_dictionaries({"text": TEXT | JSON}, optional={"id": JSON}) | JSON, max_size=22)
RAW = st.sampled_from(["", "{not json", "[" * 5000 + "]" * 5000, '{"data": ' + "[" * 5000 + "]" * 5000 + "}"])
BODIES = (st.fixed_dictionaries({"data": ITEMS}, optional={"n_best": INTS | JSON}).map(json.dumps)
          | JSON.map(json.dumps) | RAW)


def test_a_body_nested_100000_deep_is_a_contract_error(client):
    r = client.post("/projects/411/predict", data="[" * 100_000 + "]" * 100_000, content_type="application/json")
    assert r.status_code == 422 and r.get_json()["detail"], r.get_data(as_text=True)[:200]


@examples(60)
@given(project=st.sampled_from([411, 411, 411, 716]) | INTS.filter(lambda i: i >= 0), body=BODIES)
def test_any_body_is_answered_or_refused_by_the_contract(client, project, body):
    r = client.post(f"/projects/{project}/predict", data=body, content_type="application/json")
    assert r.status_code in (200, 404, 422), f"{r.status_code}: {r.get_data(as_text=True)[:300]}"
    answer = r.get_json()
    assert answer is not None
    if r.status_code != 200:
        assert answer["detail"]
