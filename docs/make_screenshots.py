"""Regenerate docs/screenshot-<page>.png from a database, in headless Chromium.

Usage::

    .venv/bin/python docs/make_screenshots.py --db data/hl_debug.db

Starts the web app on a free loopback port, opens each page, makes a selection on the map
(so the inspector and neighbour list show), clicks a confusion-matrix cell on the report,
and saves one PNG per page next to this script.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from webapp import create_app

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", required=True, help="hl-debug database to show")
    ap.add_argument("--out", default=str(HERE), help="folder for the PNGs")
    ap.add_argument("--select", default="", help="search text whose matches are selected on the map")
    args = ap.parse_args()

    server = make_server("127.0.0.1", 0, create_app({"DB": args.db}), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    out = Path(args.out)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=LAUNCH_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 950})

        def ready(path: str) -> None:
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(800)

        ready("/")
        if args.select:
            page.fill("#search", args.select)
            page.press("#search", "Enter")
        else:  # lasso a band through the middle of the map
            box = page.locator("#map canvas").first.bounding_box()
            pts = [(0.40, 0.35), (0.62, 0.35), (0.62, 0.60), (0.40, 0.60), (0.40, 0.36)]
            page.mouse.move(box["x"] + pts[0][0] * box["width"], box["y"] + pts[0][1] * box["height"])
            page.mouse.down()
            for fx, fy in pts[1:]:
                page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"], steps=6)
            page.mouse.up()
        page.wait_for_function("document.querySelectorAll('#inspector tbody tr').length > 0", timeout=15_000)
        page.locator("#inspector tbody tr").first.click()
        page.wait_for_timeout(800)
        page.screenshot(path=str(out / "screenshot-map.png"))
        for name in ("clusters", "issues", "queue"):
            ready(f"/{name}")
            page.screenshot(path=str(out / f"screenshot-{name}.png"))
        ready("/report")
        page.evaluate("""() => {
            for (const doc of Bokeh.documents) {
                const src = doc.get_model_by_name('confusion');
                if (!src) continue;
                let best = -1, bestCount = 0;
                src.data.count.forEach((c, i) => {
                    if (src.data.given[i] !== src.data.predicted[i] && c > bestCount) { best = i; bestCount = c; }
                });
                if (best >= 0) src.selected.indices = [best];
            }
        }""")
        page.wait_for_timeout(800)
        page.screenshot(path=str(out / "screenshot-report.png"), full_page=True)
        browser.close()
    server.shutdown()
    print(f"wrote 5 screenshots to {out}")


if __name__ == "__main__":
    main()
