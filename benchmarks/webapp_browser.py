"""Map interactivity in headless Chromium: page load to first render, and lasso -> inspector.

Usage::

    .venv/bin/python benchmarks/webapp_browser.py --db data/hl_debug.db      # a real database
    .venv/bin/python benchmarks/webapp_browser.py --synthetic 100000          # a generated one

Prints the time from navigation until the map is drawn with every point (``/api/points``
fetched, colours computed, source filled), the time from releasing a lasso to the
inspector showing rows (selection -> ``/api/utterances`` -> table), and the time to
recolour the whole map (colour-by change).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def measure(db: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from webapp import create_app

    server = make_server("127.0.0.1", 0, create_app({"DB": str(db)}), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/"
    out: dict[str, float] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        t0 = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("body[data-ready='1']", state="attached", timeout=120_000)
        out["load_s"] = time.perf_counter() - t0
        out["points"] = page.evaluate("window.hlDebug.state().shown")
        box = page.locator("#map canvas").first.bounding_box()
        pts = [(0.30, 0.30), (0.70, 0.30), (0.70, 0.70), (0.30, 0.70), (0.30, 0.31)]
        page.mouse.move(box["x"] + pts[0][0] * box["width"], box["y"] + pts[0][1] * box["height"])
        page.mouse.down()
        for fx, fy in pts[1:]:
            page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"], steps=5)
        t0 = time.perf_counter()
        page.mouse.up()
        page.wait_for_function("document.querySelectorAll('#inspector tbody tr').length > 0", timeout=60_000)
        out["lasso_to_inspector_s"] = time.perf_counter() - t0
        out["selected"] = len(page.evaluate("window.hlDebug.state().ids"))
        t0 = time.perf_counter()
        page.select_option("#color-by", "cluster_id")
        page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
        out["recolour_s"] = time.perf_counter() - t0
        browser.close()
    server.shutdown()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description="map interactivity in headless Chromium")
    ap.add_argument("--db", help="an hl-debug database")
    ap.add_argument("--synthetic", type=int, help="generate a database with this many utterances")
    args = ap.parse_args()
    if bool(args.db) == bool(args.synthetic):
        ap.error("give exactly one of --db or --synthetic N")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(args.db) if args.db else Path(tmp) / "bench.db"
        if args.synthetic:
            from benchmarks.webapp_payload import build

            build(db, args.synthetic)
        r = measure(db)
    print(f"| {int(r['points']):,} | {r['load_s']:.2f} | {int(r['selected']):,} | {r['lasso_to_inspector_s']:.2f} | "
          f"{r['recolour_s']:.2f} |")


if __name__ == "__main__":
    main()
