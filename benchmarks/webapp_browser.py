"""Map interactivity in headless Chromium: page load to first render, and lasso -> inspector.

Usage::

    .venv/bin/python benchmarks/webapp_browser.py --db data/hl_debug.db      # a real database
    .venv/bin/python benchmarks/webapp_browser.py --synthetic 100000          # a generated one
    .venv/bin/python benchmarks/webapp_browser.py --synthetic 100000 --legacy f70892b~1   # before/after
    .venv/bin/python benchmarks/webapp_browser.py --synthetic 300             # a quick check

Prints the time from navigation until the map is drawn with every point (``/api/points``
fetched, colours computed, source filled, the points painted, one frame) on a freshly started
server, how much of it is the data (until the source is filled, from ``performance.mark`` in
``map.js``; the rest is painting), when the hover's texts are in the page (fetched apart,
``/api/points/text``, once the map is drawn; with the map's data for code that sent them in it), the same for a reload (the browser revalidates
``/api/points``: a 304), the time from releasing a lasso to the inspector showing rows and
from pressing the mouse for it (the drag included), the same release measured inside the page
(``performance.now()``: the inspector's first rows in the DOM, the first frame after them, and
the map's repaint of the selection), and the time to recolour the whole map (colour-by change)
and to repaint after one wheel-zoom step. ``--legacy REV`` measures the web app at git revision
``REV`` too, on the same database, in a subprocess (see ``webapp_payload.py``). ``--kept``
measures a database whose map payload the web step has kept (as after ``hl-debug run``; the
server then only reads it back), as well as the default: one without it, where the freshly
started server builds the payload while the page waits. The size of ``/api/points`` as sent
(gzip) and decoded comes from the page's resource timing. ``--repeat N`` starts each row N
times (a fresh server, browser and database copy each) and prints each figure's median.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if "--root" in sys.argv:  # measure another checkout's web app (see --legacy)
    sys.path.insert(0, sys.argv[sys.argv.index("--root") + 1])
sys.path.insert(1 if "--root" in sys.argv else 0, str(ROOT))

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


FRAME = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"
# Drawn: map.js counts its rasters (older revisions painted through Bokeh: one frame is the paint).
PAINTED = "(n) => { const s = window.hlDebug.state(); return s.paints === undefined || s.paints > n; }"
PAINTS = "() => window.hlDebug.state().paints || 0"
# In-page clocks around a selection: the release (pointerup), the inspector's first rows in
# the DOM (a MutationObserver), the first frame after them, and the map's repaint.
WATCH = """() => {
  window.__t = {};
  document.addEventListener('pointerup', () => { window.__t.up = performance.now(); }, { capture: true, once: true });
  new MutationObserver((_, obs) => {
    window.__t.rows = performance.now(); obs.disconnect();
    requestAnimationFrame(() => { window.__t.frame = performance.now(); });
  }).observe(document.querySelector('#inspector tbody'), { childList: true });
}"""
SINCE_UP = """(paints) => {
  const t = window.__t, marks = performance.getEntriesByName('hl:painted').filter((m) => m.startTime > t.up);
  return { rows: t.rows - t.up, frame: t.frame - t.up, painted: marks.length ? marks[0].startTime - t.up : NaN };
}"""
FILLED = "() => (performance.getEntriesByName('hl:filled')[0] || {startTime: NaN}).startTime / 1000"
SIZES = """() => { const r = performance.getEntriesByType('resource').filter((e) => e.name.endsWith('/api/points'))[0];
  if (r) return [r.encodedBodySize / 1e6, r.decodedBodySize / 1e6];
  const w = window.hlPointsSizes; // fetched by static/points-worker.js: its own timeline's entry
  return w ? [w[0] / 1e6, w[1] / 1e6] : [NaN, NaN]; }"""
TEXTS_AT = "() => (performance.getEntriesByName('hl:texts')[0] || {startTime: NaN}).startTime / 1000"
LAZY_TEXTS = "() => typeof window.hlDebug.textAt === 'function'"  # code that fetches the texts after the map


def wait_for_texts(page, lazy: bool) -> float:
    """When the hover's texts are in the page, from navigation (s): once the map is drawn for
    code that fetches them apart, the map's own data otherwise (they came with it)."""
    if not lazy:
        return page.evaluate(FILLED)
    page.wait_for_selector("body[data-texts='1']", state="attached", timeout=300_000)
    return page.evaluate(TEXTS_AT)


def keep_payload(db: Path) -> None:
    """Keep the map's payload in ``db`` as the pipeline's web step does (the web step of the
    checkout being measured: ``--root`` comes first on the path)."""
    from hl_debug.steps.web import web_step
    from hl_debug.storage import Store

    store = Store(db, create=False)
    web_step(store, {})
    store.close()


def measure(db: Path) -> dict[str, float]:
    import logging

    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from webapp import create_app

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = make_server("127.0.0.1", 0, create_app({"DB": str(db)}), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"
    out: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        t0 = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", state="attached", timeout=300_000)
        page.wait_for_function(PAINTED, arg=0, timeout=300_000)
        page.evaluate(FRAME)
        out["load_s"] = time.perf_counter() - t0
        out["load_data_s"] = page.evaluate(FILLED)
        out["points"] = page.evaluate("window.hlDebug.state().shown")
        out["sent_mb"], out["body_mb"] = page.evaluate(SIZES)
        lazy = page.evaluate(LAZY_TEXTS)
        out["texts_s"] = wait_for_texts(page, lazy)
        t0 = time.perf_counter()
        page.reload()
        page.wait_for_selector("body[data-ready='1']", state="attached", timeout=300_000)
        page.wait_for_function(PAINTED, arg=0, timeout=300_000)
        page.evaluate(FRAME)
        out["reload_s"] = time.perf_counter() - t0
        out["reload_data_s"] = page.evaluate(FILLED)
        wait_for_texts(page, lazy)  # the lasso starts on a page at rest
        box = page.locator("#map canvas").first.bounding_box()
        pts = [(0.30, 0.30), (0.70, 0.30), (0.70, 0.70), (0.30, 0.70), (0.30, 0.31)]
        page.mouse.move(box["x"] + pts[0][0] * box["width"], box["y"] + pts[0][1] * box["height"])
        page.evaluate(WATCH)
        t_down = time.perf_counter()
        page.mouse.down()
        for fx, fy in pts[1:]:
            page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"], steps=5)
        t0 = time.perf_counter()
        page.mouse.up()
        page.wait_for_function("document.querySelectorAll('#inspector tbody tr').length > 0", timeout=300_000)
        out["lasso_to_inspector_s"] = time.perf_counter() - t0
        out["lasso_gesture_s"] = time.perf_counter() - t_down
        out["selected"] = len(page.evaluate("window.hlDebug.state().ids"))
        page.wait_for_function("() => window.__t.frame !== undefined", timeout=300_000)
        time.sleep(0.5)  # let the repaint of the selection land
        since = page.evaluate(SINCE_UP)
        out["up_rows_ms"], out["up_frame_ms"], out["up_painted_ms"] = since["rows"], since["frame"], since["painted"]
        n = page.evaluate(PAINTS)
        t0 = time.perf_counter()
        page.select_option("#color-by", "cluster_id")
        page.wait_for_function(PAINTED, arg=n, timeout=300_000)
        page.evaluate(FRAME)
        out["recolour_s"] = time.perf_counter() - t0
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        n = page.evaluate(PAINTS)
        t0 = time.perf_counter()
        page.mouse.wheel(0, -400)
        page.wait_for_function(PAINTED, arg=n, timeout=300_000)
        page.evaluate(FRAME)
        out["zoom_s"] = time.perf_counter() - t0
        browser.close()
    server.shutdown()
    return out


def fmt(v: float | None, digits: int = 2) -> str:
    return "–" if v is None or v != v else f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description="map interactivity in headless Chromium")
    ap.add_argument("--db", help="an hl-debug database")
    ap.add_argument("--synthetic", type=int, help="generate a database with this many utterances")
    ap.add_argument("--legacy", metavar="REV", help="also measure the web app at this git revision")
    ap.add_argument("--kept", action="store_true", help="also measure with the payload kept by the web step")
    ap.add_argument("--kept-only", action="store_true",
                    help="only with the payload kept (a database after `hl-debug run` has it already)")
    ap.add_argument("--repeat", type=int, default=1, help="fresh starts per row; each figure is their median")
    ap.add_argument("--root", help=argparse.SUPPRESS)  # internal: import webapp from here
    ap.add_argument("--measure", help=argparse.SUPPRESS)  # internal: measure this database, print JSON
    ap.add_argument("--keep-first", action="store_true", help=argparse.SUPPRESS)  # internal: keep, then measure
    args = ap.parse_args()
    if args.measure:
        if args.keep_first:
            keep_payload(Path(args.measure))
        print(json.dumps(measure(Path(args.measure))))
        return
    if bool(args.db) == bool(args.synthetic):
        ap.error("give exactly one of --db or --synthetic N")
    from benchmarks.webapp_payload import build, checkout

    print("| points | code | /api/points sent / decoded (MB) | load to map drawn (s) | data in the map at (s) | texts in at (s) "
          "| reload to drawn (s) | data in the map at (s) "
          "| lasso selected | release to inspector (s) | whole lasso gesture (s) | in page: release to rows (ms) "
          "| to their frame (ms) | to the map's repaint (ms) | recolour all (s) | wheel zoom (s) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "bench.db"
        if args.synthetic:
            build(db, args.synthetic)
        legacy = checkout(args.legacy, Path(tmp)) if args.legacy else None
        versions = ([(f"before ({args.legacy})", legacy)] if legacy else []) + [("after", ROOT)]
        runs = [] if args.kept_only else [(name, root, False) for name, root in versions]
        runs += [(f"{name}, payload kept", root, True) for name, root in versions] if args.kept or args.kept_only else []
        for name, root, kept in runs:
            tries = []
            for _ in range(args.repeat):
                copy = Path(tmp) / "run.db"
                shutil.copyfile(db, copy)  # the same starting state for each version and try
                proc = subprocess.run([sys.executable, __file__, "--root", str(root), "--measure", str(copy)]
                                      + (["--keep-first"] if kept else []), check=True, capture_output=True, text=True)
                tries.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = {k: statistics.median(t[k] for t in tries) for k in tries[0]}
            print(f"| {int(r['points']):,} | {name} | {fmt(r['sent_mb'], 1)} / {fmt(r['body_mb'], 1)} | {r['load_s']:.2f} | {fmt(r['load_data_s'])} "
                  f"| {fmt(r['texts_s'])} | {r['reload_s']:.2f} "
                  f"| {fmt(r['reload_data_s'])} | {int(r['selected']):,} | {r['lasso_to_inspector_s']:.2f} "
                  f"| {r['lasso_gesture_s']:.2f} | {fmt(r['up_rows_ms'], 0)} | {fmt(r['up_frame_ms'], 0)} "
                  f"| {fmt(r['up_painted_ms'], 0)} | {r['recolour_s']:.2f} | {r['zoom_s']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
