"""Local AWS API Gateway: authorises like API Gateway and serves paged synthetic datasets.

Request pipeline, in the order API Gateway applies it:

1. route lookup -- unknown path or non-GET method: 403 ``MissingAuthenticationTokenException``
2. stage throttling (token bucket) -- 429 ``TooManyRequestsException``
3. the route's authorisation (SigV4 / API key / JWT)
4. window and paging parameters -- 400 on bad input
5. the next matching injected fault, if any
6. the page itself
"""

from __future__ import annotations

import base64
import json
import math
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, quote_plus

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from localcloud.credstore import CredentialStore
from localcloud.datasets import Dataset, Instant
from localcloud.errors import ApiGatewayError
from localcloud.faults import Fault, FaultPlan, TokenBucket, mangle_response, replacement_response
from localcloud.gateway_auth import (
    ApiKeys,
    AuthMode,
    IamVerifier,
    JwtSettings,
    missing_authentication_token,
    verify_jwt,
)
from localcloud.observe import RequestLog, RequestRecord
from localcloud.pagination import Page, natural_next_offset, paginator_for
from localcloud.server import LocalServer, Request, Response, json_response

__all__ = ["GatewayServer", "Route"]


@dataclass(frozen=True)
class Route:
    """A dataset published at a path with one authorisation mode."""

    dataset: Dataset
    auth: AuthMode


@dataclass
class _Exchange:
    """Facts about one request, gathered while it is served, for the request log."""

    request_id: str
    access_key_id: str | None = None
    dataset: str | None = None
    served: range | None = None
    fault: str | None = None


class GatewayServer(LocalServer):
    """API Gateway stand-in.  Shares a :class:`CredentialStore` with the local STS.

    Runtime knobs: ``latency_ms`` (added to every request), ``faults`` / :meth:`inject`,
    :meth:`set_rate_limit`, :meth:`set_api_keys` / :meth:`rotate_api_key`, ``jwt``.
    """

    def __init__(
        self,
        credentials: CredentialStore | None = None,
        *,
        region: str = "eu-west-1",
        api_keys: Iterable[str] = (),
        jwt: JwtSettings | None = None,
    ) -> None:
        super().__init__()
        self.credentials = credentials or CredentialStore()
        self.jwt = jwt
        self.latency_ms = 0.0
        self.faults = FaultPlan()
        #: Hostile mode: every refusal quotes the credentials it was sent, raw and encoded, as a
        #: careless API does ("Invalid API key '<key>'"), to prove the app scrubs them by value.
        self.echo_credentials = False
        #: Hostile mode: with period p > 0, next_token pages' tokens cycle (page n links to page
        #: n % p + 1), so a walk that only compares cursors within a part never stops.
        self.token_cycle = 0
        #: Hostile mode: the data moves under the walker; every served record carries the number
        #: of the request that served it, so two walks of one window never land the same bytes.
        self.moving_data = False
        #: Which request id headers answers carry: "rest" (REST APIs: x-amzn-RequestId and
        #: x-amz-apigw-id), "http_api" (HTTP APIs: apigw-requestid only) or "none" (a backend or
        #: proxy that sends neither).
        self.request_ids: RequestIds = "rest"
        self._served_requests = 0
        self._iam = IamVerifier(self.credentials, region)
        self._api_keys = ApiKeys(api_keys)
        self._bucket = TokenBucket()
        self._rate_limit_retry_after: int | None = None
        # Replaced wholesale on change, so request threads read a consistent mapping.
        self._routes: Mapping[str, Route] = {}
        self._log = RequestLog()
        self._lock = threading.Lock()
        self._throttled = 0

    # -- configuration -------------------------------------------------------------------

    @property
    def region(self) -> str:
        """The only region SigV4 credential scopes may name."""
        return self._iam.region

    def add_dataset(self, path: str, dataset: Dataset, auth: AuthMode = "aws_iam") -> None:
        """Publish ``dataset`` for ``GET path`` (e.g. ``/dev/orders``)."""
        with self._lock:
            self._routes = {**self._routes, path: Route(dataset, auth)}

    def dataset(self, path: str) -> Dataset:
        """The dataset published at ``path``."""
        return self._routes[path].dataset

    def set_api_keys(self, keys: Iterable[str]) -> None:
        """Make exactly ``keys`` valid ``x-api-key`` values."""
        self._api_keys.replace(keys)

    def rotate_api_key(self, old: str, new: str) -> None:
        """Invalidate ``old`` and accept ``new`` from the next request on."""
        self._api_keys.rotate(old, new)

    def configure_jwt(self, public_keys: Mapping[str, RSAPublicKey], issuer: str, audience: str) -> None:
        """Set the JWT authorizer used by ``auth="jwt"`` routes."""
        self.jwt = JwtSettings(dict(public_keys), issuer, audience)

    def set_rate_limit(self, rate: float | None, burst: int = 1, retry_after: int | None = None) -> None:
        """Throttle to ``rate`` requests/second with ``burst``; ``None`` disables.

        ``retry_after`` (seconds) adds a ``Retry-After`` header to 429 answers.
        """
        self._bucket.configure(rate, burst)
        self._rate_limit_retry_after = retry_after

    def inject(self, fault: Fault, times: int = 1) -> None:
        """Apply ``fault`` to the next ``times`` requests matching its path/page filter."""
        self.faults.add(fault, times)

    def clear_faults(self) -> None:
        """Drop all pending faults."""
        self.faults.clear()

    def reset_modes(self) -> None:
        """Back to a well-behaved gateway: no faults, no limit, no latency, no hostile mode."""
        self.clear_faults()
        self.set_rate_limit(None)
        self.latency_ms = 0.0
        self.echo_credentials = False
        self.token_cycle = 0
        self.moving_data = False
        self.request_ids = "rest"

    # -- observations --------------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every request handled since the last reset, in completion order."""
        return self._log.snapshot()

    def count(self, status: int | None = None, path: str | None = None, error_type: str | None = None) -> int:
        """Number of logged requests matching every filter given."""
        return sum(
            1
            for record in self._log.snapshot()
            if (status is None or record.status == status)
            and (path is None or record.path == path)
            and (error_type is None or record.error_type == error_type)
        )

    def served_ids(self, dataset: str) -> set[str]:
        """Ids of ``dataset``'s records delivered intact with a 200."""
        return {
            record_id
            for record in self._log.snapshot()
            if record.dataset == dataset
            for record_id in record.served_ids
        }

    def expected_ids(self, path: str, start: Instant, end: Instant) -> set[str]:
        """Ids a complete walk of ``[start, end)`` at ``path`` must yield (computed, not fetched)."""
        return self.dataset(path).ids(start, end)

    def expected_count(self, path: str, start: Instant, end: Instant) -> int:
        """How many records ``[start, end)`` at ``path`` holds, in O(1)."""
        return len(self.dataset(path).window(start, end))

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        """Block until the log holds at least `count` requests, e.g. to act at a chosen point of a run."""
        return self._log.wait_for_count(count, timeout)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is in flight, so one test's stragglers never land in the next's log."""
        return self._log.wait_idle(timeout)

    @property
    def max_concurrency_observed(self) -> int:
        """Peak number of requests handled at once since the last reset."""
        return self._log.max_in_flight

    @property
    def throttled_count(self) -> int:
        """429s produced by the rate limiter (injected 429 faults not included)."""
        with self._lock:
            return self._throttled

    def reset_observations(self) -> None:
        """Forget logged requests, the concurrency peak and the throttle count."""
        self._log.reset()
        with self._lock:
            self._throttled = 0

    # -- request handling ----------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Run the pipeline described in the module docstring and log the outcome."""
        with self._log.in_flight():
            started, wall = time.monotonic(), time.time()
            if self.latency_ms:
                time.sleep(self.latency_ms / 1000)
            exchange = _Exchange(request_id=str(uuid.uuid4()))
            try:
                response = self._serve(request, exchange)
            except ApiGatewayError as error:
                response = (_echoing(error, request) if self.echo_credentials else error).to_response()
            response.headers += _id_headers(self.request_ids, exchange.request_id)
            self._log.append(_record(request, response, exchange, started, wall))
            return response

    def _link_base(self, request: Request) -> str:
        # Links are built from the Host the client used, as API Gateway does; this also keeps
        # a request that raced a stop() from failing on the (released) port.
        host = request.header("host")
        return f"http://{host}" if host else self.url

    def _serve(self, request: Request, exchange: _Exchange) -> Response:
        route = self._routes.get(request.path)
        if route is None or request.method != "GET":
            raise missing_authentication_token()
        if not self._bucket.try_acquire():
            with self._lock:
                self._throttled += 1
            retry_after = self._rate_limit_retry_after
            headers = [] if retry_after is None else [("Retry-After", str(retry_after))]
            raise ApiGatewayError(429, "TooManyRequestsException", "Too Many Requests", headers)
        exchange.access_key_id = self._authorize(route.auth, request)
        exchange.dataset = route.dataset.name
        return self._serve_page(request, route.dataset, exchange)

    def _authorize(self, mode: AuthMode, request: Request) -> str | None:
        """Apply the route's auth mode; returns the SigV4 access key id when there is one."""
        access_key_id = None
        if mode in ("aws_iam", "aws_iam+api_key"):
            access_key_id = self._iam.verify(request).access_key_id
        if mode in ("api_key", "aws_iam+api_key"):
            self._api_keys.verify(request)
        if mode == "jwt":
            verify_jwt(request, self.jwt)
        return access_key_id

    def _serve_page(self, request: Request, dataset: Dataset, exchange: _Exchange) -> Response:
        params = request.params()
        paginator = paginator_for(dataset.pagination)
        try:
            window = dataset.parse_window(params)
            page_request = paginator.parse(params, dataset, window)
        except ValueError as error:
            raise ApiGatewayError(400, "BadRequestException", str(error)) from None

        fault = self.faults.take(request.path, page_request.number)
        next_offset: int | None = None
        if fault is not None:
            exchange.fault = fault.kind
            if fault.kind == "delay":
                time.sleep(fault.delay_ms / 1000)
            replacement = replacement_response(fault)
            if replacement is not None:
                return replacement
            if fault.kind == "loop_cursor":
                page_request, next_offset = paginator.loop(page_request)

        indices = window[page_request.offset : page_request.offset + page_request.limit]
        items = dataset.records(indices)
        if self.moving_data:
            with self._lock:
                self._served_requests += 1
                revision = self._served_requests
            for item in items:
                item["revision"] = revision
        if self.token_cycle > 0 and next_offset is None:
            next_offset = (page_request.number % self.token_cycle) * page_request.limit
        if next_offset is None:
            next_offset = natural_next_offset(
                page_request, len(items), len(window), dataset.trailing_empty_page
            )
        if fault is not None and fault.kind == "huge":
            _pad(items, fault.size_bytes)
        if fault is not None and fault.kind == "empty":  # after the continuation: it moves on
            items, indices = [], indices[:0]
        rendered = paginator.render(
            Page(
                dataset,
                window,
                page_request,
                items,
                next_offset,
                self._link_base(request) + request.path,
                params,
            )
        )
        response = json_response(200, rendered.payload, rendered.headers)
        damaged = None if fault is None else mangle_response(fault, response)
        if damaged is not None:
            return damaged
        exchange.served = indices
        return response


def _echoing(error: ApiGatewayError, request: Request) -> ApiGatewayError:
    """The error, its message quoting every credential header in the shapes services echo them:
    raw in prose (no `label: value` a pattern would catch), URL-encoded, base64 and JSON-escaped."""
    quoted = []
    for name in ("x-api-key", "X-Amz-Security-Token", "Authorization"):
        value = request.header(name)
        if value is None:
            continue
        token = value.rsplit(" ", 1)[-1] if name == "Authorization" else value
        quoted.append(
            f"the {name} value '{value}' ({quote(value, safe='')}, {quote_plus(token)}, "
            f"{base64.b64encode(token.encode()).decode()}, "
            f"{base64.urlsafe_b64encode(token.encode()).decode().rstrip('=')}, {json.dumps(token)})"
        )
    if not quoted:
        return error
    message = f"{error.message}: Invalid credentials; " + "; ".join(quoted)
    return ApiGatewayError(error.status, error.error_type, message, error.headers)


def _pad(items: list[dict[str, Any]], size_bytes: int) -> None:
    if items:
        per_item = math.ceil(size_bytes / len(items))
        for item in items:
            item["padding"] = "x" * per_item


RequestIds = Literal["rest", "http_api", "none"]


def _id_headers(kind: RequestIds, request_id: str) -> list[tuple[str, str]]:
    if kind == "rest":
        return [("x-amzn-RequestId", request_id), ("x-amz-apigw-id", _apigw_id())]
    if kind == "http_api":
        return [("apigw-requestid", _apigw_id())]
    return []


def _apigw_id() -> str:
    # Shaped like the real header: 15 base64 characters and a trailing "=".
    return base64.b64encode(secrets.token_bytes(12)).decode()[:15] + "="


def _record(
    request: Request, response: Response, exchange: _Exchange, started: float, wall: float
) -> RequestRecord:
    return RequestRecord(
        monotonic=started,
        wall_time=wall,
        method=request.method,
        path=request.path,
        query=request.params(),
        status=response.status,
        request_id=exchange.request_id,
        access_key_id=exchange.access_key_id,
        correlation_id=request.header("x-correlation-id"),
        traceparent=request.header("traceparent"),
        user_agent=request.header("user-agent"),
        api_key_present=request.header("x-api-key") is not None,
        dataset=exchange.dataset,
        served=exchange.served,
        error_type=response.header("x-amzn-ErrorType"),
        fault=exchange.fault,
    )
