"""Logging set-up and the access log: level by status; no token, and nothing unbounded, in any line.

Tokens are kept out of the logs twice over. Where we print a request (the access log, uncaught
exceptions of plain and WebSocket handlers) its URI goes through :func:`scrub`, which reads the query
after percent-decoding (so ``?%74oken=`` is caught too), redacts every parameter whose name carries a
credential and every JWT-shaped value anywhere, and caps the length. And :func:`setup` puts a
:class:`ScrubFilter` on the process's log handler, so every record, Tornado's own loggers included and
tracebacks too, is scrubbed of JWTs and credential parameters before it is written.

Metric labels come from closed sets only: the method from :data:`HTTP_METHODS` (else ``other``), the
route as its pattern from the routing table (never the raw path), the status as a known HTTP status.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import IO, Any
from urllib.parse import parse_qsl, quote, unquote

from tornado import httputil

access_log = logging.getLogger("truckx.access")

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: longest URI, method and message text written to a log line
MAX_URI_CHARS = 1000
MAX_METHOD_CHARS = 16
REDACTED = "[redacted]"

#: a JWT (header.payload.signature, each base64url; the header always starts with '{"')
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*")
#: query or form parameter names that carry a credential
_SECRET_NAME_RE = re.compile(r"token|jwt|auth|secret|passw|session|signature|api[_-]?key", re.IGNORECASE)
#: ``name=value`` in free text, where the name carries a credential
_SECRET_PARAM_RE = re.compile(
    r"(?P<name>[A-Za-z0-9_.\-\[\]]*(?:token|jwt|auth|secret|passw|session|signature|api[_-]?key)"
    r"[A-Za-z0-9_.\-\[\]]*)(?P<sep>=|%3[dD])(?P<value>[^&#\s\"'<>,;)]*)", re.IGNORECASE)
#: characters left as they are when a decoded URI is written back (no space, no control character)
_PATH_SAFE = "/:@!$'()*+,;=-._~[]"


def _redact_text(text: str) -> str:
    text = _JWT_RE.sub(REDACTED, text)
    return _SECRET_PARAM_RE.sub(lambda m: f"{m['name']}{m['sep']}{REDACTED}", text)


def scrub_text(text: str) -> str:
    """``text`` without JWTs and credential parameters, also when they are percent-encoded (then the
    decoded text, redacted, is returned)."""
    out = _redact_text(text)
    if "%" in out:
        decoded = unquote(out)
        if decoded != out:
            redacted = _redact_text(decoded)
            if redacted != decoded:
                out = redacted
    return out


def scrub(uri: str, limit: int = MAX_URI_CHARS) -> str:
    """A request URI fit for a log line: the query read as the server reads it (percent-decoded), every
    credential parameter and JWT redacted, written back percent-encoded (no control characters, so no
    forged log lines), and at most ``limit`` characters."""
    path, sep, query = uri.partition("?")
    path = quote(_JWT_RE.sub(REDACTED, unquote(path)), safe=_PATH_SAFE)
    if sep:
        pairs = []
        for name, value in parse_qsl(query, keep_blank_values=True):
            if _SECRET_NAME_RE.search(name) or _JWT_RE.search(value):
                value = REDACTED
            pairs.append(f"{quote(_JWT_RE.sub(REDACTED, name), safe='')}={quote(value, safe=_PATH_SAFE)}")
        path += "?" + "&".join(pairs)
    if len(path) > limit:
        path = path[:limit] + f"...({len(uri)} characters)"
    return path


def method_label(method: str | None) -> str:
    """The request method as a metric label: one of HTTP_METHODS or ``other``."""
    return method if method in HTTP_METHODS else "other"


def status_label(status: int) -> str:
    return str(status) if status in httputil.responses else "other"


def request_summary(request: httputil.HTTPServerRequest, address: str | None = None) -> str:
    """``METHOD uri (address)`` for a log line, scrubbed and bounded."""
    method = request.method or ""
    if method not in HTTP_METHODS:
        method = quote(method[:MAX_METHOD_CHARS], safe="") + ("..." if len(method) > MAX_METHOD_CHARS else "")
    return f"{method} {scrub(request.uri or '')} ({address if address is not None else request.remote_ip})"


def log_function(handler: Any) -> None:
    status = handler.get_status()
    request = handler.request
    metrics = handler.settings.get("metrics")
    if metrics is not None:
        route = handler.settings.get("route_names", {}).get(type(handler), "other")
        metrics.http_requests.labels(method_label(request.method), route, status_label(status)).inc()
    if status < 400:
        level = logging.INFO
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    if not access_log.isEnabledFor(level):
        return
    address = getattr(handler, "client_address", None)
    access_log.log(level, "%d %s %.1fms", status, request_summary(request, address),
                   1000.0 * request.request_time())


class ScrubFilter(logging.Filter):
    """Scrubs every record that passes (message, arguments, traceback) of JWTs and credential
    parameters. Put on a handler, it covers every logger that propagates to it, Tornado's included."""

    def __init__(self) -> None:
        super().__init__()
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what we have, scrubbed
            message = f"{record.msg!r} % {record.args!r}"
        clean = scrub_text(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub_text(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub_text(record.stack_info)
        return True


def setup(level: str = "info", stream: IO[str] | None = None) -> logging.Handler:
    """Log to ``stream`` (stderr) through a :class:`ScrubFilter`; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ScrubFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # Tornado's own access log would print raw URIs (with ?token=); ours replaces it.
    logging.getLogger("tornado.access").disabled = True
    return handler
