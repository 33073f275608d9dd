"""One error tree for everything a caller can see.

::

    GatewayError                    (status, kind)
    ├── InvalidRequest              400 invalid_request_error
    ├── Unsupported                 400 invalid_request_error (the chosen upstream cannot honour it)
    ├── AuthenticationFailed        401 authentication_error
    ├── PaymentRequired             402 billing_error
    ├── PermissionDenied            403 permission_error
    ├── NotFound                    404 not_found_error
    ├── RequestTooLarge             413 request_too_large
    ├── RateLimited                 429 rate_limit_error
    ├── InternalError               500 api_error
    ├── UpstreamError               the upstream's own status and kind, mapped
    ├── Overloaded                  529 overloaded_error
    └── UpstreamTimeout             504 timeout_error

Each wire format renders its own envelope from ``status``, ``kind``, ``message``,
``param`` and ``code`` (``protocol.anthropic.errors`` / ``protocol.openai.errors``).
"""

from __future__ import annotations

ERROR_KINDS = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def kind_for_status(status: int) -> str:
    """The Anthropic error type for an HTTP status (used for upstream errors)."""
    if status in ERROR_KINDS:
        return ERROR_KINDS[status]
    if status in (502, 503):
        return "overloaded_error"
    if status == 422:
        return "invalid_request_error"
    return "api_error" if status >= 500 else "invalid_request_error"


class GatewayError(Exception):
    status: int = 500
    kind: str = "api_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        status: int | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.retry_after = retry_after
        if status is not None:
            self.status = status
        if kind is not None:
            self.kind = kind


class InvalidRequest(GatewayError):
    status, kind = 400, "invalid_request_error"


class Unsupported(InvalidRequest):
    """The request is valid, but the upstream that serves the model cannot honour it."""


class AuthenticationFailed(GatewayError):
    status, kind = 401, "authentication_error"


class PaymentRequired(GatewayError):
    status, kind = 402, "billing_error"


class PermissionDenied(GatewayError):
    status, kind = 403, "permission_error"


class NotFound(GatewayError):
    status, kind = 404, "not_found_error"


class RequestTooLarge(GatewayError):
    status, kind = 413, "request_too_large"


class RateLimited(GatewayError):
    status, kind = 429, "rate_limit_error"


class InternalError(GatewayError):
    status, kind = 500, "api_error"


class Overloaded(GatewayError):
    status, kind = 529, "overloaded_error"


class UpstreamTimeout(GatewayError):
    status, kind = 504, "timeout_error"


class UpstreamError(GatewayError):
    """An error the upstream answered with before the first byte; status and kind mapped."""

    def __init__(self, status: int, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status=status, kind=kind_for_status(status), retry_after=retry_after)
