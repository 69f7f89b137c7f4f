"""Request checks that keep other web sites from writing to the local database.

The app binds to 127.0.0.1, but any page open in the same browser can still send requests
to it. A state-changing request is refused (403) when its ``Origin`` header — or, lacking
one, its ``Referer`` — names another site, and JSON endpoints accept only
``Content-Type: application/json``, which a cross-site HTML form cannot send without a
CORS preflight (that this app never answers). Scripts (curl, requests) send neither header
and are allowed. Every response carries a Content-Security-Policy that forbids inline
scripts, so even markup that slipped into a page could not run.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Flask, Response, abort, request

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# BokehJS compiles CustomJS callbacks with `new Function` ('unsafe-eval') and injects its
# own <style> elements ('unsafe-inline' for styles only). No inline <script> is allowed.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")


def _same_site(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == request.host.lower()


def check_request() -> None:
    """Refuse cross-site writes (403) and non-JSON bodies on the API (415)."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("Origin")
    referer = request.headers.get("Referer")
    if origin is not None and origin != "null":
        if not _same_site(origin):
            abort(403, f"cross-site request refused: Origin {origin} is not this app ({request.host})")
    elif origin == "null" or referer is not None:
        if origin == "null" or not _same_site(referer or ""):
            abort(403, "cross-site request refused: the request comes from another site")
    if request.path.startswith("/api/") and request.mimetype != "application/json":
        abort(415, f"Content-Type must be application/json, got {request.mimetype or 'none'}")


def set_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def init_app(app: Flask) -> None:
    app.before_request(check_request)
    app.after_request(set_headers)
