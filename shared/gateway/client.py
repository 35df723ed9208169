"""The API Gateway client: a window's pages, each rate-limited, retried, correlated and size-capped.

`pages()` walks from a cursor with the loop guards (shared.gateway.walk); `fetch()` gets one page.

Retries (tenacity) cover 429, 502/503/504 (500 when the source opts in), transport errors and
pages that fail to parse; Retry-After is honoured, otherwise exponential backoff with full
jitter. Every attempt goes back through the httpx Auth flow, so it is signed afresh.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import tenacity

from shared.config.catalog import RetryPolicy, Source
from shared.errors import GatewayError, PageFormatError, UnsafeUrlError, first_line
from shared.gateway.auth import GatewayAuth
from shared.gateway.decoding import RefusedEncoding, decoder_for, identity
from shared.gateway.pages import Page, PagePolicyError, check_records, read_page
from shared.gateway.pagination import MalformedPage, PageContext, PageRequest, Paginator
from shared.gateway.ratelimit import Permit, TokenBucket
from shared.gateway.retry import RetryAfterOrJitter, parse_retry_after, retryable
from shared.gateway.send import send, with_query
from shared.gateway.walk import PageWalk
from shared.observability import otel, tracing
from shared.observability.redaction import holds_secret, redact

log = logging.getLogger(__name__)

_RETRYABLE_STATUS = {429, 502, 503, 504}
_URL_CURSORS = ("next_url", "link_header")
# REST APIs send both x-amzn-RequestId and x-amz-apigw-id; HTTP APIs only apigw-requestid.
_REQUEST_ID_HEADERS = ("x-amzn-requestid", "apigw-requestid", "x-amz-apigw-id")


@dataclass(frozen=True)
class RunContext:
    """Who is asking: carried on every request and log line so AWS-side logs can be joined."""

    pipeline_run_id: str
    instance_id: str
    pipeline_name: str | None = None

    @property
    def trace_id(self) -> str:
        """The run's W3C trace id (hex), so all of a run's requests share one trace."""
        return f"{otel.trace_id_for(self.pipeline_run_id):032x}"


@dataclass
class _Attempts:
    count: int = 0
    reasons: list[str] = field(default_factory=list)
    #: When retry.max_elapsed_seconds runs out (monotonic): no attempt runs past it.
    budget_end: float = math.inf


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
        self.source = self._source = source
        self._paginator = paginator
        self._http = http
        self._auth = auth
        self._limiter = limiter
        self._run = run
        self._base_params = {**source.params, **window_params}
        self._base_query = urlencode(self._base_params)
        self._endpoint = httpx.URL(source.endpoint)
        self._retrying = self._retrying_for(source.retry)
        self._trace_id = run.trace_id
        # Built once: merging into httpx.Headers per page normalised every header three times.
        # `connection: keep-alive` is HTTP/1.1's default, so it is not sent.
        self._client_headers = {name: value for name, value in http.headers.items() if name != "connection"}
        self._our_headers = {"x-correlation-id": run.pipeline_run_id, "accept": "application/json"}
        self._wants_url = source.pagination.type in _URL_CURSORS
        # JSON Lines lands the records' texts as received; Parquet builds columns from the records.
        self._wants_texts = source.output.format == "jsonl.gz"

    def pages(
        self,
        cursor: str | None,
        *,
        after_page: int = 0,
        max_pages: int,
        enough: Callable[[], bool] = lambda: False,
        trail: dict[str, Any] | None = None,
    ) -> PageWalk:
        """The pages from `cursor` on (page numbers continue after `after_page`), with loop guards;
        `trail` is the cycle detector's state an earlier part's walk left (PageWalk.trail)."""
        return PageWalk(self, cursor, after_page=after_page, max_pages=max_pages, enough=enough, trail=trail)

    def fetch(self, cursor: str | None, number: int) -> Page:
        """Fetch page `number` (1-based across the window) at `cursor`, retrying what is transient."""
        page_request = self._paginator.request(cursor)
        attempts = _Attempts(budget_end=time.monotonic() + self._source.retry.max_elapsed_seconds)
        with tracing.page_span(self._source, number, self._run, attempts) as traced:
            # The first attempt outside tenacity: its per-call machinery (a Future, a Condition)
            # was a tenth of a page's own CPU, and nearly every page succeeds at once.
            try:
                page = self._attempt(page_request, cursor, number, attempts)
            except Exception as failure:
                if not retryable(failure):
                    raise
                again = _replaying(failure, self._attempt)
                page = self._retrying(again, page_request, cursor, number, attempts)
            page.attempts = attempts.count
            traced.fetched(page)
        return page

    def _retrying_for(self, policy: RetryPolicy) -> tenacity.Retrying:
        """The retry policy for every page: attempts and the page's time budget (its _Attempts)."""
        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(retryable),
            stop=tenacity.stop_after_attempt(policy.max_attempts) | _BudgetSpent(),
            wait=RetryAfterOrJitter(policy.backoff_initial_seconds, policy.backoff_max_seconds),
            before_sleep=self._log_retry,
            reraise=True,
        )

    def _attempt(
        self, page_request: PageRequest, cursor: str | None, number: int, attempts: _Attempts
    ) -> Page:
        attempts.count += 1
        permit = self._limiter.acquire()
        deadline = self._deadline(attempts)
        request = self._build(page_request, deadline)
        try:
            response = send(self._http, request, self._auth)
        except httpx.TimeoutException as exc:
            what = f"{type(exc).__name__} at {self._source.base_url}{_CHECK}"
            raise self._timed_out(what, number, attempts, None) from None
        except httpx.TransportError as exc:
            what = f"transport error: {type(exc).__name__} at {self._source.base_url}{_CHECK}"
            raise self._error(what, number, retryable=True) from None
        # Read once, names lower-cased: httpx.Headers decodes and scans every header per lookup.
        headers = dict(response.headers.items())
        request_id = _request_id(headers)
        try:
            body = self._read(response, headers, number, deadline, attempts, request_id)
        finally:
            response.close()
        tracing.response(self._source.name, response.status_code, request_id)
        self._limiter.observe(headers)
        self._check_status(response.status_code, headers, body, number, request_id, permit)
        self._limiter.succeeded()
        if response.status_code == 204:  # No Content: an empty last page (shared.gateway.pages)
            log.info("page %d of %s: HTTP 204, the window is complete", number, self._source.name)
            return Page(number, [], None, request_id, 0)
        try:
            read = read_page(body, self._source.pagination.records_path, with_texts=self._wants_texts)
        except PagePolicyError as exc:
            raise self._bad_page(str(exc), number, request_id) from None
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise self._bad_page(
                f"page body is not valid JSON ({first_line(exc)}; {len(body)} bytes received)",
                number,
                request_id,
                retryable=True,
            ) from None
        except ValueError as exc:  # Python's int max_str_digits guard: the number cannot land exactly
            raise self._bad_page(
                f"page holds an integer too long to convert exactly ({first_line(exc).split(';')[0]})",
                number,
                request_id,
            ) from None
        try:
            records, next_cursor = self._paginator.parse(
                # The Link header and the URL only for the strategies that read them.
                PageContext(
                    read.document,
                    _links(response) if self._wants_url else {},
                    str(request.url) if self._wants_url else "",
                    cursor,
                )
            )
            check_records(records)
        except (MalformedPage, PagePolicyError) as exc:
            raise self._bad_page(str(exc), number, request_id) from None
        if next_cursor is not None and self._source.pagination.type in _URL_CURSORS:
            self._check_origin(next_cursor, number, request_id)
        if next_cursor is not None and holds_secret(next_cursor):
            # A cursor is kept as it is (checkpoints, durable history): redacted, it would lead nowhere.
            raise self._bad_page(
                "the API's next cursor holds a secret this process sends (a key or token); refusing "
                "to keep it in checkpoints and durable history",
                number,
                request_id,
            )
        log.info(
            "page %d of %s: %d records, request id %s, apigw id %s (run %s, instance %s)",
            number,
            self._source.name,
            len(records),
            request_id,
            headers.get("x-amz-apigw-id"),
            self._run.pipeline_run_id,
            self._run.instance_id,
        )
        # The records' texts only if the strategy returned the very list they were read from.
        texts = read.texts if read.records is records else None
        return Page(number, records, next_cursor, request_id, len(body), texts=texts)

    def _deadline(self, attempts: _Attempts) -> float:
        """When this attempt must be over: connect + read timeout in all (so a drip of one byte
        a second cannot stretch it), and never past the page's max_elapsed_seconds budget."""
        policy = self._source.retry
        whole = policy.connect_timeout_seconds + policy.read_timeout_seconds
        return min(time.monotonic() + whole, attempts.budget_end)

    def _timed_out(self, what: str, number: int, attempts: _Attempts, request_id: str | None) -> GatewayError:
        policy = self._source.retry
        if time.monotonic() >= attempts.budget_end:
            return self._error(
                f"timed out ({what}): no complete page within {policy.max_elapsed_seconds:g} s "
                "(retry.max_elapsed_seconds)",
                number,
                retryable=False,
                request_id=request_id,
            )
        return self._error(
            f"timed out ({what}): the attempt took over {policy.connect_timeout_seconds:g} + "
            f"{policy.read_timeout_seconds:g} s (retry.connect_timeout_seconds + read_timeout_seconds)",
            number,
            retryable=True,
            request_id=request_id,
        )

    def _build(self, page_request: PageRequest, deadline: float = math.inf) -> httpx.Request:
        url: httpx.URL | str
        if page_request.url is not None:
            self._check_origin(page_request.url)
            url = page_request.url
        else:
            query = self._query(page_request.params)
            url = with_query(self._endpoint, query) if query else self._endpoint
        # The client's own (user-agent, accept-encoding), the paginator's, ours: later wins.
        headers = {
            **self._client_headers,
            **{name.lower(): value for name, value in page_request.headers.items()},
            **self._our_headers,
            # A fresh span id per request: unique, not secret, so `random` (as OpenTelemetry's own
            # id generator) rather than a system call per page; never the all-zero invalid id.
            "traceparent": f"00-{self._trace_id}-{random.getrandbits(64) or 1:016x}-01",
        }
        policy = self._source.retry
        left = max(0.001, deadline - time.monotonic())
        read, connect = min(policy.read_timeout_seconds, left), min(policy.connect_timeout_seconds, left)
        # httpx.Timeout(read, connect=connect).as_dict(), without building one per page.
        timeout = {"connect": connect, "read": read, "write": read, "pool": read}
        return httpx.Request(self._source.method, url, headers=headers, extensions={"timeout": timeout})

    def _query(self, params: dict[str, str]) -> str:
        """The source's and the window's params, then the page's (a page's value wins)."""
        if not params:
            return self._base_query
        if not self._base_params.keys() & params.keys():
            page = urlencode(params)
            return f"{self._base_query}&{page}" if self._base_query else page
        return urlencode({**self._base_params, **params})

    def _check_origin(self, url: str, number: int | None = None, request_id: str | None = None) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:  # a port that is not a number in 0-65535: no origin of ours
            port = -1
        if (parts.scheme, (parts.hostname or "").lower(), port) != self._source.origin:
            # netloc without userinfo: a link's user:password is never repeated.
            where = parts.netloc.rpartition("@")[2]
            raise UnsafeUrlError(
                f"refusing to follow a next link to {parts.scheme}://{where}: signed requests "
                f"only go to {self._source.base_url}",
                source=self._source.name,
                page=number,
                request_id=request_id,
            )

    def _read(
        self,
        response: httpx.Response,
        headers: dict[str, str],
        number: int,
        deadline: float,
        attempts: _Attempts,
        request_id: str | None,
    ) -> bytes:
        """The decoded body, refused as soon as it passes the page cap or the attempt's deadline.

        Decoded here rather than by httpx, which decodes each raw chunk whole (and any stack of
        codings): a 5 KB `gzip, gzip` bomb would be gigabytes before the cap is counted.
        """
        cap = self._source.pagination.max_page_bytes

        def too_big(what: str) -> PageFormatError:
            return self._bad_page(
                f"page {what} the {cap}-byte cap (pagination.max_page_bytes)", number, request_id
            )

        declared = headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise too_big(f"declares {declared} bytes, over")
        encoding = headers.get("content-encoding", "")
        decoder = self._decoder(encoding, number, request_id)
        # A response built in memory (httpx.MockTransport with bytes) arrives read and decoded.
        raw_chunks = [response.content] if response.is_stream_consumed else response.iter_raw()
        if response.is_stream_consumed:
            decoder = identity
        chunks: list[bytes] = []
        total = 0
        try:
            for raw in raw_chunks:
                if time.monotonic() > deadline:
                    raise self._timed_out("body still arriving", number, attempts, request_id)
                for piece in decoder(raw):
                    total += len(piece)
                    if total > cap:
                        raise too_big("is larger than" if decoder is identity else "decodes to more than")
                    chunks.append(piece)
        except httpx.TimeoutException as exc:
            raise self._timed_out(type(exc).__name__, number, attempts, request_id) from None
        except httpx.TransportError as exc:
            raise self._error(
                f"connection broke mid-body: {type(exc).__name__}",
                number,
                retryable=True,
                request_id=request_id,
            ) from None
        except zlib.error as exc:
            raise self._bad_page(
                f"page body is not valid {encoding} ({exc})",
                number,
                request_id,
                retryable=True,
            ) from None
        return b"".join(chunks)

    def _decoder(
        self, encoding: str, number: int, request_id: str | None
    ) -> Callable[[bytes], Iterator[bytes]]:
        try:
            return decoder_for(encoding)
        except RefusedEncoding as exc:
            raise self._bad_page(str(exc), number, request_id) from None

    def _check_status(
        self,
        status: int,
        headers: dict[str, str],
        body: bytes,
        number: int,
        request_id: str | None,
        permit: Permit,
    ) -> None:
        if status < 300:
            return
        error_type = (headers.get("x-amzn-errortype") or "").split(":")[0] or None
        message = _error_message(body)
        retry_after = parse_retry_after(headers.get("retry-after"))
        if status == 429:
            # The permit lets the bucket tell a 429 for a request sent before its last cut.
            self._limiter.throttled(permit, retry_after)
        retryable = status in _RETRYABLE_STATUS or (status == 500 and self._source.retry.retry_on_500)
        # Refused credentials reach here only after one renewal (see GatewayAuth): say what to check.
        advice = self._auth.explain(error_type) if self._auth is not None else None
        raise self._error(
            f"HTTP {status}{f' {error_type}' if error_type else ''}: {message}"
            + (f" -- {advice}" if advice else ""),
            number,
            retryable=retryable,
            request_id=request_id,
            status=status,
            error_type=error_type,
            retry_after=retry_after,
        )

    def _error(self, message: str, number: int, **kw: Any) -> GatewayError:
        return GatewayError(message, source=self._source.name, page=number, **kw)

    def _bad_page(
        self, message: str, number: int, request_id: str | None, *, retryable: bool = False
    ) -> PageFormatError:
        """A page that is not what the catalog says, named by source, page and request id."""
        return PageFormatError(
            message, source=self._source.name, page=number, request_id=request_id, retryable=retryable
        )

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "retrying page %d of %s after attempt %d in %.2fs: %s (run %s)",
            state.args[2],  # _attempt's `number`
            self._source.name,
            state.attempt_number,
            state.upcoming_sleep,
            exc,
            self._run.pipeline_run_id,
        )


class _BudgetSpent(tenacity.stop.stop_base):
    """The page's retry.max_elapsed_seconds, counted from before its first attempt, would be over
    before the next attempt starts: tenacity picks the wait first, so a Retry-After (up to three
    times backoff_max_seconds) is not slept past the budget only to fail as a timeout; the page
    fails now, with the answer that asked for the wait."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        attempts: _Attempts = retry_state.args[3]  # _attempt's `attempts`
        return time.monotonic() + retry_state.upcoming_sleep >= attempts.budget_end


def _replaying(failure: Exception, attempt: Callable[..., Page]) -> Callable[..., Page]:
    """`attempt`, whose first call raises `failure`: the attempt already made outside tenacity."""
    pending = [failure]

    def call(*args: Any) -> Page:
        if pending:
            raise pending.pop()
        return attempt(*args)

    return call


def _links(response: httpx.Response) -> dict[str, dict[str, str]]:
    """The Link header, parsed by httpx (RFC 8288), keyed by rel."""
    return {str(key): link for key, link in response.links.items()}


# Where to look when the API cannot be reached at all: the catalog names its address.
_CHECK = "; check the source's base_url in the catalog and outbound network access"


def _request_id(headers: Mapping[str, str]) -> str | None:
    """API Gateway's request id from lower-cased response headers, redacted and at most 128
    characters: the server writes it, and it goes into errors, durable history and blob metadata."""
    for name in _REQUEST_ID_HEADERS:
        if name in headers:
            return redact(headers[name])[:_MAX_REQUEST_ID]
    return None


_MAX_REQUEST_ID = 128  # API Gateway's are 36 (x-amzn-RequestId) and 16 (x-amz-apigw-id)


def _error_message(body: bytes) -> str:
    """API Gateway's {"message": ...}, or the start of whatever came back, on one line."""
    try:
        document = json.loads(body)
        if isinstance(document, dict):
            text = str(document.get("message") or document.get("Message") or document)
        else:
            text = str(document)
    except ValueError:
        text = body[:_ERROR_TEXT_BYTES].decode("utf-8", "replace")
        if len(body) > _ERROR_TEXT_BYTES:
            # The cut may split the last word, and a secret's start is no longer one the scrubber
            # knows; whitespace is collapsed below, so that word could come first.
            text = _LAST_WORD.sub("", text)
    # Redacted before it is cut, for the same reason.
    return redact(" ".join(text.split()))[:300] or "(empty body)"


_ERROR_TEXT_BYTES = 64 * 1024
_LAST_WORD = re.compile(r"\S*\Z")
