"""Error responses: JSON ``{"error", "hint"}`` under ``/api/``, an HTML page elsewhere."""

from __future__ import annotations

from flask import Flask, abort, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from hl_debug.errors import (
    AnalysisError,
    AnnotationError,
    ConfigError,
    HLDebugError,
    MissingFieldError,
    MissingStepError,
    ModelError,
    NotFoundError,
    PredictionAPIError,
    StoreError,
)


def status_of(exc: HLDebugError) -> int:
    """The HTTP status of a library error."""
    if isinstance(exc, (MissingFieldError, ConfigError)):
        return 400
    if isinstance(exc, AnnotationError):
        return 422
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, (MissingStepError, ModelError, AnalysisError)):  # the data cannot support it yet
        return 409
    if isinstance(exc, PredictionAPIError):  # an upstream prediction endpoint failed
        return 502
    if isinstance(exc, StoreError):  # the database is read-only or locked: the server cannot write now
        return 503
    return 500


def _respond(status: int, message: str, hint: str = ""):
    if request.path.startswith("/api/"):
        body = {"error": message, "status": status}
        if hint:
            body["hint"] = hint
        return jsonify(body), status
    return render_template("error.html", status=status, message=message, hint=hint), status


#: SQLite's INTEGER range: a path parameter outside it can name nothing in the database.
INT64 = (-(2**63), 2**63 - 1)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def check_parameters() -> None:
    """400 naming the parameter for an integer path parameter beyond SQLite's range (any
    route's, so one added later is covered), and for a JSON body nested too deeply to parse
    (Python's parser would raise RecursionError in the view)."""
    for name, value in (request.view_args or {}).items():
        if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
            abort(400, f"path parameter '{name}' must be an integer between {INT64[0]} and {INT64[1]}, got {value}")
    if request.method in BODY_METHODS and request.is_json:
        try:
            request.get_json(silent=True)  # cached: the view reads the parsed body again for free
        except RecursionError:
            abort(400, "the JSON body is nested too deeply")


def init_app(app: Flask) -> None:
    app.before_request(check_parameters)

    @app.errorhandler(HLDebugError)
    def library_error(exc: HLDebugError):
        return _respond(status_of(exc), exc.message, exc.hint)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _respond(exc.code or 500, exc.description or exc.name)
