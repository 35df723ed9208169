"""SigV4 references shared by the app's signer tests and the local verifier's tests.

Two references, neither of them code of ours:

- AWS's published SigV4 test suite (tests/aws4_testsuite, see its README.md), read into
  requests exactly as written in the `.req`/`.sreq` files;
- botocore's `SigV4Auth` for `execute-api`, fed the bytes a request carries on the wire.

plus the hypothesis strategy that draws those wire requests (paths and queries built to hit
the ways a canonicaliser goes wrong).
"""

from __future__ import annotations

import base64
import http.client
import io
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar
from unittest import mock
from urllib.parse import parse_qsl, quote, quote_plus

import botocore.auth
import httpx
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

T = TypeVar("T")

# -- AWS's test suite --------------------------------------------------------------------

SUITE_DIR = Path(__file__).resolve().parent / "aws4_testsuite"
# The suite's fixed inputs (its .sts/.authz files are computed from these).
SUITE_TIME = datetime(2015, 8, 30, 12, 36, 0, tzinfo=UTC)
SUITE_REGION = "us-east-1"
SUITE_SERVICE = "service"
SUITE_ACCESS_KEY = "AKIDEXAMPLE"
SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # AWS documentation's example key


@dataclass(frozen=True)
class RawRequest:
    """A request as the suite writes it: the request-target verbatim (it may hold a raw space
    or raw UTF-8, which no HTTP client sends), headers as an HTTP server parses them."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def path(self) -> str:
        return self.target.partition("?")[0]

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)


@dataclass(frozen=True)
class SuiteCase:
    name: str
    request: RawRequest  # .req: before signing
    signed: RawRequest  # .sreq: as sent, with Authorization
    canonical_request: str  # .creq
    string_to_sign: str  # .sts
    authorization: str  # .authz

    @property
    def session_token(self) -> str | None:
        """The security token the case signs with, if any (its .creq names it)."""
        match = re.search(r"^x-amz-security-token:(.*)$", self.canonical_request, re.MULTILINE)
        return match[1] if match else None

    @property
    def credentials(self) -> ReadOnlyCredentials:
        return ReadOnlyCredentials(SUITE_ACCESS_KEY, SUITE_SECRET, self.session_token)


def suite_case_names() -> list[str]:
    """Every case, named by its directory under aws4_testsuite (e.g. ``normalize-path/get-space``)."""
    return sorted(str(req.parent.relative_to(SUITE_DIR)) for req in SUITE_DIR.rglob("*.req"))


def suite_case(name: str) -> SuiteCase:
    stem = SUITE_DIR / name / Path(name).name

    def text(extension: str) -> str:
        return stem.with_suffix(extension).read_bytes().decode("utf-8").replace("\r", "")

    return SuiteCase(
        name=name,
        request=_parse_raw(stem.with_suffix(".req").read_bytes()),
        signed=_parse_raw(stem.with_suffix(".sreq").read_bytes()),
        canonical_request=text(".creq"),
        string_to_sign=text(".sts"),
        authorization=text(".authz"),
    )


def _parse_raw(raw: bytes) -> RawRequest:
    head, _, body = raw.partition(b"\n\n")
    request_line, _, header_block = head.partition(b"\n")
    # Split by hand: get-space's target holds a space, which http.server would refuse.
    method, _, rest = request_line.decode("utf-8").partition(" ")
    target, _, _version = rest.rpartition(" ")
    # The same parser http.server (and so localcloud's gateway) uses: folded lines kept.
    headers = http.client.parse_headers(io.BytesIO(header_block + b"\n\n"))
    return RawRequest(method, target, tuple(headers.items()), body)


# -- botocore as the reference signer ----------------------------------------------------

AUTH_HEADERS = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")


def botocore_signed(
    request: httpx.Request,
    credentials: ReadOnlyCredentials,
    region: str,
    moment: datetime,
    signed_headers: tuple[str, ...],
    service: str = "execute-api",
) -> dict[str, str]:
    """botocore's SigV4 headers for the request httpx will send, at a frozen `moment`.

    What botocore is handed is the wire, not what the request was built from: the path is
    httpx's `raw_path` (already percent-encoded and dot-segment-free, so botocore encodes it
    once more, as AWS does for every service but S3), and the query is the wire query decoded
    the way AWS decodes it -- `+` is a space, `%XX` a byte; botocore then encodes and sorts
    the pairs itself. (Handed the raw URL instead, botocore would sign the query's bytes as
    they are, right only for queries already in canonical encoding, which is all botocore's
    own serialisers produce.) Only `signed_headers` are passed, since botocore signs all the
    headers it is given.
    """
    path, _, query = request.url.raw_path.decode("ascii").partition("?")
    aws = AWSRequest(
        method=request.method,
        url=f"{request.url.scheme}://{request.url.netloc.decode('ascii')}{path}",
        params=parse_qsl(query, keep_blank_values=True),
        data=request.content,
        headers={name: request.headers[name] for name in signed_headers if name in request.headers},
    )
    naive_utc = moment.astimezone(UTC).replace(tzinfo=None)
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=naive_utc):
        botocore.auth.SigV4Auth(credentials, service, region).add_auth(aws)
    return {name: aws.headers[name] for name in AUTH_HEADERS if name in aws.headers}


# -- wire requests to sign ---------------------------------------------------------------

_PATH_SEGMENTS = [
    "", ".", "..", "dev", "orders", "v1", "~user", "a b", "a+b", "%2F", "a%2Fb", "%20", "%2B", "%25",
    "%7e", "%C3%A9", "é", "ሴ", "😀", "$delete", "*", "'()!", ",;:@=&", "-_.~",
]  # fmt: skip
# Names where one is a prefix of another followed by a character sorting below '=' (the
# characters that made sorting `k=v` strings differ from sorting (key, value) pairs).
_KEYS = [
    "limit", "limit2", "filter", "filter-x", "filter[x]", "filter.x", "filter%x", "filter_x", "Filter",
    "a", "a b", "a+b", "", "next_token", "ሴ", "é", "~", "*", "$filter", "q/x", "k?",
]  # fmt: skip
_VALUES = [
    "", "a", "b", "A", "0", "1", "a b", "a+b", "+", " ", "%2B", "=", "==", "&", "/", "?", "é", "ሴ",
    "id eq 123", "2024-01-01T00:00:00Z", "*'()!", "~._-",
]  # fmt: skip
# Free text: every printable ASCII character, non-ASCII letters, an emoji, a combining
# accent and Unicode spaces (NBSP, line separator, BOM).
_PRINTABLE = "".join(map(chr, range(0x20, 0x7F)))
_ALPHABET = _PRINTABLE + "\u00e9\u1234\U0001f600\u0301\u00a0\u2028\ufeff"
_PATH_ALPHABET = _ALPHABET.translate(dict.fromkeys(map(ord, "/?#%")))


def _strict(text: str) -> str:
    return quote(text, safe="-_.~")


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), _strict(text))


def _raw(text: str) -> str:
    # Left as typed, except what would change the query's structure; httpx then encodes what
    # may not appear raw (spaces, non-ASCII) and leaves the rest (`+`, `*`, `'`, `/`, ...).
    return re.sub(r"[&=#%]", lambda m: _strict(m[0]), text)


_ENCODINGS = [_strict, quote_plus, _lower_hex, _raw]
_ORIGINS = ["https://abc123.execute-api.eu-west-1.amazonaws.com", "http://127.0.0.1:8080"]
_METHODS = ["GET", "GET", "POST", "PUT", "DELETE"]
_REGIONS = ["eu-west-1", "us-east-1", "ap-southeast-2", "us-gov-west-1"]
_SIGNABLE_HEADERS = ("content-type", "x-api-key", "x-correlation-id", "accept", "traceparent")
_BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_KEY_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_Y2000, _Y2100 = 946_684_800, 4_102_444_800


class _Choices:
    """Structural choices read from bytes hypothesis draws, then (past their end) from a PRNG
    seeded with all of them, so that no drawn byte goes unused and no two draws make the same
    request. Hypothesis shrinks bytes towards zeros: towards the first option of early choices."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0
        self._after = random.Random(data)

    def number(self, below: int) -> int:
        if self._at >= len(self._data):
            return self._after.randrange(below)
        self._at += 1
        return self._data[self._at - 1] % below

    def pick(self, options: Sequence[T]) -> T:
        return options[self.number(len(options))]

    def chance(self, one_in: int) -> bool:
        return self.number(one_in) == 1


_STRUCTURE = st.binary(min_size=24, max_size=24)
# Free-form parts are drawn only where the structure picked one, so every draw shapes the
# request (hypothesis would otherwise vary unused draws and repeat requests).
_TEXT = st.text(_ALPHABET, max_size=8)
_PATH_TEXT = st.text(_PATH_ALPHABET, max_size=6)
_TOKEN = st.binary(min_size=1, max_size=24).map(lambda b: base64.b64encode(b).decode())
# Header values with runs of spaces and tabs inside and around (signers trim and collapse them).
_HEADER_VALUE = st.text(_PRINTABLE + "\t", min_size=1, max_size=20)
_SEGMENT_OPTIONS: list[str | st.SearchStrategy[str]] = [*_PATH_SEGMENTS, _PATH_TEXT, _PATH_TEXT]
_KEY_OPTIONS: list[str | st.SearchStrategy[str]] = [*_KEYS, _TEXT, _TEXT]
_VALUE_OPTIONS: list[str | st.SearchStrategy[str]] = [*_VALUES, _TEXT, _TEXT, _TOKEN, _TOKEN]


@dataclass(frozen=True)
class Drawn:
    """One request to sign and everything it is signed with."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    credentials: ReadOnlyCredentials
    region: str
    moment: datetime

    def request(self) -> httpx.Request:
        return httpx.Request(self.method, self.url, headers=self.headers, content=self.body)


@st.composite
def wire_requests(draw: st.DrawFn) -> Drawn:
    """A request as the app may send one: a catalog path or a server's next link, query
    parameters encoded by `urlencode` or by whoever wrote the link, optional signed headers,
    signed at any second of this century.

    The structure comes from one drawn byte string rather than a draw per choice: hypothesis's
    per-draw bookkeeping was most of an example's cost, and 2,000 examples must stay quick.
    """
    choose = _Choices(draw(_STRUCTURE))

    def pick(options: Sequence[str | st.SearchStrategy[str]]) -> str:
        option = choose.pick(options)
        return option if isinstance(option, str) else draw(option)

    segments = [pick(_SEGMENT_OPTIONS) for _ in range(choose.number(7))]
    path = "/" + "/".join(segments) + choose.pick(["", "/"])
    items: list[str] = []
    for _ in range(choose.number(8)):
        key = choose.pick(_ENCODINGS)(pick(_KEY_OPTIONS))
        if choose.chance(10):
            items.append(key or "k")  # a key without '='
        else:
            items.append(f"{key}={choose.pick(_ENCODINGS)(pick(_VALUE_OPTIONS))}")
    for _ in range(choose.number(4) if items else 0):  # repeated keys, at drawn places
        items.insert(choose.number(len(items) + 1), choose.pick(items))
    query = "&".join(items)
    method = choose.pick(_METHODS)
    headers = {name: draw(_HEADER_VALUE) for name in _SIGNABLE_HEADERS if choose.chance(2)}
    return Drawn(
        method=method,
        url=choose.pick(_ORIGINS) + path + (f"?{query}" if query or choose.chance(2) else ""),
        headers=headers,
        body=draw(st.binary(max_size=64)) if method != "GET" else b"",
        credentials=ReadOnlyCredentials(
            "ASIA" + draw(st.text(_KEY_ID_ALPHABET, min_size=16, max_size=16)),
            draw(st.text(_BASE64_ALPHABET, min_size=1, max_size=40)),
            draw(_TOKEN) if choose.chance(2) else None,
        ),
        region=choose.pick(_REGIONS),
        moment=datetime.fromtimestamp(draw(st.integers(_Y2000, _Y2100 - 1)), UTC),
    )


def noted_request(drawn: Drawn) -> httpx.Request:
    """The drawn request; a failing example prints its URL as built and as it goes on the wire."""
    request = drawn.request()
    note({"url": drawn.url, "wire": request.url.raw_path.decode("ascii"), "headers": drawn.headers})
    return request


EXAMPLES = 2000  # drawn requests a run, for every test that draws them


def on_drawn_requests(test: Callable[..., None]) -> Callable[..., None]:
    """`test` run on EXAMPLES drawn wire requests, each passed as its argument `drawn`."""
    drawing = given(drawn=wire_requests())(test)
    return settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])(
        drawing
    )
