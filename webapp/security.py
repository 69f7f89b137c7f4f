"""Request checks: which host names the app answers, who may use it, where writes may come
from, and who made a decision.

**Host allow-list** (DNS rebinding). A page on a foreign name that resolves to 127.0.0.1 talks
to this server as if it were same-origin, so every request whose ``Host`` is not an allowed
name — the loopback names, the ``--host`` the server binds and each ``--allowed-host`` —
is answered 400 before anything else runs.

**Access token** (team mode). With ``TOKEN`` set every request must carry it: as
``Authorization: Bearer <token>`` (API clients), or once as ``?token=<token>`` (the link
``hl-debug serve`` prints), which sets an HttpOnly, SameSite=Strict session cookie and
redirects to the same page without the token. Comparisons are constant-time
(:func:`hmac.compare_digest`).

**Cross-site writes.** A state-changing request is refused (403) when its ``Origin`` — or,
lacking one, its ``Referer`` — is not one of this app's origins: the same scheme, an allowed
host name and the port the request came to. JSON endpoints accept only
``Content-Type: application/json``, which a cross-site HTML form cannot send without a CORS
preflight (that this app never answers). Scripts (curl, requests) send neither header and
are allowed (past the token, in team mode). Every response carries a Content-Security-Policy
that forbids inline scripts.

**Reviewer.** :func:`reviewer` names who made a decision: the ``X-HL-Reviewer`` header, else
the name chosen on ``/login`` (kept in a cookie). In team mode a page visit without a name
is sent to ``/login`` first.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, redirect, render_template, request, url_for

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Host names that always reach this machine only.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SESSION_COOKIE = "hl_session"
REVIEWER_COOKIE = "hl_reviewer"
REVIEWER_HEADER = "X-HL-Reviewer"
MAX_REVIEWER = 64
_BAD_NAME = re.compile(r"[\x00-\x1f\x7f<>\"]")
#: Paths a page visit in team mode may reach before choosing a name.
_NO_LOGIN = ("/login", "/static/", "/bokehjs/", "/api/")
DEFAULT_PORTS = {"http": 80, "https": 443}

# BokehJS compiles CustomJS callbacks with `new Function` ('unsafe-eval') and injects its
# own <style> elements ('unsafe-inline' for styles only). No inline <script> is allowed.
CSP = ("default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'self'")

bp = Blueprint("security", __name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a bind address or name) reaches this machine only."""
    return host.strip("[]").lower() in LOOPBACK_HOSTS or host.startswith("127.")


def allowed_hosts(bind_host: str | None = None, extra: Iterable[str] = ()) -> frozenset[str]:
    """The host names the app answers: :data:`LOOPBACK_HOSTS`, ``bind_host`` (unless it is a
    wildcard address) and ``extra``, lower-cased, without brackets or ports."""
    names = {*LOOPBACK_HOSTS, *(h for h in [bind_host] if h and h not in ("0.0.0.0", "::", ""))}
    names.update(extra)
    return frozenset(_name(h) for h in names if h)


def _name(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("[") and "]" in host:
        return host[1:host.index("]")]
    if host.count(":") == 1:  # name:port
        return host.split(":")[0]
    return host


def _split_host(netloc: str, scheme: str) -> tuple[str, int] | None:
    """``(hostname, port)`` of a ``Host`` header or URL netloc; None when malformed."""
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None or parts.password is not None:
        return None
    return parts.hostname.lower(), port if port is not None else DEFAULT_PORTS.get(scheme, 80)


def check_host() -> Response | None:
    """400 for a ``Host`` that is not an allowed name (the DNS-rebinding guard)."""
    split = _split_host(request.host, request.scheme)
    if split is None or split[0] not in current_app.config["ALLOWED_HOSTS"]:
        return Response(f"400 Bad Request: host {request.host!r} is not served here; start hl-debug serve "
                        "with --allowed-host NAME to serve it under that name.\n", status=400,
                        mimetype="text/plain")
    return None


def same_origin(url: str) -> bool:
    """Whether ``url`` (an ``Origin`` or ``Referer``) is one of this app's origins: the
    request's scheme, an allowed host name and the port the request came to."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or parts.scheme != request.scheme:
        return False
    theirs, ours = _split_host(parts.netloc, parts.scheme), _split_host(request.host, request.scheme)
    return (theirs is not None and ours is not None and theirs[0] in current_app.config["ALLOWED_HOSTS"]
            and theirs[1] == ours[1])


def check_request() -> None:
    """Refuse cross-site writes (403) and non-JSON bodies on the API (415)."""
    if request.method in SAFE_METHODS:
        return
    origin = request.headers.get("Origin")
    referer = request.headers.get("Referer")
    if origin is not None and origin != "null":
        if not same_origin(origin):
            abort(403, f"cross-site request refused: Origin {origin} is not this app ({request.scheme}://{request.host})")
    elif origin == "null" or referer is not None:
        if origin == "null" or not same_origin(referer or ""):
            abort(403, "cross-site request refused: the request comes from another site")
    if request.path.startswith("/api/") and request.mimetype != "application/json":
        abort(415, f"Content-Type must be application/json, got {request.mimetype or 'none'}")


# -- the access token ----------------------------------------------------------------------


def tokens_equal(given: str, expected: str) -> bool:
    """Constant-time comparison of two secrets (any text; compared as UTF-8 bytes)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass"))


def session_value(token: str) -> str:
    """What the session cookie holds: an HMAC of the token (so the cookie never is the token)."""
    return hmac.new(token.encode("utf-8"), b"hl-debug session", hashlib.sha256).hexdigest()


def _unauthorized() -> Response:
    message = "this hl-debug server needs its access token"
    hint = ("Open the link hl-debug serve printed (…/?token=TOKEN) once, or send the header "
            "'Authorization: Bearer TOKEN'.")
    if request.path.startswith("/api/"):
        response = jsonify({"error": message, "status": 401, "hint": hint})
    else:
        response = Response(f"401 Unauthorized: {message}.\n{hint}\n", mimetype="text/plain")
    response.status_code = 401
    response.headers["WWW-Authenticate"] = 'Bearer realm="hl-debug"'
    return response


def check_token() -> Response | None:
    """With ``TOKEN`` set: the bearer header, the session cookie or ``?token=`` must match it (401)."""
    token = current_app.config.get("TOKEN")
    if not token:
        return None
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer " and tokens_equal(auth[7:].strip(), token):
        return None
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie is not None and tokens_equal(cookie, session_value(token)):
        return None
    given = request.args.get("token")
    if given is None or not tokens_equal(given, token):
        return _unauthorized()
    if request.method != "GET":
        return None
    rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
    response = redirect(request.path + (f"?{urlencode(rest)}" if rest else ""), code=303)
    _set_cookie(response, SESSION_COOKIE, session_value(token))
    return response


def _set_cookie(response: Response, name: str, value: str) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Strict", secure=request.is_secure,
                        max_age=30 * 24 * 3600)


# -- the reviewer --------------------------------------------------------------------------


def clean_reviewer(name: str | None) -> str | None:
    """``name`` stripped, or None when empty, over :data:`MAX_REVIEWER` characters or holding
    control characters or markup."""
    name = (name or "").strip()
    if not name or len(name) > MAX_REVIEWER or _BAD_NAME.search(name):
        return None
    return name


def reviewer() -> str | None:
    """Who is making this request's decisions: the ``X-HL-Reviewer`` header (400 when it is
    malformed), else the name chosen on ``/login``; None when neither (single-user mode)."""
    header = request.headers.get(REVIEWER_HEADER)
    if header is not None:
        name = clean_reviewer(header)
        if name is None:
            abort(400, f"header {REVIEWER_HEADER} must be a name of 1-{MAX_REVIEWER} characters "
                       "without control characters, quotes or angle brackets")
        return name
    return clean_reviewer(request.cookies.get(REVIEWER_COOKIE))


def require_login() -> Response | None:
    """In team mode, send a page visit with no reviewer name to ``/login`` first."""
    if (not current_app.config.get("TEAM") or request.method != "GET" or request.path.startswith(_NO_LOGIN)
            or reviewer() is not None):
        return None
    return redirect(url_for("security.login", next=request.full_path.rstrip("?")), code=303)


def _local_path(target: str | None) -> str:
    """``target`` when it is a path on this site (never another host: no open redirect), else ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Choose the name your decisions are recorded under (kept in a cookie)."""
    error = None
    target = _local_path(request.values.get("next"))
    if request.method == "POST":
        name = clean_reviewer(request.form.get("name"))
        if name is not None:
            response = redirect(target, code=303)
            _set_cookie(response, REVIEWER_COOKIE, name)
            return response
        error = f"Choose a name of 1-{MAX_REVIEWER} characters (no quotes or angle brackets)."
    return render_template("login.html", current=reviewer(), error=error, target=target), 400 if error else 200


# -- wiring ----------------------------------------------------------------------------------


def set_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    return response


def init_app(app: Flask) -> None:
    """Register the checks, in order: host, token, login, cross-site writes."""
    app.config["ALLOWED_HOSTS"] = allowed_hosts(None, app.config.get("ALLOWED_HOSTS") or ())
    app.before_request(check_host)
    app.before_request(check_token)
    app.before_request(require_login)
    app.before_request(check_request)
    app.after_request(set_headers)
    app.register_blueprint(bp)
