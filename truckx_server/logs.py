"""Logging set-up and Tornado's access log: level by status, tokens scrubbed from every logged URI."""

from __future__ import annotations

import logging
import re
from typing import Any

access_log = logging.getLogger("truckx.access")
_TOKEN_RE = re.compile(r"([?&](?:token|access_token)=)[^&#\s]*", re.IGNORECASE)


def scrub(uri: str) -> str:
    return _TOKEN_RE.sub(r"\1[redacted]", uri)


def log_function(handler: Any) -> None:
    status = handler.get_status()
    if status < 400:
        level = logging.INFO
    elif status < 500:
        level = logging.WARNING
    else:
        level = logging.ERROR
    if not access_log.isEnabledFor(level):
        return
    request = handler.request
    access_log.log(level, "%d %s %s (%s) %.1fms", status, request.method, scrub(request.uri),
                   request.remote_ip, 1000.0 * request.request_time())
    metrics = handler.settings.get("metrics")
    if metrics is not None:
        metrics.http_requests.labels(request.method, str(status)).inc()


def setup(level: str = "info") -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Tornado's own access log would print raw URIs (with ?token=); ours replaces it.
    logging.getLogger("tornado.access").disabled = True
