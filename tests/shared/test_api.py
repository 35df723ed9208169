"""The HTTP surface's own helpers: bodies stay JSON whatever the redaction takes out."""

from __future__ import annotations

import json

import pytest

from shared.api import error_response, json_response
from shared.errors import GatewayError

# Labelled values right before a JSON string's closing quote: in the serialised body that quote
# is escaped (\"), and redacting the text took the backslash with the value.
QUOTED = [
    'HTTP 403: {"message":"invalid api_key=abcdefghijkl"}',
    'HTTP 401: {"error":"missing authorization=Credential-ABCDEFGH"}',
    "HTTP 400: password=hunter2hunter2\\",
]


@pytest.mark.parametrize("message", QUOTED)
def test_an_error_quoting_a_labelled_secret_is_still_json_without_the_secret(message: str) -> None:
    response = error_response(GatewayError(message, source="orders", page=3, request_id="req-1"))
    body = response.get_body().decode()
    document = json.loads(body)  # the body ADF's Web activity parses
    secret = message.split("=", 1)[1].split('"', 1)[0].rstrip("\\")
    assert secret not in body and "[REDACTED]" in json.dumps(document)
    assert "page=3" in json.dumps(document) or document.get("page") == 3


def test_every_string_of_a_body_is_redacted_keys_and_nested_values_too() -> None:
    body = {"output": {"error": ["token: eyJabcdefghij.klmnopqrstu.vwxyz012345"]}, "api_key=abcdefghijkl": 1}
    text = json_response(200, body).get_body().decode()
    assert "eyJabcdefghij" not in text and "abcdefghijkl" not in text
    assert json.loads(text)["output"]["error"] == ["token: [REDACTED]"]
