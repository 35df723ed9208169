"""AWS Signature Version 4 for API Gateway (`execute-api`), header-based.

Only a fixed set of headers is signed, so a proxy or httpx adding transport headers cannot
invalidate the signature.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

import httpx
from botocore.credentials import ReadOnlyCredentials

SIGNED_REQUEST_HEADERS = ("host", "content-type", "x-api-key", "x-correlation-id")


def sign(request: httpx.Request, credentials: ReadOnlyCredentials, region: str, service: str) -> None:
    """Add SigV4 headers to the request in place (AWS Signature Version 4, header-based).

    Computed here rather than through botocore's AWSRequest/SigV4Auth: building a botocore
    request per page and re-deriving the signing key cost ~0.5 ms a request (bench/RESULTS.md).
    tests/shared/gateway/test_sigv4.py checks this function against botocore, byte for byte.
    """
    moment = datetime.now(UTC)
    amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    headers = {name: request.headers[name] for name in SIGNED_REQUEST_HEADERS if name in request.headers}
    headers["x-amz-date"] = amz_date
    if credentials.token:
        headers["x-amz-security-token"] = credentials.token
    names = sorted(headers)
    signed_headers = ";".join(names)
    canonical_request = "\n".join(
        (
            request.method,
            quote(_remove_dot_segments(request.url.raw_path.split(b"?", 1)[0].decode("ascii")), safe="/~"),
            _canonical_query(request.url.query.decode("ascii")),
            "".join(f"{name}:{' '.join(headers[name].split())}\n" for name in names),
            signed_headers,
            hashlib.sha256(request.content).hexdigest(),
        )
    )
    string_to_sign = (
        f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical_request.encode()).hexdigest()}"
    )
    key = _signing_key(credentials.secret_key, amz_date[:8], region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    request.headers["X-Amz-Date"] = amz_date
    if credentials.token:
        request.headers["X-Amz-Security-Token"] = credentials.token
    request.headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )


def _canonical_query(query: str) -> str:
    # Decoded, then re-encoded the way AWS canonicalises (RFC 3986 unreserved kept), whatever
    # encoding the URL was built with; sorted by key, then value.
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(sorted(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs))


def _remove_dot_segments(path: str) -> str:
    if not path:
        return "/"
    if "." not in path:
        return path
    output: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    normalized = "/".join(output)
    if not normalized.startswith("/"):
        normalized = "/" + normalized
    if path.endswith("/") and not normalized.endswith("/"):
        normalized += "/"
    return normalized


@functools.lru_cache(maxsize=64)
def _signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    """kSigning for a day, region and service: four HMACs, done once a day per credential."""
    key = hmac.new(f"AWS4{secret_key}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key
