"""The independent SigV4 implementation matches AWS's published vectors and botocore's signer."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

import botocore.auth
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from localcloud import CredentialStore, sigv4
from localcloud.errors import ApiGatewayError
from localcloud.gateway_auth import IamVerifier
from localcloud.server import Request

_EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # AWS documentation's example key
_EXAMPLE_DATE = "20150830T123600Z"
_EMPTY_HASH = hashlib.sha256(b"").hexdigest()


def _example_signature(
    service: str, raw_path: str, raw_query: str, headers: Sequence[tuple[str, str]]
) -> str:
    signed = sorted(name.lower() for name, _ in headers)
    canonical = sigv4.canonical_request(
        method="GET",
        raw_path=raw_path,
        raw_query=raw_query,
        headers=headers,
        signed_headers=signed,
        payload_hash=_EMPTY_HASH,
    )
    key = sigv4.signing_key(_EXAMPLE_SECRET, _EXAMPLE_DATE[:8], "us-east-1", service)
    return sigv4.sign(
        key, sigv4.string_to_sign(_EXAMPLE_DATE, f"20150830/us-east-1/{service}/aws4_request", canonical)
    )


def test_iam_list_users_example_from_the_aws_documentation() -> None:
    headers = [
        ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
        ("Host", "iam.amazonaws.com"),
        ("X-Amz-Date", _EXAMPLE_DATE),
    ]
    canonical = sigv4.canonical_request(
        method="GET",
        raw_path="/",
        raw_query="Version=2010-05-08&Action=ListUsers",
        headers=headers,
        signed_headers=["content-type", "host", "x-amz-date"],
        payload_hash=_EMPTY_HASH,
    )

    assert hashlib.sha256(canonical.encode()).hexdigest() == (
        "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
    )
    assert sigv4.signing_key(_EXAMPLE_SECRET, "20150830", "us-east-1", "iam").hex() == (
        "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    )
    assert _example_signature("iam", "/", "Version=2010-05-08&Action=ListUsers", headers) == (
        "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    )


@pytest.mark.parametrize(
    ("raw_query", "signature"),
    [
        ("", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ("Param2=value2&Param1=value1", "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ],
    ids=["get-vanilla", "get-vanilla-query-order-key-case"],
)
def test_aws_signature_test_suite(raw_query: str, signature: str) -> None:
    headers = [("Host", "example.amazonaws.com"), ("X-Amz-Date", _EXAMPLE_DATE)]

    assert _example_signature("service", "/", raw_query, headers) == signature


def _botocore_signed(
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    url: str,
    params: Sequence[tuple[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> tuple[Request, sigv4.Authorization, str]:
    """Sign with botocore at a fixed time and return the request as it goes on the wire."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: dt.datetime(2024, 5, 6, 7, 8, 9))
    request = AWSRequest(
        method=method, url=url, params=list(params or []), headers=dict(headers or {}), data=body
    )
    botocore.auth.SigV4Auth(Credentials("AKIDEXAMPLE", _EXAMPLE_SECRET), "execute-api", "eu-west-1").add_auth(
        request
    )
    prepared = request.prepare()
    parts = urlsplit(prepared.url)
    wire_headers = [("Host", parts.netloc), *prepared.headers.items()]
    wire = Request(method, parts.path, parts.query, tuple(wire_headers), prepared.body or b"")
    auth = sigv4.parse_authorization(prepared.headers["Authorization"])
    return wire, auth, prepared.headers["X-Amz-Date"]


def _our_signature(wire: Request, auth: sigv4.Authorization, amz_date: str) -> str:
    canonical = sigv4.canonical_request(
        method=wire.method,
        raw_path=wire.path,
        raw_query=wire.query,
        headers=wire.headers,
        signed_headers=auth.signed_headers,
        payload_hash=hashlib.sha256(wire.body).hexdigest(),
    )
    key = sigv4.signing_key(_EXAMPLE_SECRET, auth.date, auth.region, auth.service)
    return sigv4.sign(key, sigv4.string_to_sign(amz_date, auth.scope, canonical))


@pytest.mark.parametrize(
    ("method", "url", "params", "headers", "body"),
    [
        (
            "GET",
            "https://api.example.com/dev/orders",
            [("from", "2024-01-01T00:00:00Z"), ("limit", "5")],
            {},
            b"",
        ),
        (
            "GET",
            "https://api.example.com/dev/orders",
            [("q", "a b/c:d?e&f=g+h"), ("é", "ü"), ("empty", "")],
            {},
            b"",
        ),
        ("GET", "https://api.example.com/dev/orders", [("a", "2"), ("a", "1"), ("B", "0")], {}, b""),
        ("GET", "https://api.example.com/dev/a%20b/c~d", [], {}, b""),
        ("GET", "https://api.example.com/dev/./x/../orders/", [], {}, b""),
        ("GET", "http://127.0.0.1:8080/dev/orders", [], {"X-Custom": "  spaced    out  value "}, b""),
        ("POST", "https://api.example.com/dev/orders", [], {"Content-Type": "application/json"}, b'{"a": 1}'),
    ],
    ids=[
        "plain",
        "reserved-and-unicode",
        "repeated-keys",
        "encoded-path",
        "dot-segments",
        "whitespace",
        "body",
    ],
)
def test_matches_botocore_on_tricky_requests(
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    url: str,
    params: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
) -> None:
    wire, auth, amz_date = _botocore_signed(monkeypatch, method, url, params, headers, body)

    assert _our_signature(wire, auth, amz_date) == auth.signature


def test_a_single_changed_byte_changes_the_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    wire, auth, amz_date = _botocore_signed(
        monkeypatch, "GET", "https://api.example.com/dev/orders", [("limit", "5")]
    )
    tampered = Request(wire.method, wire.path, "limit=6", wire.headers, wire.body)

    assert _our_signature(tampered, auth, amz_date) != auth.signature


def test_canonical_query_decodes_then_strictly_re_encodes_and_sorts() -> None:
    assert sigv4.canonical_query("b=2&a=z&a=y&c=x+y&d=%7e&e&f=%3a") == "a=y&a=z&b=2&c=x%20y&d=~&e=&f=%3A"


def test_canonical_uri_encodes_the_wire_path_once_more() -> None:
    assert sigv4.canonical_uri("/dev/a%20b") == "/dev/a%2520b"
    assert sigv4.canonical_uri("") == "/"
    assert sigv4.canonical_uri("/a//b/../c/") == "/a/c/"


def test_canonical_headers_trim_collapse_and_join_repeats() -> None:
    headers = [("Host", "h"), ("X-A", "  1   2 "), ("x-a", "3")]

    assert sigv4.canonical_headers(headers, ["host", "x-a"]) == "host:h\nx-a:1 2,3\n"
    with pytest.raises(KeyError):
        sigv4.canonical_headers(headers, ["host", "x-missing"])


@pytest.mark.parametrize(
    "header",
    [
        "AWS4-HMAC-SHA1 Credential=a/b/c/d/e, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=a/b/c/d, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, Signature=00",
        "AWS4-HMAC-SHA256 Credential=a/b/c/d/e; SignedHeaders=host; Signature=00",
    ],
    ids=["algorithm", "no-credential", "short-scope", "no-signed-headers", "bad-separator"],
)
def test_malformed_authorization_headers_are_rejected(header: str) -> None:
    with pytest.raises(sigv4.SigV4FormatError):
        sigv4.parse_authorization(header)


def test_verifier_rejects_a_payload_hash_that_does_not_match_the_body() -> None:
    store = CredentialStore()
    issued = store.issue("arn:aws:iam::123456789012:role/r", "s", 900)
    request = AWSRequest(
        method="POST",
        url="http://127.0.0.1:1/dev/orders",
        data=b"real body",
        headers={"X-Amz-Content-SHA256": hashlib.sha256(b"other body").hexdigest()},
    )
    credentials = Credentials(issued.access_key_id, issued.secret_access_key, issued.session_token)
    botocore.auth.SigV4Auth(credentials, "execute-api", "eu-west-1").add_auth(request)
    prepared = request.prepare()
    wire = Request(
        "POST", "/dev/orders", "", (("Host", "127.0.0.1:1"), *prepared.headers.items()), b"real body"
    )

    with pytest.raises(ApiGatewayError) as raised:
        IamVerifier(store, "eu-west-1").verify(wire)

    assert raised.value.error_type == "InvalidSignatureException"
    assert "x-amz-content-sha256" in raised.value.message
