"""The web app in headless Chromium (Playwright): the map's lasso fills the inspector without
a reload, a suggestion accepted on /issues reaches ``export corrected``, a queue item is
labelled with one key, a confusion cell lists its rows, injected markup stays inert, and a
group of out-of-scope candidates named as a new intent on /discover reaches ``export corrected``.

Needs Debian's ``chromium`` at /usr/bin/chromium; skipped with a reason when it is absent.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from hl_debug.cli import cli
from hl_debug.storage import Store
from tests import oos_fixtures
from tests.webapp_fixtures import PLANTED_ERROR_ID, XSS_ID, fill_synthetic

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
XSS = "<img src=x onerror=alert(1)>"

if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
    pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install -y chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


class LiveServer:
    """The app on a free loopback port, served by werkzeug in a thread."""

    def __init__(self, db: Path) -> None:
        from werkzeug.serving import make_server

        from webapp import create_app

        self.server = make_server("127.0.0.1", 0, create_app({"DB": str(db)}), threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which("chromium") or CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def web_db(db_path, tiny_export_path) -> Path:
    fill_synthetic(Store(db_path), tiny_export_path).close()
    return db_path


@pytest.fixture
def server(web_db) -> Iterator[LiveServer]:
    s = LiveServer(web_db)
    yield s
    s.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.errors = []  # uncaught page errors and dialogs (an alert() means injected markup ran)
    pg.on("pageerror", lambda exc: pg.errors.append(f"pageerror: {exc}"))
    pg.on("dialog", lambda d: (pg.errors.append(f"dialog: {d.message}"), d.dismiss()))
    yield pg
    context.close()


def open_page(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']", state="attached", timeout=20_000)


def inspector_ids(page) -> list[int]:
    return [int(x) for x in page.eval_on_selector_all("#inspector tbody tr", "rows => rows.map(r => r.dataset.id)")]


def test_map_lasso_fills_the_inspector_without_a_reload(page, server):
    open_page(page, server.url + "/")
    assert page.evaluate("window.hlDebug.state().shown") == 24
    page.evaluate("window.__noReload = true")
    box = page.locator("#map canvas").first.bounding_box()
    # Cluster 2 (chat_settings and the planted error) is at the top of the map; lasso the top third.
    x0, x1 = box["x"] + 0.03 * box["width"], box["x"] + 0.97 * box["width"]
    y0, y1 = box["y"] + 0.10 * box["height"], box["y"] + 0.38 * box["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in [(x1, y0), (x1, y1), (x0, y1), (x0, y0 + 2)]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()
    page.wait_for_function("document.querySelectorAll('#inspector tbody tr').length > 0", timeout=10_000)
    ids = inspector_ids(page)
    assert PLANTED_ERROR_ID in ids and 1000 not in ids and 1006 not in ids  # only the top cluster
    assert page.evaluate("window.__noReload") is True  # same page: no reload happened
    assert f"ids={PLANTED_ERROR_ID}" in page.url or str(PLANTED_ERROR_ID) in page.url  # selection in the URL
    # clicking a row lists its nearest neighbours
    page.click(f"#inspector tbody tr[data-id='{PLANTED_ERROR_ID}']")
    page.wait_for_function("document.querySelectorAll('#neighbors tbody tr').length === 5")
    assert "chat_settings" in page.inner_text("#neighbors")
    assert page.errors == []


def test_shared_url_restores_filters_and_selection(page, server):
    open_page(page, server.url + f"/?color=cluster_id&cluster=2&ids={PLANTED_ERROR_ID}")
    assert page.evaluate("window.hlDebug.state().shown") == 8
    assert page.input_value("#color-by") == "cluster_id" and page.input_value("#filter-cluster") == "2"
    page.wait_for_function("document.querySelectorAll('#inspector tbody tr').length === 1")
    assert inspector_ids(page) == [PLANTED_ERROR_ID]


def test_search_selects_matching_utterances(page, server):
    open_page(page, server.url + "/")
    page.fill("#search", "card")
    page.press("#search", "Enter")
    page.wait_for_function("document.querySelectorAll('#inspector tbody tr').length === 7")
    assert "q=card" in page.url


def test_accept_on_issues_reaches_export_corrected(page, server, web_db):
    open_page(page, server.url + "/issues")
    first = page.locator("li.card").first
    assert first.get_attribute("data-id") == str(PLANTED_ERROR_ID)
    page.keyboard.press("a")  # accept the suggestion of the focused (first) card
    page.wait_for_function(f"document.querySelector('li.card[data-id=\"{PLANTED_ERROR_ID}\"] .outcome')"
                           ".textContent.includes('accept: chat_settings')")
    out = web_db.parent / "corrected.json"
    result = CliRunner().invoke(cli, ["--db", str(web_db), "export", "corrected", "-o", str(out)], obj={})
    assert result.exit_code == 0, result.output
    rec = next(r for r in json.loads(out.read_text(encoding="utf-8")) if r["id"] == PLANTED_ERROR_ID)
    assert json.loads(rec["data"])["intent"] == "chat_settings"
    # focus moved on: the next card is current, ready for the next key
    assert page.locator("li.card.current").get_attribute("data-id") != str(PLANTED_ERROR_ID)
    assert page.errors == []


def test_choose_another_label_on_issues(page, server, web_db):
    open_page(page, server.url + "/issues")
    card = page.locator("li.card").nth(1)
    card.locator("select.relabel").select_option("card_issue")
    card.locator("button[data-action='relabel']").click()
    uid = int(card.get_attribute("data-id"))
    page.wait_for_function(f"document.querySelector('li.card[data-id=\"{uid}\"]').classList.contains('decided')")
    store = Store(web_db)
    try:
        assert store.effective_label(uid) == "card_issue"
    finally:
        store.close()


def test_label_a_queue_item_with_one_key(page, server, web_db):
    open_page(page, server.url + "/queue")
    assert page.inner_text("#progress-text") == "0 of 5 reviewed"
    first = page.locator("li.card").first
    uid = int(first.get_attribute("data-id"))
    assert first.locator("select.relabel").input_value() == "card_issue"  # prediction pre-selected
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('progress-text').textContent === '1 of 5 reviewed'")
    page.keyboard.press("3")  # next card: label it with the 3rd intent (chat_settings)
    page.wait_for_function("document.getElementById('progress-text').textContent === '2 of 5 reviewed'")
    second = int(page.locator("li.card").nth(1).get_attribute("data-id"))
    store = Store(web_db)
    try:
        assert store.effective_label(uid) == "card_issue"
        assert store.effective_label(second) == "chat_settings"
    finally:
        store.close()


def test_confusion_cell_lists_its_rows(page, server):
    open_page(page, server.url + "/report")
    # select the (bill_question, card_issue) cell through the figure's own source, as a tap does
    page.evaluate("""() => {
        for (const doc of Bokeh.documents) {
            const src = doc.get_model_by_name('confusion');
            if (!src) continue;
            const k = src.data.given.findIndex((g, i) => g === 'bill_question' && src.data.predicted[i] === 'card_issue');
            src.selected.indices = [k];
        }
    }""")
    page.wait_for_function("document.querySelectorAll('#cell-rows tbody tr').length === 1")
    assert "labelled bill_question, predicted card_issue" in page.inner_text("#cell-title")


def test_injected_markup_stays_inert_everywhere(page, server):
    for path in ("/", "/clusters", "/issues?pending=0", "/queue", "/report", "/discover"):
        page.goto(server.url + path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0, path
    # hover the injected utterance on the map: Bokeh's tooltip shows it as text (the texts come
    # after the map is drawn, from /api/points/text)
    open_page(page, server.url + "/")
    page.wait_for_function("document.body.dataset.texts === '1'")
    x, y = page.evaluate("""(id) => {
        const view = Object.values(Bokeh.index).find((v) => v.model.name === 'map');
        const src = view.model.document.get_model_by_name('points');
        const k = src.data.id.indexOf(id);
        const r = view.el.getBoundingClientRect();
        return [r.x + view.frame.x_scale.compute(src.data.x[k]), r.y + view.frame.y_scale.compute(src.data.y[k])];
    }""", XSS_ID)
    page.mouse.move(x, y)
    tooltip = page.get_by_text(XSS + " what's my bill")  # get_by_text pierces Bokeh's shadow DOM
    tooltip.first.wait_for(timeout=5_000)
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0
    # the page's hover card: one, for the row under the cursor, gone once the pointer leaves the map
    card = page.locator(".map-hover")
    assert card.count() == 1 and f"id: {XSS_ID}" in card.inner_text() and "label: (unannotated)" in card.inner_text()
    page.mouse.move(2, 2)
    card.wait_for(state="hidden", timeout=5_000)
    open_page(page, server.url + f"/?ids={XSS_ID}")
    page.wait_for_function("document.querySelectorAll('#inspector tbody tr').length === 1")
    assert XSS in page.inner_text("#inspector")  # shown as text
    assert page.evaluate("document.querySelectorAll('#inspector img').length") == 0
    page.click(f"#inspector tbody tr[data-id='{XSS_ID}']")
    page.wait_for_timeout(300)
    open_page(page, server.url + "/queue")
    assert XSS in page.inner_text("#review")
    assert page.errors == []  # no alert() dialog, no script error


def test_every_colour_by_option_draws_a_legend(page, server):
    open_page(page, server.url + "/")
    expected = {"label": "unannotated", "predicted_label": "no prediction", "cluster_id": "cluster 2",
                "issue_score": "high (0.95)", "entropy": "low", "usage": "validation", "annotated": "unannotated"}
    for value, legend_text in expected.items():
        page.select_option("#color-by", value)
        assert legend_text in page.inner_text("#legend"), value
        assert page.evaluate("window.hlDebug.state().color") == value
    assert "color=annotated" in page.url
    assert page.errors == []


def test_open_cluster_from_clusters_page_fills_the_inspector(page, server):
    page.goto(server.url + "/clusters")
    page.click("#cluster-2 a.open-map")
    page.wait_for_selector("body[data-ready='1']", state="attached", timeout=20_000)
    page.wait_for_function("document.querySelectorAll('#inspector tbody tr').length === 8")
    assert page.evaluate("window.hlDebug.state().shown") == 8
    assert PLANTED_ERROR_ID in inspector_ids(page)


def pixel(page, x: float, y: float) -> tuple[int, int, int]:
    """The colour the page shows at viewport pixel (x, y)."""
    from io import BytesIO

    from PIL import Image

    png = page.screenshot(clip={"x": int(x), "y": int(y), "width": 1, "height": 1})
    return Image.open(BytesIO(png)).convert("RGB").getpixel((0, 0))


def wait_painted(page, after: int) -> None:
    page.wait_for_function(f"window.hlDebug.state().paints > {after}", timeout=10_000)
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


def test_map_paints_every_point_and_the_selection_stands_out(page, server):
    open_page(page, server.url + "/?color=cluster_id")
    wait_painted(page, 0)
    ids = page.evaluate("Array.from(Bokeh.documents[0].get_model_by_name('points').data.id)")
    where = {i: page.evaluate(f"window.hlDebug.screenOf({i})") for i in ids}
    # the marker is drawn where the point is: not the white background
    before = {i: pixel(page, p["x"], p["y"]) for i, p in where.items()}
    assert all(min(c) < 235 for c in before.values()), before
    # select one point: it is drawn at full strength, every other point fades
    painted = page.evaluate("window.hlDebug.state().paints")
    page.evaluate(f"window.hlDebug.selectIds([{PLANTED_ERROR_ID}], true)")
    wait_painted(page, painted)
    after = {i: pixel(page, p["x"], p["y"]) for i, p in where.items()}
    assert sum(after[PLANTED_ERROR_ID]) <= sum(before[PLANTED_ERROR_ID])  # not faded (on top, alpha 1)
    far = [i for i in ids if abs(where[i]["x"] - where[PLANTED_ERROR_ID]["x"]) > 12
           or abs(where[i]["y"] - where[PLANTED_ERROR_ID]["y"]) > 12]
    faded = [i for i in far if sum(after[i]) > sum(before[i]) + 60]
    assert len(faded) >= 0.8 * len(far), (before, after)
    # zooming in repaints at the new scale: the point stays under its marker
    painted = page.evaluate("window.hlDebug.state().paints")
    box = page.locator("#map canvas").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -300)
    wait_painted(page, painted)
    p = page.evaluate(f"window.hlDebug.screenOf({PLANTED_ERROR_ID})")
    if 0 < p["x"] - box["x"] < box["width"] and 0 < p["y"] - box["y"] < box["height"]:
        assert min(pixel(page, p["x"], p["y"])) < 235
    assert page.errors == []


STATIC = Path(__file__).resolve().parents[1] / "webapp" / "static"
GOLDEN = Path(__file__).resolve().parent / "fixtures" / "points_payload.json"
MODULE_ORIGIN = "http://hl-debug.test"  # answered by the route below, never by a network


@pytest.fixture
def module_page(browser):
    """A blank page whose origin serves ``webapp/static`` (no server), so tests can ``import()``
    the page's ES modules."""
    context = browser.new_context()
    pg = context.new_page()

    def serve(route) -> None:
        path = route.request.url[len(MODULE_ORIGIN):].split("?")[0]
        if path.startswith("/static/") and (STATIC / path[len("/static/"):]).is_file():
            route.fulfill(body=(STATIC / path[len("/static/"):]).read_text(encoding="utf-8"),
                          content_type="text/javascript")
        elif path == "/":
            route.fulfill(body="<!doctype html><title>modules</title>", content_type="text/html")
        else:
            route.fulfill(status=404, body="not found")

    pg.route(MODULE_ORIGIN + "/**", serve)
    pg.goto(MODULE_ORIGIN + "/")
    yield pg
    context.close()


@pytest.fixture
def raster(module_page):
    pg = module_page
    pg.evaluate("import('/static/raster.js').then((m) => { window.hlRaster = m; })")

    def run(points: list[dict], *, width: int = 21, height: int = 21, alpha=256, order=None, size: float = 7,
            scale: float = 1, window=(-1.0, 1.0, -1.0, 1.0)) -> list[list[tuple[int, int, int]]]:
        """Rasterize ``points`` (x, y, fill, line, shape) and return rows of RGB, top row first."""
        flat = pg.evaluate(
            """([pts, width, height, alpha, order, size, scale, win]) => {
              const R = window.hlRaster;
              const img = R.rasterize({ width, height, x0: win[0], x1: win[1], y0: win[2], y1: win[3],
                x: Float32Array.from(pts, (p) => p.x), y: Float32Array.from(pts, (p) => p.y),
                fill: Uint32Array.from(pts, (p) => R.pack(p.fill)), line: Uint32Array.from(pts, (p) => R.pack(p.line || p.fill)),
                shape: Uint8Array.from(pts, (p) => R.SHAPES[p.shape || "circle"]),
                order: Int32Array.from(order || pts.map((_, i) => i)),
                alpha: Array.isArray(alpha) ? Uint16Array.from(alpha) : alpha, size, scale });
              return Array.from(new Uint8Array(img.buffer));
            }""", [points, width, height, alpha, order, size, scale, list(window)])
        px = [tuple(flat[i:i + 3]) for i in range(0, len(flat), 4)]
        rows = [px[r * width:(r + 1) * width] for r in range(height)]
        return rows[::-1]  # image row 0 is the bottom

    return run


def test_raster_draws_a_point_in_its_colour_at_its_place(raster):
    img = raster([{"x": 0.0, "y": 0.0, "fill": "#ff0000"}])
    assert img[10][10] == (255, 0, 0)  # the centre, fully covered, alpha 1
    assert img[0][0] == img[20][20] == (255, 255, 255)  # background
    # a point in the upper-left quarter lands in the upper-left of the image
    img = raster([{"x": -0.5, "y": 0.5, "fill": "#0000ff"}])
    assert img[5][5] == (0, 0, 255) and img[15][15] == (255, 255, 255)


def test_raster_marker_size_and_shapes(raster):
    circle = raster([{"x": 0.0, "y": 0.0, "fill": "#000000"}], size=7)
    covered = sum(1 for row in circle for c in row if c != (255, 255, 255))
    assert 40 <= covered <= 90  # a disc of diameter ~8 px, antialiased edge
    big = raster([{"x": 0.0, "y": 0.0, "fill": "#000000"}], size=7, scale=2)
    assert sum(1 for row in big for c in row if c != (255, 255, 255)) > 3 * covered  # twice the pixels per side
    diamond = raster([{"x": 0.0, "y": 0.0, "fill": "#00ff00", "line": "#222222", "shape": "diamond"}])
    assert diamond[10][10] == (0, 255, 0)  # filled inside
    assert diamond[10][6] != circle[10][6] or diamond[7][7] != circle[7][7]  # not a disc
    edge = [c for row in diamond for c in row if c not in ((255, 255, 255), (0, 255, 0))]
    assert any(max(c) < 120 for c in edge)  # a dark outline


def test_raster_blends_alpha_and_draws_later_points_on_top(raster):
    half = raster([{"x": 0.0, "y": 0.0, "fill": "#000000"}], alpha=128)
    assert all(abs(v - 128) <= 2 for v in half[10][10])  # half-way from white to black
    two = [{"x": 0.0, "y": 0.0, "fill": "#ff0000"}, {"x": 0.0, "y": 0.0, "fill": "#0000ff"}]
    assert raster(two)[10][10] == (0, 0, 255)
    assert raster(two, order=[1, 0])[10][10] == (255, 0, 0)
    dimmed = raster(two, order=[0, 1], alpha=[256, 38])  # the blue one dimmed to 0.15 over the red
    r, g, b = dimmed[10][10]
    assert r > 200 and b > 30 and g == 0


def test_raster_skips_missing_and_clips_at_the_edges(raster):
    img = raster([{"x": float("nan"), "y": 0.0, "fill": "#000000"}, {"x": 5.0, "y": 5.0, "fill": "#000000"}])
    assert all(c == (255, 255, 255) for row in img for c in row)  # NaN and off-image points draw nothing
    corner = raster([{"x": -1.0, "y": -1.0, "fill": "#000000"}])  # centred on the bottom-left corner
    assert corner[20][0] == (0, 0, 0) and corner[0][20] == (255, 255, 255)
    empty = raster([{"x": 0.0, "y": 0.0, "fill": "#000000"}], window=(1.0, 1.0, -1.0, 1.0))  # empty window
    assert all(c == (255, 255, 255) for row in empty for c in row)


def test_decode_module_reads_the_golden_payload(module_page):
    """static/map/decode.js turns each payload of tests/fixtures/points_payload.json into its
    expected values (tests/test_points.py checks the Python encoder gives those payloads)."""
    cases = json.loads(GOLDEN.read_text(encoding="utf-8"))["cases"]
    for case in cases:
        out = module_page.evaluate("""async (payload) => {
            const d = await import('/static/map/decode.js');
            const all = d.decodePayload(payload, payload.format);
            const values = {}, kinds = {};
            for (const name of Object.keys(payload.columns)) {
              values[name] = d.toList(all[name], all.n);
              kinds[name] = Array.isArray(all[name]) ? 'list' : all[name].codes ? 'codes' : all[name].constructor.name;
            }
            return { n: all.n, values, kinds };
        }""", case["payload"])
        assert out["n"] == len(case["expected"]["id"]), case["name"]
        assert out["values"] == case["expected"], case["name"]
        kinds = out["kinds"]
        assert kinds["label"] == "codes" and kinds["confidence"] == "Float32Array"
        assert kinds["id"] == ("Int32Array" if case["name"] == "rows" else "Float64Array"), case["name"]


def test_map_falls_back_to_bokeh_painting_on_another_bokeh(page, server):
    """When the page says another bokeh than the one the private hooks were written for, the map
    warns in the console and has Bokeh draw the markers; selection and the inspector still work."""
    import re

    warnings: list[str] = []
    page.on("console", lambda msg: warnings.append(msg.text) if msg.type == "warning" else None)

    def other_bokeh(route) -> None:
        response = route.fetch()
        body = re.sub(r'"bokeh": ?"[^"]*"', '"bokeh": "0.0.1"', response.text())
        route.fulfill(response=response, body=body)

    page.route(server.url + "/?*", other_bokeh)
    open_page(page, server.url + "/?color=cluster_id")
    assert any("private BokehJS" in w and "0.0.1" in w for w in warnings), warnings
    assert page.evaluate("window.hlDebug.state().painter") == "bokeh"
    assert page.evaluate("window.hlDebug.state().shown") == 24
    glyph = page.evaluate("""() => { const r = Bokeh.documents[0].get_model_by_name('scatter');
        const a = r.glyph.fill_alpha; return [a.value === undefined ? a : a.value, r.glyph.fill_color.field]; }""")
    assert glyph == [0.8, "fill"]
    page.wait_for_timeout(300)
    p = page.evaluate(f"window.hlDebug.screenOf({PLANTED_ERROR_ID})")
    assert min(pixel(page, p["x"], p["y"])) < 235  # Bokeh drew the marker
    page.evaluate(f"window.hlDebug.selectIds([{PLANTED_ERROR_ID}], true)")
    page.wait_for_function("document.querySelectorAll('#inspector tbody tr').length === 1")
    assert inspector_ids(page) == [PLANTED_ERROR_ID] and page.errors == []


def test_map_uses_the_raster_on_the_pinned_bokeh(page, server):
    warnings: list[str] = []
    page.on("console", lambda msg: warnings.append(msg.text) if msg.type == "warning" else None)
    open_page(page, server.url + "/")
    assert page.evaluate("window.hlDebug.state().painter") == "raster"
    assert not [w for w in warnings if "BokehJS" in w]


def test_a_hit_test_no_longer_unions_a_selection_with_itself(page, server):
    """The third private hook (static/map/bokeh.js): Bokeh's hit test unions its result with
    itself (a Set of every index: ~200 ms for a 900k-point lasso); skipped, the selection keeps
    its very indices, and a union with another selection still unions."""
    open_page(page, server.url + "/")
    added, kept, union = page.evaluate("""() => {
      const S = Bokeh.documents[0].get_model_by_name('points').selected.constructor;
      const add = Set.prototype.add;
      let added = 0; // BokehJS's union() builds a Set: count what goes into one
      Set.prototype.add = function (v) { added++; return add.call(this, v); };
      try {
        const a = new S({ indices: [4, 2, 7] });
        added = 0;
        a.update_through_union(a);
        const self = added;
        const b = new S({ indices: [4, 2] });
        b.update_through_union(new S({ indices: [2, 9] }));
        return [self, Array.from(a.indices).join(), Array.from(b.indices).sort((x, y) => x - y).join()];
      } finally {
        Set.prototype.add = add;
      }
    }""")
    assert added == 0 and kept == "4,2,7" and union == "2,4,9"


def test_the_points_come_decoded_from_the_worker_and_the_page_fetches_them_itself_without_it(page, server):
    """static/points-worker.js downloads and decodes /api/points off the main thread; what it
    hands over is what the page's own decoding of the same body gives. When the worker cannot
    start, the page warns and fetches the points itself."""
    same = """async () => {
      const d = await import('/static/map/decode.js');
      const body = await (await fetch('/api/points')).json();
      const mine = d.decodePayload(body, body.format), got = window.hlDebug.state();
      const ids = (col) => Array.from(col).join();
      return { n: mine.n, shown: got.shown, sizes: window.hlPointsSizes || null,
               same: ids(mine.id) === ids(await window.hlPoints.then((a) => a.id)) };
    }"""
    open_page(page, server.url + "/")
    out = page.evaluate(same)
    assert out["same"] and out["n"] == out["shown"] > 0
    assert out["sizes"] and out["sizes"][1] > 0  # the worker's own resource entry (the benchmark's sizes)
    warnings: list[str] = []
    page.on("console", lambda msg: warnings.append(msg.text) if msg.type == "warning" else None)
    page.route("**/points-worker.js*", lambda route: route.abort())
    open_page(page, server.url + "/")
    page.wait_for_function("window.hlDebug.state().paints > 0")
    assert page.evaluate("window.hlDebug.state().shown") == out["shown"]
    assert any("points worker failed" in w for w in warnings) and page.errors == []


def test_the_hit_test_index_is_built_after_the_paint_and_answers_as_bokehs(page, server):
    """The fourth private hook: the scatter's spatial index waits until the map is painted
    (built when the page is idle, or by the first hit test: an ``hl:index`` mark); the bbox
    the ranges and the layout read before is the points' own extent, and the index answers a
    hit test with the very points inside the box — also after a filter rebuilds the source."""
    open_page(page, server.url + "/")
    marks = """(name) => performance.getEntriesByName(name).map((m) => m.startTime)"""
    probe = """() => {
      const view = Object.values(Bokeh.index).find((v) => v.model.name === 'map');
      const r = view.model.document.get_model_by_name('scatter');
      const glyph = view.views.find_one(r).glyph;
      const { x, y } = r.data_source.data;
      const fin = [...x.keys()].filter((i) => isFinite(x[i] + y[i]));
      const ext = { x0: Math.min(...fin.map((i) => x[i])), x1: Math.max(...fin.map((i) => x[i])),
                    y0: Math.min(...fin.map((i) => y[i])), y1: Math.max(...fin.map((i) => y[i])) };
      const mid = { x0: (ext.x0 + ext.x1) / 2, x1: ext.x1, y0: ext.y0, y1: (ext.y0 + ext.y1) / 2 };
      const got = [...glyph.index.indices(mid)].sort((a, b) => a - b);
      const want = fin.filter((i) => x[i] >= mid.x0 && x[i] <= mid.x1 && y[i] >= mid.y0 && y[i] <= mid.y1);
      return { box: glyph.index.bbox, ext, got: got.join(), want: want.join(), n: want.length };
    }"""
    page.wait_for_function(f"({marks})('hl:index').length >= 1")
    painted, built = page.evaluate(marks, "hl:painted"), page.evaluate(marks, "hl:index")
    assert len(built) == 1 and painted and built[0] > painted[0]  # the first paint did not wait for it
    first = page.evaluate(probe)
    assert first["n"] > 0 and first["got"] == first["want"] and first["box"] == pytest.approx(first["ext"])
    shown = page.evaluate("window.hlDebug.state().shown")
    page.select_option("#filter-usage", "training")  # new source data: the index is stale again
    page.wait_for_function(f"window.hlDebug.state().shown < {shown}")
    page.wait_for_function(f"({marks})('hl:index').length >= 2")
    painted, built = page.evaluate(marks, "hl:painted"), page.evaluate(marks, "hl:index")
    assert built[1] > max(p for p in painted if p < built[1]) > built[0]  # rebuilt after the new paint
    again = page.evaluate(probe)
    assert again["n"] > 0 and again["got"] == again["want"] and again["box"] == pytest.approx(again["ext"])
    assert page.errors == []


@pytest.fixture
def oos_server(db_path, tiny_export_path) -> Iterator[LiveServer]:
    """The app on a database where the out-of-scope signals have run (tests/oos_fixtures.py)."""
    oos_fixtures.fill_oos(fill_synthetic(Store(db_path), tiny_export_path)).close()
    s = LiveServer(db_path)
    yield s
    s.stop()


def test_name_a_new_intent_from_a_group_reaches_export_corrected(page, oos_server, db_path):
    open_page(page, oos_server.url + "/discover")
    assert page.evaluate("document.querySelectorAll('li.group').length") == 2
    group = page.locator("#group-2")
    group.locator("input.intent-name").fill("voice_change")
    group.locator("button[data-action='name']").click()
    page.wait_for_function("document.querySelector('#group-2 .outcome').textContent === '2 rows labelled voice_change'")
    assert "decided" in group.get_attribute("class")
    out = db_path.parent / "corrected.json"
    result = CliRunner().invoke(cli, ["--db", str(db_path), "export", "corrected", "-o", str(out)], obj={})
    assert result.exit_code == 0, result.output
    records = {r["id"]: r for r in json.loads(out.read_text(encoding="utf-8"))}
    assert {json.loads(records[i]["data"])["intent"] for i in oos_fixtures.GROUPS[2]} == {"voice_change"}
    # the name is now a known label: naming the other group with it is a plain relabel of the ticked row
    other = page.locator("#group-1")
    other.locator("details.members summary").click()
    other.locator("input.pick[value='1023']").check()
    other.locator("input.intent-name").fill("voice_change")
    other.locator("input.intent-name").press("Enter")
    page.wait_for_function("document.querySelector('#group-1 .outcome').textContent === '1 row labelled voice_change'")
    # a clashing name is refused with the server's message, naming the field
    other.locator("input.pick[value='1023']").uncheck()
    other.locator("input.intent-name").fill("Card_Issue")
    other.locator("button[data-action='name']").click()
    page.wait_for_function("document.querySelector('#group-1 .outcome').textContent.includes(\"field 'label'\")")
    assert "clashes with the existing intent 'card_issue'" in other.locator(".outcome").inner_text()
    other.locator("button[data-action='out_of_scope']").click()
    page.wait_for_function("document.querySelector('#group-1 .outcome').textContent === '2 rows labelled out_of_scope'")
    store = Store(db_path)
    try:
        assert store.effective_label(1023) == store.effective_label(XSS_ID) == "out_of_scope"
        assert store.get_utterance(1016)["intent"] == "chat_settings"  # originals kept
    finally:
        store.close()
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"]').length") == 0 and page.errors == []


def test_a_group_opens_on_the_map_coloured_by_out_of_scope_score(page, oos_server):
    open_page(page, oos_server.url + "/discover")
    page.click("#group-1 a.on-map")
    page.wait_for_selector("body[data-ready='1']", state="attached", timeout=20_000)
    page.wait_for_function("document.querySelectorAll('#inspector tbody tr').length === 2")
    assert sorted(inspector_ids(page)) == sorted(oos_fixtures.GROUPS[1])
    assert page.input_value("#color-by") == "oos_score" and "high (0.90)" in page.inner_text("#legend")
    cell = page.locator("#inspector tbody tr[data-id='1023'] td").nth(6)
    assert cell.inner_text() == "0.90"
    page.wait_for_function("document.querySelector(\"#inspector tbody tr[data-id='1023'] td:nth-child(7)\").title"
                           " === 'out-of-scope candidate, group 1'")
    assert page.errors == []


def test_queue_candidates_wait_for_a_choice_and_o_marks_them_out_of_scope(page, oos_server, db_path):
    open_page(page, oos_server.url + "/queue")
    card = page.locator("li.card[data-id='1021']")
    assert card.locator("select.relabel").input_value() == ""  # no intent pre-selected
    card.focus()
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelector(\"li.card[data-id='1021'] .outcome\").textContent"
                           ".startsWith('choose an intent first')")
    page.keyboard.press("o")
    page.wait_for_function("document.querySelector(\"li.card[data-id='1021'] .outcome\").textContent === 'out of scope'")
    store = Store(db_path)
    try:
        assert store.effective_label(1021) == "out_of_scope" and store.n_decided() == 1
    finally:
        store.close()
    assert page.errors == []
