"""A model server speaking the Humanloop predict contract (Flask app factory).

``POST /projects/{project_id}/predict`` with headers ``X-API-Key`` and
``Content-Type: application/json`` and body ``{"data": [{"text": ...}, ...], "n_best": k}``
(at most 20 items) answers a JSON array with one item per input, in order::

    {"data": {...the input item...},
     "predictions": [{"output": "intent", "value": [{"label": ..., "confidence": ...}, ...]}]}

``value`` holds the ``k`` most confident intents, most confident first (``k`` larger than the
number of intents gives the full distribution). Errors: 401 when the server has a key and
the request's is missing or wrong, 422 ``{"detail": [{"loc", "msg", "type"}]}`` for a bad
body, 404 for another project id. ``GET /health`` names the model.

:class:`ServerThread` runs any WSGI app on a loopback port in a background thread (used by
the tests and benchmarks; ``hl-debug predict`` scores the local model in-process, see
:mod:`hl_debug.sources.local`).
"""

from __future__ import annotations

import hmac
import logging
import threading
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

MAX_ITEMS = 20

bp = Blueprint("predict_api", __name__)


def _detail(loc: list, msg: str, type_: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": type_}


def _unprocessable(*details: dict[str, Any]):
    return jsonify({"detail": list(details)}), 422


def validate_body(body: Any, *, max_items: int = MAX_ITEMS) -> tuple[list[dict], int | None, list[dict]]:
    """Check a predict request body; returns ``(items, n_best, problems)``.

    ``problems`` lists every violation in the contract's 422 ``detail`` form; when it is
    non-empty the other two values are meaningless.
    """
    problems: list[dict] = []
    if not isinstance(body, dict):
        return [], None, [_detail(["body"], "the body must be a JSON object with a 'data' list", "type_error.dict")]
    data = body.get("data")
    if "data" not in body:
        problems.append(_detail(["body", "data"], "field required", "value_error.missing"))
    elif not isinstance(data, list):
        problems.append(_detail(["body", "data"], "value is not a valid list", "type_error.list"))
    elif len(data) > max_items:
        problems.append(_detail(["body", "data"], f"ensure this value has at most {max_items} items",
                                "value_error.list.max_items"))
    else:
        for i, item in enumerate(data):
            if not isinstance(item, dict):
                problems.append(_detail(["body", "data", i], "value is not a valid dict", "type_error.dict"))
            elif "text" not in item:
                problems.append(_detail(["body", "data", i, "text"], "field required", "value_error.missing"))
            elif not isinstance(item["text"], str):
                problems.append(_detail(["body", "data", i, "text"], "str type expected", "type_error.str"))
    n_best = body.get("n_best", 1)
    if isinstance(n_best, bool) or not isinstance(n_best, int):
        problems.append(_detail(["body", "n_best"], "value is not a valid integer", "type_error.integer"))
        n_best = None
    elif n_best < 1:
        problems.append(_detail(["body", "n_best"], "ensure this value is greater than or equal to 1",
                                "value_error.number.not_ge"))
        n_best = None
    return (data if isinstance(data, list) else []), n_best, problems


@bp.post("/projects/<int:project_id>/predict")
def predict(project_id: int):
    """Answer a batch of texts with the model's top ``n_best`` intents each."""
    cfg = current_app.config
    expected = cfg.get("API_KEY")
    if expected:
        given = request.headers.get("X-API-Key", "")
        if not hmac.compare_digest(given.encode(), str(expected).encode()):
            return jsonify({"detail": "Invalid or missing API key (X-API-Key header)."}), 401
    if cfg.get("PROJECT_ID") is not None and project_id != int(cfg["PROJECT_ID"]):
        return jsonify({"detail": f"project {project_id} not found: this server serves project {cfg['PROJECT_ID']} "
                                  f"(the export's), at POST /projects/{cfg['PROJECT_ID']}/predict. To answer "
                                  f"/projects/{project_id}/predict instead, start it with `hl-debug serve-model "
                                  f"--project-id {project_id}`."}), 404
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        return _unprocessable(_detail(["body"], "the body is nested too deeply", "value_error.jsondecode"))
    if body is None:
        return _unprocessable(_detail(["body"], "the body is not valid JSON", "value_error.jsondecode"))
    items, n_best, problems = validate_body(body, max_items=cfg["MAX_ITEMS"])
    if problems:
        return _unprocessable(*problems)
    if not items:
        return jsonify([])
    model = cfg["MODEL"]
    with cfg["MODEL_LOCK"]:  # encoders (HF tokenizers) are not safe to call from several threads
        ranked = model.top_k([item["text"] for item in items], n_best)
    output = cfg["OUTPUT_NAME"]
    answer = [
        {"data": item,
         "predictions": [{"output": output, "value": [{"label": lbl, "confidence": conf} for lbl, conf in top]}]}
        for item, top in zip(items, ranked)
    ]
    return jsonify(answer)


@bp.get("/health")
def health():
    """The served model's identity and classes."""
    cfg = current_app.config
    model = cfg["MODEL"]
    meta = getattr(model, "metadata_", {}) or {}
    return jsonify({"status": "ok", "project_id": cfg.get("PROJECT_ID"), "model": cfg.get("MODEL_IDENTITY"),
                    "classes": [str(c) for c in getattr(model, "classes_", [])],
                    "accuracy": meta.get("accuracy"), "auth": bool(cfg.get("API_KEY"))})


def create_model_app(model: Any = None, *, project_id: int | None = None, api_key: str | None = None,
                     identity: str | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """Create the model server's Flask app.

    Parameters
    ----------
    model:
        A fitted classifier of texts with ``top_k(texts, k) -> [[(label, confidence), ...], ...]``
        and ``classes_``: the local intent model behind its encoder
        (:class:`hl_debug.sources.local.EncodedModel`).
    project_id:
        The only project id served (others get 404); None serves any.
    api_key:
        When set, requests must send it as ``X-API-Key`` (else 401). Never logged.
    identity:
        The model's identity, reported by ``/health``.
    test_config:
        Flask config overrides (e.g. ``{"TESTING": True, "MAX_ITEMS": 5}``).
    """
    if model is None or not hasattr(model, "top_k"):
        raise TypeError("create_model_app needs a fitted model with top_k(texts, k) "
                        "(e.g. EncodedModel(encoder, LocalIntentModel))")
    app = Flask(__name__)
    app.config.update(MODEL=model, MODEL_LOCK=threading.Lock(), PROJECT_ID=project_id, API_KEY=api_key,
                      MODEL_IDENTITY=identity, MAX_ITEMS=MAX_ITEMS, OUTPUT_NAME="intent", JSON_SORT_KEYS=False)
    if isinstance(app.json, DefaultJSONProvider):
        app.json.sort_keys = False
    if test_config:
        app.config.update(test_config)
    app.register_blueprint(bp)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        detail = exc.description or exc.name
        if exc.code in (404, 405):
            pid = app.config.get("PROJECT_ID")
            detail += f" This server answers POST /projects/{pid if pid is not None else '<id>'}/predict and GET /health."
        return jsonify({"detail": detail}), exc.code

    return app


class ServerThread:
    """Serve a WSGI ``app`` on ``host:port`` (0 = a free port) in a daemon thread.

    Use as a context manager, or call :meth:`start` / :meth:`shutdown`. ``url`` is the base
    URL once started.
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0, threaded: bool = True) -> None:
        from werkzeug.serving import make_server

        self.server = make_server(host, port, app, threaded=threaded)
        self.host, self.port = host, self.server.server_port
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"model-server:{self.port}",
                                        daemon=True)

    def start(self) -> ServerThread:
        self._thread.start()
        log.info("model server listening on %s", self.url)
        return self

    def shutdown(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join(timeout=10)
        self.server.server_close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()
