"""AWS Signature Version 4, written from the AWS specification with hashlib/hmac only.

Deliberately independent of botocore: the gateway recomputes signatures with this module,
so a signing bug in the client stack shows up as a rejected request instead of being
mirrored by the same code on both sides.

Spec: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-signed-request.html
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

__all__ = [
    "ALGORITHM",
    "Authorization",
    "Expected",
    "SigV4FormatError",
    "canonical_headers",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "expected_signature",
    "parse_authorization",
    "sign",
    "signing_key",
    "string_to_sign",
    "uri_encode",
]

ALGORITHM = "AWS4-HMAC-SHA256"
_UNRESERVED = "-_.~"  # with A-Za-z0-9, which quote() never encodes
_COMPONENT = re.compile(r"\s*(Credential|SignedHeaders|Signature)\s*=\s*([^,\s]*)\s*")


class SigV4FormatError(ValueError):
    """The Authorization header is not a well-formed SigV4 header."""


@dataclass(frozen=True)
class Authorization:
    """The parsed ``Authorization: AWS4-HMAC-SHA256 Credential=..., ...`` header."""

    access_key_id: str
    date: str
    region: str
    service: str
    terminator: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def scope(self) -> str:
        """Credential scope: ``date/region/service/aws4_request``."""
        return f"{self.date}/{self.region}/{self.service}/{self.terminator}"


def parse_authorization(header: str) -> Authorization:
    """Parse a SigV4 Authorization header; raises :class:`SigV4FormatError`."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SigV4FormatError(f"Unsupported authorization type: {algorithm!r}")
    components: dict[str, str] = {}
    for part in rest.split(","):
        match = _COMPONENT.fullmatch(part)
        if match is None:
            raise SigV4FormatError(f"Authorization header component is malformed: {part.strip()!r}")
        components[match[1]] = match[2]
    for required in ("Credential", "SignedHeaders", "Signature"):
        if not components.get(required):
            raise SigV4FormatError(f"Authorization header requires '{required}' parameter.")
    credential = components["Credential"].split("/")
    if len(credential) != 5:
        raise SigV4FormatError(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term"
        )
    access_key_id, date, region, service, terminator = credential
    return Authorization(
        access_key_id=access_key_id,
        date=date,
        region=region,
        service=service,
        terminator=terminator,
        signed_headers=tuple(components["SignedHeaders"].split(";")),
        signature=components["Signature"],
    )


def uri_encode(value: str, *, keep_slash: bool = False) -> str:
    """Percent-encode everything except RFC 3986 unreserved characters (UTF-8, upper hex)."""
    return quote(value, safe=_UNRESERVED + ("/" if keep_slash else ""))


def canonical_uri(raw_path: str) -> str:
    """Canonical URI for every service except S3, from the path exactly as sent.

    The spec normalises the path (dot segments, repeated slashes) and URI-encodes it
    *again*: the path on the wire is already encoded, so ``%20`` becomes ``%2520``.
    """
    segments: list[str] = []
    for segment in raw_path.split("/"):
        if segment == "..":
            if segments:
                segments.pop()
        elif segment and segment != ".":
            segments.append(segment)
    trailing = "/" if raw_path.endswith("/") and segments else ""
    return uri_encode("/" + "/".join(segments) + trailing, keep_slash=True)


def canonical_query(raw_query: str) -> str:
    """Decode each ``key=value`` pair, re-encode it strictly and sort by key, then value.

    The sort is over (encoded key, encoded value) pairs, not over ``key=value`` strings:
    ``filter=a&filter-x=b`` stays in that order although ``-`` sorts before ``=``.  ``+``
    decodes to a space, as form encoding does (API Gateway's canonical string shows ``%20``
    for a ``+`` sent), so a client that signs ``+`` literally is caught.  A key without
    ``=`` has an empty value.
    """
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        pairs.append((_recode(key), _recode(value)))
    return "&".join(f"{key}={value}" for key, value in sorted(pairs))


def _recode(component: str) -> str:
    # Decoded to bytes, not text: an escape that is not UTF-8 (``%FF``) keeps its byte.
    return quote(unquote_to_bytes(component.replace("+", " ")), safe=_UNRESERVED)


def canonical_headers(headers: Sequence[tuple[str, str]], signed_headers: Sequence[str]) -> str:
    """``name:value\\n`` lines for the signed headers, values trimmed and space-collapsed.

    Repeated headers are joined with commas in arrival order.  Raises ``KeyError`` naming a
    signed header that the request does not carry.
    """
    lines = []
    for name in signed_headers:
        values = [" ".join(value.split()) for key, value in headers if key.lower() == name]
        if not values:
            raise KeyError(name)
        lines.append(f"{name}:{','.join(values)}\n")
    return "".join(lines)


def canonical_request(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """The six-line canonical request the signature covers."""
    return "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path),
            canonical_query(raw_query),
            canonical_headers(headers, signed_headers),
            ";".join(signed_headers),
            payload_hash,
        ]
    )


@dataclass(frozen=True)
class Expected:
    """The signature a request must carry, with the two texts it is computed from."""

    canonical_request: str
    string_to_sign: str
    signature: str


def expected_signature(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    payload_hash: str,
    auth: Authorization,
    amz_date: str,
    secret_access_key: str,
) -> Expected:
    """Recompute the signature over the headers ``auth`` names; raises ``KeyError`` like
    :func:`canonical_headers` when one of them is missing."""
    canonical = canonical_request(
        method=method,
        raw_path=raw_path,
        raw_query=raw_query,
        headers=headers,
        signed_headers=auth.signed_headers,
        payload_hash=payload_hash,
    )
    to_sign = string_to_sign(amz_date, auth.scope, canonical)
    key = signing_key(secret_access_key, auth.date, auth.region, auth.service)
    return Expected(canonical, to_sign, sign(key, to_sign))


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    """Algorithm, request time, credential scope and the hash of the canonical request."""
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """Derive the per-day, per-region, per-service key from the secret access key."""
    key = ("AWS4" + secret_access_key).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign(key: bytes, text: str) -> str:
    """Hex HMAC-SHA256 signature of ``text``."""
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
