"""The error hierarchy: every failure an operator can meet, with what they need to act on it.

Each error renders a one-line message that names the source, page and API request id where
known. Messages never carry tokens, keys or signatures: they end up in durable history,
ADF activity output and logs. Our own messages are built without them; every message is
also passed through `redact`, for text quoted from a service (an API's error body may echo
the canonical request, signed headers included).

One construction path: every error is built once, whole, through `BridgeError.__init__`;
`retryable` defaults to the class's value and may be decided per instance by the raiser.
HTTP statuses are mapped once, in shared.api.
"""

from __future__ import annotations

from typing import Any

from shared.observability.redaction import redact


def first_line(exc: object) -> str:
    """The first line of an exception's text (a dependency's may run to pages), else its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class BridgeError(Exception):
    """Base of every error this app raises on purpose."""

    #: The HTTP status the API answers with when this error ends a request.
    http_status = 500
    #: Whether retrying the same operation later can succeed, unless the raiser says otherwise.
    retryable = False
    #: Seconds the caller should wait before trying again, when known (Retry-After).
    retry_after: float | None = None

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        page: int | None = None,
        request_id: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = redact(message)
        self.source = source
        self.page = page
        # A server's words like the message: a hostile one may put a secret there.
        self.request_id = None if request_id is None else redact(request_id)
        if retryable is not None:
            self.retryable = retryable
        if retry_after is not None:
            self.retry_after = retry_after
        super().__init__(self.__str__())

    def __str__(self) -> str:
        context = [
            f"{name}={value}"
            for name, value in (("source", self.source), ("page", self.page), ("request_id", self.request_id))
            if value is not None
        ]
        prefix = f"{type(self).__name__}"
        if context:
            prefix += f" [{' '.join(context)}]"
        return f"{prefix}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body the HTTP API returns for this error."""
        body: dict[str, Any] = {"error": type(self).__name__, "message": self.message}
        for name in ("source", "page", "request_id"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return body


class ConfigError(BridgeError):
    """The app settings or the source catalog are invalid; nothing can run until they are fixed."""


class RequestError(BridgeError):
    """A caller sent something we cannot act on; names the field and the reason."""

    http_status = 400

    def __init__(self, field: str, reason: str, *, source: str | None = None) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}", source=source)

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        body.update(field=self.field, reason=self.reason)
        return body


class NotFoundError(BridgeError):
    """A run or source the caller named does not exist."""

    http_status = 404


class TooManyRunsError(BridgeError):
    """The source is at its concurrency cap (rate_limit.max_concurrent_runs): try again later."""

    http_status = 429


class RunFailed(BridgeError):
    """An activity reported a permanent failure; the orchestration ends with its message."""

    def __str__(self) -> str:
        # The activity's own error already names its class, source, page and request id.
        return self.message


class IdentityError(BridgeError):
    """The Entra token for the AWS audience could not be obtained."""

    http_status = 502
    retryable = True


class StsError(BridgeError):
    """AWS STS refused or failed AssumeRoleWithWebIdentity."""

    http_status = 502

    def __init__(self, message: str, *, code: str, role_arn: str, **kw: Any) -> None:
        self.code = code
        self.role_arn = role_arn
        super().__init__(message, **kw)


class SecretError(BridgeError):
    """A secret the catalog names (an API key) could not be read from the secret store."""

    http_status = 502

    def __init__(self, message: str, *, secret: str, **kw: Any) -> None:
        self.secret = secret
        super().__init__(message, **kw)


class GatewayError(BridgeError):
    """API Gateway answered with an error the client does not retry (or retried to exhaustion)."""

    http_status = 502

    def __init__(
        self, message: str, *, status: int | None = None, error_type: str | None = None, **kw: Any
    ) -> None:
        self.status = status
        self.error_type = error_type
        super().__init__(message, **kw)


class PageFormatError(GatewayError):
    """A page arrived but is not what the catalog says it should be (bad JSON, wrong shape, too big)."""


class UnsafeUrlError(GatewayError):
    """A pagination link pointed away from the source's own scheme, host and port."""


class PaginationError(GatewayError):
    """Pagination would not terminate: a repeated cursor or the page cap was hit."""


class LandingError(BridgeError):
    """Blob Storage refused or failed a write, or the landed window does not match its manifest."""

    http_status = 502
    retryable = True
