"""/taxonomy in headless Chromium: a heatmap cell lists its rows, a finding's card merges two
intents — previewed, applied, found in ``export corrected`` — and the change is reverted.

Uses tests/test_browser.py's live server and browser (skipped with it when Chromium is absent).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from hl_debug.cli import cli
from hl_debug.storage import Store
from tests.taxonomy_fixtures import fill_taxonomy
from tests.test_browser import LiveServer, browser, open_page, page  # noqa: F401 (fixtures)
from tests.webapp_fixtures import fill_synthetic

pytestmark = pytest.mark.browser


@pytest.fixture
def tax_server(db_path, tiny_export_path) -> Iterator[LiveServer]:
    fill_taxonomy(fill_synthetic(Store(db_path), tiny_export_path), min_group_size=3, split_threshold=0.0).close()
    s = LiveServer(db_path)
    yield s
    s.stop()


def corrected_intents(db_path) -> dict[int, str]:
    out = db_path.parent / "corrected.json"
    result = CliRunner().invoke(cli, ["--db", str(db_path), "export", "corrected", "-o", str(out)], obj={})
    assert result.exit_code == 0, result.output
    return {r["id"]: json.loads(r["data"])["intent"] for r in json.loads(out.read_text(encoding="utf-8"))}


def test_heatmap_cell_lists_the_rows_two_intents_exchange(page, tax_server):  # noqa: F811
    open_page(page, tax_server.url + "/taxonomy")
    page.wait_for_selector("#overlap canvas", state="attached", timeout=20_000)
    page.evaluate("""() => {
        for (const doc of Bokeh.documents) {
            const src = doc.get_model_by_name('overlap');
            if (!src) continue;
            const k = src.data.a.findIndex((a, i) => a === 'card_issue' && src.data.b[i] === 'bill_question');
            src.selected.indices = [k];
        }
    }""")
    page.wait_for_function("document.querySelectorAll('#cell-rows tbody tr').length >= 3")
    assert "card_issue and bill_question exchange" in page.inner_text("#cell-title")
    ids = page.eval_on_selector_all("#cell-rows tbody tr", "rows => rows.map(r => Number(r.dataset.id))")
    assert {1000, 1001, 1002} <= set(ids)
    assert page.get_attribute("#cell-rows tbody tr a", "href").startswith("/?ids=")
    assert page.errors == []


def test_merge_two_intents_preview_apply_export_corrected_and_revert(page, tax_server, db_path):  # noqa: F811
    before = corrected_intents(db_path)
    n_bill = sum(v == "bill_question" for v in before.values())
    open_page(page, tax_server.url + "/taxonomy")
    page.locator('#findings button[data-fill="merge"][data-from="bill_question"]').click()
    page.wait_for_selector("#preview-box:not([hidden])")
    summary = page.inner_text("#preview-box .preview-summary")
    assert f"{n_bill} rows will be labelled card_issue" in summary and f"bill_question {n_bill}" in summary
    assert corrected_intents(db_path) == before  # the preview changed nothing
    page.click("#apply")
    page.wait_for_function("document.body.dataset.applied && document.body.dataset.applied.startsWith('merge:')")
    assert f"{n_bill} rows now labelled card_issue" in page.inner_text("#outcome")
    after = corrected_intents(db_path)
    assert "bill_question" not in after.values()
    assert {i for i, v in before.items() if v == "bill_question"} <= {i for i, v in after.items() if v == "card_issue"}
    # a new preview reflects the merge: no row carries bill_question any more
    page.select_option("#intent-a", "card_issue")
    page.select_option("#intent-b", "bill_question")
    page.click("#preview")
    page.wait_for_function("document.querySelector('#outcome').textContent.includes(\"unknown intent 'bill_question'\")")
    # revert: the first click previews, the second restores every row
    button = page.locator("#changes button[data-revert]").first
    button.click()
    page.wait_for_function(f"document.querySelector('#changes button[data-revert]').textContent.includes('restore {n_bill} rows')")
    page.locator("#changes button[data-revert]").first.click()
    page.wait_for_function("document.querySelector('#outcome').textContent.includes('restored')")
    assert corrected_intents(db_path) == before
    assert page.errors == []


def test_split_a_cards_group_off_preview_apply_export_corrected_and_revert(page, tax_server, db_path):  # noqa: F811
    before = corrected_intents(db_path)
    store = Store(db_path)
    rec = next(s for s in store.report("taxonomy")["split"] if len(s["groups"]) == 2)
    store.close()
    intent, group = rec["intent"], rec["groups"][1]
    open_page(page, tax_server.url + "/taxonomy")
    page.locator(f'#findings li[data-kind="split"][data-a="{intent}"] button[data-fill="split"][data-group="2"]').click()
    assert page.is_checked('input[name="kind"][value="split"]') and page.input_value("#split-group") == "2"
    assert page.input_value("#intent-a") == intent
    page.fill("#new-name", f"{intent}_part")
    page.click("#preview")
    page.wait_for_selector("#preview-box:not([hidden])")
    summary = page.inner_text("#preview-box .preview-summary")
    assert f"{group['size']} rows will be labelled {intent}_part (new intent)" in summary
    assert corrected_intents(db_path) == before  # the preview changed nothing
    page.click("#apply")
    page.wait_for_function("document.body.dataset.applied && document.body.dataset.applied.startsWith('split:')")
    after = corrected_intents(db_path)
    assert {after[i] for i in group["ids"]} == {f"{intent}_part"}
    assert {i for i, v in after.items() if v == intent} == {i for i, v in before.items() if v == intent} - set(group["ids"])
    button = page.locator("#changes button[data-revert]").first
    button.click()
    page.wait_for_function("document.querySelector('#changes button[data-revert]').textContent.startsWith('Confirm')")
    button.click()
    page.wait_for_function("document.querySelector('#outcome').textContent.includes('restored')")
    assert corrected_intents(db_path) == before
    assert page.errors == []
