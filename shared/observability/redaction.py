"""Redaction: removing anything shaped like a secret from text before it leaves the process."""

from __future__ import annotations

import re

_SECRET_PATTERNS = [
    # JWTs (Entra access tokens): header.payload.signature, base64url.
    re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}"),
    # AWS access key ids, long-term and temporary.
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    # AWS session tokens (STS's, whatever their label): base64 of a fixed protobuf-like prefix.
    re.compile(r"(?:IQoJb3JpZ2lu|FwoGZXIvYXdz)[A-Za-z0-9+/=]{16,}"),
    # SigV4 signatures and bearer tokens of any shape.
    re.compile(r"(?i)(signature[=:]\s*)[0-9a-f]{64}"),
    re.compile(r"(?i)(bearer\s+)[\w\-.~+/]{8,}=*"),
    # Values labelled as a secret, token, key or password: `label: value`, `label=value`, JSON,
    # Python reprs, and the XML elements of STS answers (botocore logs those at DEBUG). Values
    # shorter than 8 characters are words, not secrets (`api_key: Extra inputs ...`).
    re.compile(
        r"(?i)((?:secret[_-]?access[_-]?key|session[_-]?token|security[_-]?token|x-api-key|api[_-]?key|"
        r"access[_-]?token|authorization|password)[\"']?\s*[:=>]\s*[\"']?)[^\s\"',;}<]{8,}"
    ),
]
REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    """Replace every secret-shaped substring with a marker."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text
