"""Domain errors and the one map from them to an HTTP status and an error code.

Domain code raises these; ``handlers.base.BaseHandler.write_error`` turns them into
``{"error": {"code": ..., "message": ...}}``. Nothing else reaches a client.
"""

from __future__ import annotations

from typing import Any


class TruckxError(Exception):
    status = 500
    code = "internal"

    def __init__(self, message: str = "", **extra: Any) -> None:
        super().__init__(message or self.code.replace("_", " "))
        self.message = message or self.code.replace("_", " ")
        self.extra = extra

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        error.update(self.extra)
        return {"error": error}


class InvalidJson(TruckxError):
    status, code = 400, "invalid_json"


class InvalidArgument(TruckxError):
    status, code = 400, "invalid_argument"


class Unauthorized(TruckxError):
    status, code = 401, "unauthorized"


class Forbidden(TruckxError):
    status, code = 403, "forbidden"


class NotFound(TruckxError):
    status, code = 404, "not_found"


class Conflict(TruckxError):
    status, code = 409, "conflict"


class PayloadTooLarge(TruckxError):
    status, code = 413, "payload_too_large"


class RateLimited(TruckxError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str = "", retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(message, **extra)
        #: seconds, sent as the ``Retry-After`` header
        self.retry_after = retry_after


class Unavailable(TruckxError):
    status, code = 503, "unavailable"


# Status codes that Tornado raises itself (routing, body size, ...) mapped to our codes.
STATUS_CODES = {
    400: "invalid_argument",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    416: "range_not_satisfiable",
    429: "rate_limited",
    503: "unavailable",
}
