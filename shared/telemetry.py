"""Logging set-up, with a filter that redacts anything shaped like a secret.

Our own code never logs secrets; the filter is the belt to those braces, catching what a
dependency might put in a message (a token in a URL, a signature in a header dump).
"""

from __future__ import annotations

import logging
import re
import sys

_SECRET_PATTERNS = [
    # JWTs (Entra access tokens): header.payload.signature, base64url.
    re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}"),
    # AWS access key ids, long-term and temporary.
    re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    # SigV4 signatures and anything labelled as a secret, token, key or signature.
    re.compile(r"(?i)(signature=)[0-9a-f]{64}"),
    re.compile(
        r"(?i)((?:secret[_-]?access[_-]?key|session[_-]?token|security[_-]?token|x-api-key|api[_-]?key|"
        r"access[_-]?token|authorization|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+"
    ),
]
REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    """Replace every secret-shaped substring with a marker."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message through `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def configure_logging(verbose: bool = False) -> None:
    """Plain log lines on stderr (stdout is reserved for results), redacted; quiet unless verbose."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.ERROR)
    # The Azure SDKs log every HTTP exchange at INFO, headers included.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
