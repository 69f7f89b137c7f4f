"""gzip for large JSON and HTML responses, when the client accepts it.

At 100k utterances ``/api/points`` is megabytes of mostly text and base64; gzip shrinks it
2-3x. The standard library's ``gzip`` is enough (no dependency): responses are compressed
in one ``after_request`` hook (at :data:`DYNAMIC_LEVEL`), except those that set their own ``Content-Encoding``
(``/api/points`` caches its gzipped body) or stream (static files, BokehJS).
"""

from __future__ import annotations

import gzip

from flask import Flask, Response, request

MIN_BYTES = 1024  # below this the gzip header costs more than it saves
LEVEL = 5  # ~3x on JSON at a fraction of level 9's time: for bodies built once and kept (webapp.pagecache)
#: Per-request bodies (inspector rows, built on every request): level 1 is ~3x faster than
#: level 5 on 150 kB of rows for ~25% more bytes — on a loopback or LAN the CPU is the cost.
DYNAMIC_LEVEL = 1
TYPES = frozenset({"application/json", "text/html"})


def accepts_gzip() -> bool:
    """True when the request's ``Accept-Encoding`` allows gzip."""
    return request.accept_encodings.quality("gzip") > 0


def compress(response: Response) -> Response:
    response.vary.add("Accept-Encoding")
    if (response.direct_passthrough or response.status_code != 200 or "Content-Encoding" in response.headers
            or response.mimetype not in TYPES or not accepts_gzip()):
        return response
    data = response.get_data()
    if len(data) < MIN_BYTES:
        return response
    response.set_data(gzip.compress(data, DYNAMIC_LEVEL, mtime=0))
    response.headers["Content-Encoding"] = "gzip"
    return response


def init_app(app: Flask) -> None:
    app.after_request(compress)
