"""AWS Signature Version 4 for API Gateway (`execute-api`), header-based.

Only a fixed set of headers is signed, so a proxy or httpx adding transport headers cannot
invalidate the signature.

The canonical request follows AWS's rules for every service but S3, as API Gateway applies
them to the request it receives: the path as sent, normalised (dot segments and empty
segments removed) and percent-encoded once more; each query name and value decoded (`+` is a
space) and strictly re-encoded, the pairs sorted by encoded name, then encoded value.
tests/shared/gateway/test_sigv4.py holds this byte-equal to botocore's SigV4Auth on drawn
requests and to AWS's published test suite.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote, unquote_to_bytes

import httpx
from botocore.credentials import ReadOnlyCredentials

SIGNED_REQUEST_HEADERS = ("host", "content-type", "x-api-key", "x-correlation-id")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_UNRESERVED = "-_.~"
# A query component made of unreserved characters only is already canonical.
_CANONICAL_COMPONENT = re.compile(r"[A-Za-z0-9\-_.~]*")


def sign(
    request: httpx.Request,
    credentials: ReadOnlyCredentials,
    region: str,
    service: str,
    *,
    now: datetime | None = None,
) -> None:
    """Add SigV4 headers to the request in place, signed at `now` (default: the clock).

    Computed here rather than through botocore's AWSRequest/SigV4Auth: building a botocore
    request per page and re-deriving the signing key cost ~0.5 ms a request (bench/RESULTS.md).
    """
    amz_date = (datetime.now(UTC) if now is None else now.astimezone(UTC)).strftime(_AMZ_DATE)
    headers = {name: request.headers[name] for name in SIGNED_REQUEST_HEADERS if name in request.headers}
    headers["x-amz-date"] = amz_date
    if credentials.token:
        headers["x-amz-security-token"] = credentials.token
    # httpx keeps the target percent-encoded and ASCII: these are the bytes API Gateway receives.
    target = request.url.raw_path.decode("ascii")
    payload_hash = hashlib.sha256(request.content).hexdigest()
    authorization = authorization_header(
        request.method, target, headers, payload_hash, credentials, region, service, amz_date
    )
    request.headers["X-Amz-Date"] = amz_date
    if credentials.token:
        request.headers["X-Amz-Security-Token"] = credentials.token
    request.headers["Authorization"] = authorization


def authorization_header(
    method: str,
    target: str,
    headers: Mapping[str, str],
    payload_hash: str,
    credentials: ReadOnlyCredentials,
    region: str,
    service: str,
    amz_date: str,
) -> str:
    """The Authorization header value for a request; `headers` are the signed ones, by
    lower-case name, including x-amz-date (and x-amz-security-token when there is one)."""
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    canonical = canonical_request(method, target, headers, payload_hash)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    string_to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{digest}"
    key = _signing_key(credentials.secret_key, amz_date[:8], region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={';'.join(sorted(headers))}, Signature={signature}"
    )


def canonical_request(method: str, target: str, headers: Mapping[str, str], payload_hash: str) -> str:
    """The canonical request for `target`, the request-target as sent (path, then `?query`)."""
    path, _, query = target.partition("?")
    names = sorted(headers)
    return "\n".join(
        (
            method,
            _canonical_path(path),
            _canonical_query(query),
            "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in names),
            ";".join(names),
            payload_hash,
        )
    )


def _canonical_path(path: str) -> str:
    # Normalising changes nothing unless there is an empty or dot segment (or no leading '/').
    if not path.startswith("/") or "//" in path or "/." in path:
        path = _remove_dot_segments(path)
    return quote(path, safe="/~")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 dot-segment removal plus dropping empty segments (`//`), as botocore does for
    every service but S3 (AWS's normalize-path cases: `//example//` signs as `/example/`)."""
    if not path:
        return "/"
    output: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if output:
                output.pop()
        elif segment and segment != ".":
            output.append(segment)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and output else ""
    return first + "/".join(output) + last


def _canonical_query(query: str) -> str:
    if not query:
        return ""
    pairs = []
    for item in query.split("&"):
        if item:
            name, _, value = item.partition("=")
            pairs.append((_recode(name), _recode(value)))
    # Sorted as (name, value) pairs: as `name=value` strings, `filter-x=b` would sort before
    # `filter=a` ('-' < '='), and API Gateway would compute another signature.
    pairs.sort()
    return "&".join([f"{name}={value}" for name, value in pairs])


def _recode(component: str) -> str:
    if _CANONICAL_COMPONENT.fullmatch(component):
        return component
    # Decoded to bytes, not text, so an escape that is not UTF-8 keeps its byte.
    return quote(unquote_to_bytes(component.replace("+", " ")), safe=_UNRESERVED)


@functools.lru_cache(maxsize=64)
def _signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """kSigning for a day, region and service: four HMACs, done once a day per credential."""
    key = hmac.new(f"AWS4{secret_key}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key
