"""The local verifier canonicalises as AWS does, so the stand-in refuses what API Gateway refuses.

Checked against AWS's own published SigV4 test suite (every case: the verifier, unlike the
app's signer, recomputes over whatever headers a request signs), against botocore on drawn
requests, and on the query orders that sorting whole ``k=v`` strings gets wrong.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import httpx
import pytest
import sigv4_cases as cases
from botocore.credentials import ReadOnlyCredentials

from localcloud import CredentialStore, IssuedCredentials, sigv4
from localcloud.errors import ApiGatewayError
from localcloud.gateway_auth import IamVerifier
from localcloud.server import Request

REGION = "eu-west-1"


@pytest.mark.parametrize("name", cases.suite_case_names())
def test_aws_suite_case(name: str) -> None:
    case = cases.suite_case(name)
    # The .sreq of get-vanilla-with-session-token carries get-vanilla's signature (a slip in
    # the suite); its .authz, from which the .sts and signature follow, is the reference.
    signed = replace(
        case.signed,
        headers=tuple((k, case.authorization if k == "Authorization" else v) for k, v in case.signed.headers),
    )
    auth = sigv4.parse_authorization(case.authorization)
    amz_date = signed.header("X-Amz-Date")
    assert amz_date is not None

    expected = sigv4.expected_signature(
        method=signed.method,
        raw_path=signed.path,
        raw_query=signed.query,
        headers=signed.headers,
        payload_hash=hashlib.sha256(signed.body).hexdigest(),
        auth=auth,
        amz_date=amz_date,
        secret_access_key=cases.SUITE_SECRET,
    )

    assert expected.canonical_request == case.canonical_request
    assert expected.string_to_sign == case.string_to_sign
    assert expected.signature == auth.signature


@dataclass(frozen=True)
class Issued:
    verifier: IamVerifier
    issued: IssuedCredentials

    @property
    def credentials(self) -> ReadOnlyCredentials:
        return ReadOnlyCredentials(
            self.issued.access_key_id, self.issued.secret_access_key, self.issued.session_token
        )


@pytest.fixture(scope="module")
def issued() -> Issued:
    store = CredentialStore()
    return Issued(IamVerifier(store, REGION), store.issue("arn:aws:iam::123456789012:role/r", "suite", 3600))


def _wire(request: httpx.Request, auth_headers: dict[str, str]) -> Request:
    """The request as the gateway's HTTP server hands it to the verifier."""
    path, _, query = request.url.raw_path.decode("ascii").partition("?")
    headers = (*request.headers.multi_items(), *auth_headers.items())
    return Request(request.method, path, query, tuple(headers), request.content)


@cases.on_drawn_requests
def test_accepts_every_request_botocore_signs(issued: Issued, drawn: cases.Drawn) -> None:
    request = cases.noted_request(drawn)
    signed = cases.botocore_signed(
        request, issued.credentials, REGION, datetime.now(UTC), signed_headers=("host", *drawn.headers)
    )

    assert issued.verifier.verify(_wire(request, signed)) == issued.issued


def _text_sorted(canonical_query: str) -> str:
    """The app's old mistake: whole ``k=v`` strings sorted as text."""
    return "&".join(sorted(canonical_query.split("&")))


@pytest.mark.parametrize(
    "query",
    [
        "filter=a&filter-x=b",
        "limit=100&limit2=5",
        "filter=a&filter%5Bx%5D=c",
        "filter=a&filter.x=c",
        "Param-3=Value3&Param=Value2",
    ],
)
def test_refuses_a_signature_over_k_v_strings_sorted_as_text(issued: Issued, query: str) -> None:
    request = httpx.Request("GET", f"https://api.example.com/dev/orders?{query}")
    signed = cases.botocore_signed(
        request, issued.credentials, REGION, datetime.now(UTC), signed_headers=("host",)
    )
    issued.verifier.verify(_wire(request, signed))  # botocore's order is accepted
    auth = sigv4.parse_authorization(signed["Authorization"])
    right = sigv4.expected_signature(
        method="GET",
        raw_path="/dev/orders",
        raw_query=query,
        headers=_wire(request, signed).headers,
        payload_hash=hashlib.sha256(b"").hexdigest(),
        auth=auth,
        amz_date=signed["X-Amz-Date"],
        secret_access_key=issued.issued.secret_access_key,
    )
    pairs_sorted = sigv4.canonical_query(query)
    text_sorted = _text_sorted(pairs_sorted)
    assert text_sorted != pairs_sorted  # a query the old sort gets wrong
    key = sigv4.signing_key(issued.issued.secret_access_key, auth.date, auth.region, auth.service)
    wrong = right.canonical_request.replace(f"\n{pairs_sorted}\n", f"\n{text_sorted}\n")
    wrong_signature = sigv4.sign(key, sigv4.string_to_sign(signed["X-Amz-Date"], auth.scope, wrong))
    forged = {**signed, "Authorization": signed["Authorization"].replace(auth.signature, wrong_signature)}

    with pytest.raises(ApiGatewayError) as refused:
        issued.verifier.verify(_wire(request, forged))

    assert (refused.value.status, refused.value.error_type) == (403, "InvalidSignatureException")
    # Like API Gateway, the refusal quotes the canonical string it expected: shorter key first.
    assert f"\n{pairs_sorted}\n" in refused.value.message


def test_query_pairs_sort_by_encoded_key_then_value() -> None:
    assert sigv4.canonical_query("filter-x=b&filter=a&filter%5Bx%5D=c&limit2=1&limit=2&a=2&a=1&a") == (
        "a=&a=1&a=2&filter=a&filter%5Bx%5D=c&filter-x=b&limit=2&limit2=1"
    )


def test_plus_is_a_space_and_an_escaped_plus_a_plus() -> None:
    assert sigv4.canonical_query("q=a+b&t=ab%2B%2F%3D%3D&r=%2b") == "q=a%20b&r=%2B&t=ab%2B%2F%3D%3D"


def test_an_escape_that_is_not_utf8_keeps_its_byte() -> None:
    assert sigv4.canonical_query("k=%FF%fe") == "k=%FF%FE"
