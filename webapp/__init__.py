"""The hl-debug web app (Flask app factory + blueprints).

``create_app()`` serves the database named by ``HL_DB`` (or ``test_config["DB"]``): the
``pages`` blueprint renders the HTML views, the ``api`` blueprint answers ``/api/...``
with JSON. The app only reads the store, except for appending review decisions.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app; ``test_config`` overrides settings (``DB``, ``TESTING``, ...)."""
    from hl_debug.settings import resolve

    from . import api, compress, db, errors, pages, points, security

    app = Flask(__name__)
    # BokehJS resolves references in document order: keep keys as Bokeh wrote them.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.jinja_env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    app.config.from_mapping(
        DB=resolve("db"),
        MAX_CONTENT_LENGTH=1 << 20,  # decisions are tiny; refuse anything big
        INSPECTOR_MAX_IDS=1000,
        PAGE_SIZE=50,
        WARM_MAP=True,  # build the map's payload at start (not when TESTING: tests control timing)
    )
    if test_config:
        app.config.update(test_config)
    db.init_app(app)
    security.init_app(app)
    compress.init_app(app)
    app.extensions["hl_points"] = points.PayloadCache()
    if app.config["WARM_MAP"] and not app.testing:
        app.extensions["hl_points"].warm(app.config["DB"])
    errors.init_app(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(api.bp, url_prefix="/api")
    return app
