"""Error responses: JSON ``{"error", "hint"}`` under ``/api/``, an HTML page elsewhere."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from hl_debug.errors import (
    AnnotationError,
    ConfigError,
    HLDebugError,
    MissingFieldError,
    MissingStepError,
    NotFoundError,
)


def status_of(exc: HLDebugError) -> int:
    """The HTTP status of a library error."""
    if isinstance(exc, (MissingFieldError, ConfigError)):
        return 400
    if isinstance(exc, AnnotationError):
        return 422
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, MissingStepError):
        return 409
    return 500


def _respond(status: int, message: str, hint: str = ""):
    if request.path.startswith("/api/"):
        body = {"error": message, "status": status}
        if hint:
            body["hint"] = hint
        return jsonify(body), status
    return render_template("error.html", status=status, message=message, hint=hint), status


def init_app(app: Flask) -> None:
    @app.errorhandler(HLDebugError)
    def library_error(exc: HLDebugError):
        return _respond(status_of(exc), exc.message, exc.hint)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _respond(exc.code or 500, exc.description or exc.name)
