"""The hl-debug web app (Flask app factory + blueprints).

``create_app()`` serves the database named by ``HL_DB`` (or ``test_config["DB"]``): the
``pages`` blueprint renders the HTML views (``discover`` the out-of-scope page), the ``api`` blueprint answers ``/api/...``
with JSON; ``security`` guards every request (host allow-list, access token, cross-site
writes) and ``pagecache`` keeps expensive responses per data state. The app serves threads
(``hl-debug serve`` runs it on waitress): each request opens its own store connection
(``webapp.db``), and the shared caches hold locks. The app only reads the store, except for appending review decisions and, from
its start-up thread, keeping the map's encoded data (see ``points.PayloadCache.keep``).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app; ``test_config`` overrides settings (``DB``, ``TESTING``, ...)."""
    from hl_debug.settings import resolve
    from webapp import (
        api,
        compare,
        compress,
        db,
        discover,
        errors,
        model_report,
        pages,
        points,
        rowcache,
        security,
        signals_api,
        taxonomy,
    )
    from webapp.pagecache import init_app as init_page_cache
    from webapp.reviewers import init_app as init_reviewers

    app = Flask(__name__)
    # BokehJS resolves references in document order: keep keys as Bokeh wrote them.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.jinja_env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    app.config.from_mapping(
        DB=resolve("db"),
        MAX_CONTENT_LENGTH=1 << 20,  # decisions are tiny; refuse anything big
        INSPECTOR_MAX_IDS=1000,
        PAGE_SIZE=50,
        MINORITY_ROWS=10,
        DISCOVER_MEMBERS=20,  # rows listed per candidate group on /discover (the action covers all of them)  # minority-label rows listed per cluster on /clusters (the map lists all)
        WARM_MAP=True,  # build the map's payload and model report at start (not when TESTING: tests control timing)
        ALLOWED_HOSTS=(),  # host names answered besides the loopback ones (hl-debug serve adds --host, --allowed-host)
        TOKEN=None,  # team mode's access token (hl-debug serve --token / HL_TOKEN); None: no token asked
        TEAM=False,  # team mode: page visits choose a reviewer name first (/login)
        PAGE_CACHE=True,  # keep expensive responses per data state (webapp.pagecache)
        ROW_CACHE_ROWS=200_000,  # inspector rows kept encoded per data state (webapp.rowcache; ~0.8 kB each)
        ROW_WARM_DELAY=10.0,  # s the start-up thread waits for the first map load before encoding the rows
    )
    if test_config:
        app.config.update(test_config)
    db.init_app(app)
    security.init_app(app)
    compress.init_app(app)
    init_reviewers(app)
    init_page_cache(app)  # after security (its checks come first) and compress (it sees the body before gzip)
    app.extensions["hl_points"] = points.PayloadCache()
    app.extensions["hl_texts"] = points.TextCache()
    app.extensions["hl_reports"] = model_report.ReportCache()
    app.extensions["hl_rows"] = rowcache.RowCache(max_rows=app.config["ROW_CACHE_ROWS"])
    app.extensions["hl_map_served"] = threading.Event()  # set once /api/points has sent a body
    if app.config["WARM_MAP"] and not app.testing:
        app.extensions["hl_warm"] = warm(app)
    errors.init_app(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(discover.bp)
    app.register_blueprint(taxonomy.bp)
    app.register_blueprint(compare.bp)
    app.register_blueprint(api.bp, url_prefix="/api")
    app.register_blueprint(signals_api.bp, url_prefix="/api/signals")
    return app


def warm(app: Flask) -> threading.Thread:
    """Build the map's payload in a daemon thread, so the first page load after ``hl-debug
    serve`` finds it ready, and keep it in the database for the next start; once the first map
    page has its data (or after ``ROW_WARM_DELAY``), build the texts the page fetches after it
    (``points.TextCache``), then encode the inspector's rows (``webapp.rowcache``; the model
    report needs no warming: it is the stored document). Returns the thread."""
    from hl_debug.signals.registry import evidence
    from webapp.points import warm_in_background

    payload, texts, rows = app.extensions["hl_points"], app.extensions["hl_texts"], app.extensions["hl_rows"]
    served = app.extensions["hl_map_served"]

    def work(store) -> None:
        t0 = time.perf_counter()
        payload.prepare(store)
        # the texts (1M rows: ~4 s of reading and gzip) and the rows' encoding (3 s of CPU at
        # 100k) wait until the first map page has its data, or ROW_WARM_DELAY: on two cores
        # they would otherwise slow the very first page load
        served.wait(app.config["ROW_WARM_DELAY"])
        texts.get(store, gzipped=True)  # what the page asks for next, once the map is drawn
        t1 = time.perf_counter()
        n = rows.warm(store, evidence())
        log.info("warmed the map's data in %.1f s and %d inspector rows in %.1f s", t1 - t0, n,
                 time.perf_counter() - t1)

    return warm_in_background(app.config["DB"], work, name="hl-warm")
