"""Logging set-up, and redaction of anything shaped like a secret in every log record.

Our own code never logs secrets; redaction is the belt to those braces, catching what a
dependency puts in a message. botocore at DEBUG, for one, logs the STS answer (access key,
secret key, session token), the web identity token it sends, and every canonical request and
signature. `install_redaction` rewrites each record as it is created, so no handler -- ours,
the Functions host's, Application Insights' -- ever receives the secret.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from typing import Any

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


_install_lock = threading.Lock()
_installed = False


def install_redaction() -> None:
    """Redact every log record this process creates from now on, whatever logs it or handles it.

    A record factory rather than a handler filter: filters only see records of the handlers
    they are attached to, and a host adds handlers of its own. Idempotent.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        create = logging.getLogRecordFactory()

        def redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = create(*args, **kwargs)
            _redact_record(record)
            return record

        logging.setLogRecordFactory(redacted_record)
        _installed = True


def _redact_record(record: logging.LogRecord) -> None:
    # Records are created only for enabled levels, so this costs nothing for DEBUG lines that
    # are switched off.
    message = record.getMessage()
    cleaned = redact(message)
    if cleaned != message or record.args:
        record.msg, record.args = cleaned, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        # Formatters use exc_text when it is set, so the raw traceback text is never rendered.
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))


def configure_logging(verbose: bool = False) -> None:
    """Plain log lines on stderr (stdout is reserved for results), redacted; quiet unless verbose."""
    install_redaction()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if verbose else logging.ERROR)
    # The Azure SDKs log every HTTP exchange at INFO, headers included.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
