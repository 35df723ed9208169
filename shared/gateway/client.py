"""The API Gateway client: one page per call, rate-limited, retried, correlated, size-capped.

Retries (tenacity) cover 429, 502/503/504 (500 when the source opts in), transport errors and
pages that fail to parse; Retry-After is honoured, otherwise exponential backoff with full
jitter. Every attempt goes back through the httpx Auth flow, so it is signed afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import tenacity

from shared.config.catalog import Source
from shared.errors import BridgeError, GatewayError, PageFormatError, UnsafeUrlError
from shared.gateway.auth import GatewayAuth
from shared.gateway.pagination import PageContext, PageRequest, Paginator
from shared.gateway.ratelimit import TokenBucket
from shared.landing.jsonl import parse_page
from shared.observability import tracing

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = {429, 502, 503, 504}
_URL_CURSORS = ("next_url", "link_header")
_REQUEST_ID_HEADERS = ("x-amzn-requestid", "x-amz-apigw-id")


@dataclass(frozen=True)
class RunContext:
    """Who is asking: carried on every request and log line so AWS-side logs can be joined."""

    pipeline_run_id: str
    instance_id: str
    pipeline_name: str | None = None

    @property
    def trace_id(self) -> str:
        """A W3C trace id derived from the run id, so all of a run's requests share one trace."""
        return hashlib.sha256(self.pipeline_run_id.encode()).hexdigest()[:32]


@dataclass
class Page:
    """One fetched page."""

    number: int
    records: list[Any]
    next_cursor: str | None
    request_id: str | None
    size: int
    attempts: int = 1
    nonstandard_json: bool = False  # the page carried NaN/Infinity


@dataclass
class _Attempts:
    count: int = 0
    reasons: list[str] = field(default_factory=list)


class GatewayClient:
    """Fetches pages of one source over a shared, pooled httpx client."""

    def __init__(
        self,
        source: Source,
        paginator: Paginator,
        http: httpx.Client,
        *,
        auth: GatewayAuth | None,
        limiter: TokenBucket,
        run: RunContext,
        window_params: dict[str, str],
    ) -> None:
        self._source = source
        self._paginator = paginator
        self._http = http
        self._auth = auth
        self._limiter = limiter
        self._run = run
        self._base_params = {**source.params, **window_params}

    def fetch(self, cursor: str | None, number: int) -> Page:
        """Fetch page `number` (1-based across the window) at `cursor`, retrying what is transient."""
        page_request = self._paginator.request(cursor)
        policy = self._source.retry
        attempts = _Attempts()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda exc: isinstance(exc, BridgeError) and exc.retryable),
            stop=tenacity.stop_after_attempt(policy.max_attempts)
            | tenacity.stop_after_delay(policy.max_elapsed_seconds),
            wait=_RetryAfterOrJitter(policy.backoff_initial_seconds, policy.backoff_max_seconds),
            before_sleep=lambda state: self._log_retry(state, number),
            reraise=True,
        )
        with tracing.page_span(self._source, number, self._run, attempts) as traced:
            page = retrying(self._attempt, page_request, cursor, number, attempts)
            page.attempts = attempts.count
            traced.fetched(page)
        return page

    def _attempt(
        self, page_request: PageRequest, cursor: str | None, number: int, attempts: _Attempts
    ) -> Page:
        attempts.count += 1
        self._limiter.acquire()
        request = self._build(page_request)
        try:
            response = self._http.send(request, auth=self._auth, stream=True)
        except httpx.TimeoutException as exc:
            raise self._error(f"timed out ({type(exc).__name__})", number, retryable=True) from None
        except httpx.TransportError as exc:
            raise self._error(f"transport error: {type(exc).__name__}", number, retryable=True) from None
        try:
            body = self._read(response, number)
        finally:
            response.close()
        request_id = _request_id(response)
        tracing.response(self._source.name, response.status_code, request_id)
        self._check_status(response, body, number, request_id)
        self._limiter.succeeded()
        try:
            document, nonstandard = parse_page(body)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise PageFormatError(
                f"page body is not valid JSON ({_first_line(exc)}; {len(body)} bytes received)",
                source=self._source.name,
                page=number,
                request_id=request_id,
                retryable=True,
            ) from None
        try:
            records, next_cursor = self._paginator.parse(
                PageContext(document, dict(response.headers), str(request.url), cursor)
            )
            if next_cursor is not None and self._source.pagination.type in _URL_CURSORS:
                self._check_origin(next_cursor)
        except PageFormatError as exc:
            exc.source, exc.page, exc.request_id = self._source.name, number, request_id
            raise
        log.info(
            "page %d of %s: %d records, request id %s, apigw id %s (run %s, instance %s)",
            number,
            self._source.name,
            len(records),
            request_id,
            response.headers.get("x-amz-apigw-id"),
            self._run.pipeline_run_id,
            self._run.instance_id,
        )
        return Page(number, records, next_cursor, request_id, len(body), nonstandard_json=nonstandard)

    def _build(self, page_request: PageRequest) -> httpx.Request:
        if page_request.url is not None:
            self._check_origin(page_request.url)
            url = page_request.url
        else:
            query = urlencode({**self._base_params, **page_request.params})
            url = f"{self._source.endpoint}?{query}" if query else self._source.endpoint
        headers = {
            **page_request.headers,
            "x-correlation-id": self._run.pipeline_run_id,
            "traceparent": f"00-{self._run.trace_id}-{secrets.token_hex(8)}-01",
            "accept": "application/json",
        }
        policy = self._source.retry
        timeout = httpx.Timeout(policy.read_timeout_seconds, connect=policy.connect_timeout_seconds)
        return self._http.build_request(self._source.method, url, headers=headers, timeout=timeout)

    def _check_origin(self, url: str) -> None:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if (parts.scheme, (parts.hostname or "").lower(), port) != self._source.origin:
            raise UnsafeUrlError(
                f"refusing to follow a next link to {parts.scheme}://{parts.netloc}: signed requests "
                f"only go to {self._source.base_url}",
                source=self._source.name,
                retryable=False,
            )

    def _read(self, response: httpx.Response, number: int) -> bytes:
        cap = self._source.pagination.max_page_bytes
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise PageFormatError(
                f"page declares {declared} bytes, over the {cap}-byte cap (pagination.max_page_bytes)",
                source=self._source.name,
                page=number,
                request_id=_request_id(response),
            )
        chunks, total = [], 0
        try:
            for chunk in response.iter_bytes():
                total += len(chunk)
                if total > cap:
                    raise PageFormatError(
                        f"page is larger than the {cap}-byte cap (pagination.max_page_bytes)",
                        source=self._source.name,
                        page=number,
                        request_id=_request_id(response),
                    )
                chunks.append(chunk)
        except httpx.TransportError as exc:
            raise self._error(
                f"connection broke mid-body: {type(exc).__name__}",
                number,
                retryable=True,
                request_id=_request_id(response),
            ) from None
        return b"".join(chunks)

    def _check_status(
        self, response: httpx.Response, body: bytes, number: int, request_id: str | None
    ) -> None:
        status = response.status_code
        if status < 300:
            return
        error_type = (response.headers.get("x-amzn-errortype") or "").split(":")[0] or None
        message = _error_message(body)
        if status == 429:
            self._limiter.throttled()
        retryable = status in _RETRYABLE_STATUS or (status == 500 and self._source.retry.retry_on_500)
        # Refused credentials reach here only after one renewal (see GatewayAuth): say what to check.
        advice = self._auth.explain(error_type) if self._auth is not None else None
        error = self._error(
            f"HTTP {status}{f' {error_type}' if error_type else ''}: {message}"
            + (f" -- {advice}" if advice else ""),
            number,
            retryable=retryable,
            request_id=request_id,
            status=status,
            error_type=error_type,
        )
        error.retry_after = _retry_after(response.headers.get("retry-after"))
        raise error

    def _error(self, message: str, number: int, **kw: Any) -> GatewayError:
        return GatewayError(message, source=self._source.name, page=number, **kw)

    def _log_retry(self, state: tenacity.RetryCallState, number: int) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "retrying page %d of %s after attempt %d in %.2fs: %s (run %s)",
            number,
            self._source.name,
            state.attempt_number,
            state.upcoming_sleep,
            exc,
            self._run.pipeline_run_id,
        )


class _RetryAfterOrJitter(tenacity.wait.wait_base):
    """Wait what the server asked for (Retry-After), else exponential backoff with full jitter."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._jitter = tenacity.wait_random_exponential(multiplier=initial, max=maximum)
        self._maximum = maximum

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        asked = getattr(exc, "retry_after", None)
        if asked is not None:
            return float(min(asked, self._maximum * 3))
        return float(self._jitter(retry_state))


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP-date relative to now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _request_id(response: httpx.Response) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        if name in response.headers:
            return response.headers[name]
    return None


def _error_message(body: bytes) -> str:
    """API Gateway's {"message": ...}, or the start of whatever came back, on one line."""
    try:
        document = json.loads(body)
        if isinstance(document, dict):
            text = str(document.get("message") or document.get("Message") or document)
        else:
            text = str(document)
    except ValueError:
        text = body[:200].decode("utf-8", "replace")
    return " ".join(text.split())[:300] or "(empty body)"
