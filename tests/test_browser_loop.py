"""The closed loop in headless Chromium: relabel rows on /issues, press Retrain on /report,
then see the deltas on /compare and the changed rows on the map (coloured by change)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hl_debug.steps.embed import embed
from hl_debug.storage import Store
from tests.fakes import FakeEncoder
from tests.test_browser import LiveServer, browser, open_page, page  # noqa: F401 (fixtures)
from tests.webapp_fixtures import ENDPOINT, PLANTED_ERROR_ID, fill_synthetic

pytestmark = pytest.mark.browser


@pytest.fixture
def loop_db(db_path, tiny_export_path) -> Path:
    store = fill_synthetic(Store(db_path), tiny_export_path)
    embed(store, FakeEncoder(), progress=False)  # the local model retrains on stored vectors
    store.close()
    return db_path


@pytest.fixture
def loop_server(loop_db):
    s = LiveServer(loop_db)
    yield s
    s.stop()


def test_relabel_retrain_then_compare_and_see_the_changes_on_the_map(page, loop_server, loop_db):  # noqa: F811
    url = loop_server.url
    open_page(page, url + "/issues")
    page.keyboard.press("a")  # accept the planted error's suggestion
    page.wait_for_function(f"document.querySelector('li.card[data-id=\"{PLANTED_ERROR_ID}\"] .outcome')"
                           ".textContent.includes('accept: chat_settings')")
    card = page.locator("li.card").nth(1)
    card.locator("select.relabel").select_option("card_issue")
    card.locator("button[data-action='relabel']").click()
    uid = int(card.get_attribute("data-id"))
    page.wait_for_function(f"document.querySelector('li.card[data-id=\"{uid}\"]').classList.contains('decided')")

    open_page(page, url + "/report")
    page.click("#retrain-button")
    page.wait_for_function("!document.getElementById('retrain-result').hidden || document.getElementById('retrain-status').textContent.length > 14", timeout=60_000)
    assert not page.locator("#retrain-result").is_hidden(), page.inner_text("#retrain-status") + str(page.errors)
    text = page.inner_text("#retrain-result")
    assert ENDPOINT in text and "accuracy" in text and "95% CI" in text
    store = Store(loop_db)
    try:
        versions = store.model_versions()
        assert [v["version"] for v in versions] == [1, 2] and versions[1]["n_decisions"] == 2
        latest = versions[1]["endpoint"]
        changed = {r["id"]: r["change"] for r in store.table_rows(__import__(
            "hl_debug.storage.predictions", fromlist=["MODEL_CHANGES"]).MODEL_CHANGES)}
    finally:
        store.close()
    assert changed, "the retrained model answers some rows differently"

    page.click("#retrain-compare")
    page.wait_for_selector("body[data-ready='1']", state="attached", timeout=20_000)
    assert page.input_value("#pick-a") == ENDPOINT and page.input_value("#pick-b") == latest
    views = page.inner_text("#views")
    assert "corrected" in views and "original" in views and " to " in views  # both views, with intervals
    assert page.locator("#delta .bk-Figure, #delta div").count() > 0  # the per-intent figure is drawn
    assert int(page.inner_text("#n-changed")) == sum(1 for _ in page.locator("#changed-rows tbody tr").all())

    page.click("#map-link")
    page.wait_for_selector("body[data-ready='1']", state="attached", timeout=20_000)
    assert page.input_value("#color-by") == "model_change"
    legend = page.inner_text("#legend")
    assert "fixed" in legend and "broken" in legend and "unchanged" in legend
    n_changed = page.evaluate("""async () => {
        const body = await (await fetch('/api/points')).json();
        const d = await import('/static/map/decode.js');
        const col = d.decodePayload(body, body.format).model_change;
        return Array.from(col.codes).filter((c) => c >= 0).length;
    }""")
    assert n_changed == len(changed)
    assert page.errors == []
