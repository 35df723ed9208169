"""Redaction: removing secrets from text before it leaves the process.

Two nets. First, by value: every secret the process obtains (API keys, AWS credentials, Entra
tokens, function keys it is sent) is `register`ed, and `redact` removes each registered value
together with its URL-encoded (quote, quote_plus), JSON-escaped and base64 (standard and
urlsafe, padded or not) forms, whatever its shape -- an API that quotes the key it refused
cannot put it in a log, an error, the journal or a response body. Second, by pattern: anything
shaped like a secret (JWTs, AWS key ids and session tokens, labelled values), for secrets this
process never held, e.g. another party's echoed in a service's error text.

Values shorter than `MIN_SECRET_LENGTH` are not registered: scrubbing them would eat ordinary
words and numbers. At most `MAX_REGISTERED` values are kept (oldest dropped first): a long-lived
worker renews tokens and credentials for days, and each one stays scrubbed long after it
expired. A secret's base64 form is found only where the secret starts the encoded text (base64
of a longer string shifts with alignment); that is the form services echo.

The registered forms are compiled into one regular expression shaped as a trie, rebuilt on
each registration (rare) and read lock-free by `redact` (every log record): a 1 KB line with 50
secrets registered costs tens of microseconds (tests/shared/observability/test_redaction.py).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import quote, quote_plus

# Each pattern with the lowercase words text must hold for it to match: most lines hold none,
# and a substring test is a hundred times cheaper than a case-insensitive regex scan.
_SECRET_PATTERNS: list[tuple[re.Pattern[str], tuple[str, ...]]] = [
    # JWTs (Entra access tokens): header.payload.signature, base64url.
    (re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}"), ("eyj",)),
    # AWS access key ids, long-term and temporary.
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), ("akia", "asia")),
    # AWS session tokens (STS's, whatever their label): base64 of a fixed protobuf-like prefix.
    (re.compile(r"(?:IQoJb3JpZ2lu|FwoGZXIvYXdz)[A-Za-z0-9+/=]{16,}"), ("iqojb3jpz2lu", "fwogzxivyxdz")),
    # SigV4 signatures and bearer tokens of any shape.
    (re.compile(r"(?i)(signature[=:]\s*)[0-9a-f]{64}"), ("signature",)),
    (re.compile(r"(?i)(bearer\s+)[\w\-.~+/]{8,}=*"), ("bearer",)),
    # Values labelled as a secret, token, key or password: `label: value`, `label=value`, JSON,
    # Python reprs, and the XML elements of STS answers (botocore logs those at DEBUG). Values
    # shorter than 8 characters are words, not secrets (`api_key: Extra inputs ...`).
    (
        re.compile(
            r"(?i)((?:secret[_-]?access[_-]?key|session[_-]?token|security[_-]?token|x-api-key|api[_-]?key|"
            r"access[_-]?token|authorization|password)[\"']?\s*[:=>]\s*[\"']?)[^\s\"',;}<]{8,}"
        ),
        ("key", "token", "authorization", "password"),
    ),
]
REDACTED = "[REDACTED]"
#: Shorter values are not registered: they would scrub ordinary words.
MIN_SECRET_LENGTH = 8
#: The most values kept registered; the oldest registration is dropped first.
MAX_REGISTERED = 256


def encoded_forms(value: str) -> set[str]:
    """The value as it may appear in text: raw, URL-encoded, JSON-escaped, base64."""
    raw = value.encode("utf-8", "surrogatepass")
    forms = {
        value,
        quote(value, safe=""),
        quote(value),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    }
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        encoded = encode(raw).decode("ascii")
        forms |= {encoded, encoded.rstrip("=")}
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _trie_pattern(words: set[str]) -> re.Pattern[str] | None:
    """One regex matching any of `words`, shaped as a trie so a position that starts no word is
    rejected after a character or two instead of one try per word."""
    if not words:
        return None
    trie: dict[str, dict] = {}  # type: ignore[type-arg]
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict) -> str:  # type: ignore[type-arg]
        branches = [chain(char, child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{body})?" if "" in node else body

    def chain(char: str, node: dict) -> str:  # type: ignore[type-arg]
        # A run of single-child nodes is one literal: recursion happens only at branch points.
        literal = [char]
        while len(node) == 1 and "" not in node:
            ((char, node),) = node.items()
            literal.append(char)
        return re.escape("".join(literal)) + emit(node)

    return re.compile(emit(trie))


class _Index:
    """The forms to scrub, found in two steps: a trie regex over each form's first
    MIN_SECRET_LENGTH characters finds candidates (a session token runs to 1-2 KB, and a regex
    over whole forms would take seconds to compile), then `startswith` confirms the whole form."""

    def __init__(self, forms: set[str]) -> None:
        by_prefix: dict[str, list[str]] = {}
        for form in forms:
            by_prefix.setdefault(form[:MIN_SECRET_LENGTH], []).append(form)
        for candidates in by_prefix.values():
            candidates.sort(key=len, reverse=True)  # the longest form wins where several start
        self._by_prefix = by_prefix
        self._prefixes = _trie_pattern(set(by_prefix))

    def scrub(self, text: str) -> str:
        if self._prefixes is None:
            return text
        out: list[str] = []
        done = position = 0
        search = self._prefixes.search
        while (found := search(text, position)) is not None:
            start = found.start()
            form = next((f for f in self._by_prefix[found.group()] if text.startswith(f, start)), None)
            if form is None:
                position = start + 1  # a prefix only: a form may still start inside it
                continue
            out += (text[done:start], REDACTED)
            done = position = start + len(form)
        return text if not out else "".join(out) + text[done:]


class Scrubber:
    """The registered secrets, thread-safe and bounded; `scrub` removes every form of each."""

    def __init__(self, max_registered: int = MAX_REGISTERED) -> None:
        self._max = max_registered
        self._lock = threading.Lock()
        self._values: OrderedDict[str, set[str]] = OrderedDict()
        self._index: _Index | None = None

    def register(self, value: str | None) -> None:
        """Scrub `value` (and its encoded forms) from everything redacted from now on."""
        if not value or len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if value in self._values:
                self._values.move_to_end(value)  # still in use: keep it over older ones
                return
            self._values[value] = encoded_forms(value)
            while len(self._values) > self._max:
                self._values.popitem(last=False)
            self._index = _Index(set().union(*self._values.values()))

    def forget_all(self) -> None:
        """Drop every registration (tests)."""
        with self._lock:
            self._values.clear()
            self._index = None

    def __len__(self) -> int:
        return len(self._values)

    def scrub(self, text: str) -> str:
        index = self._index  # one read: a concurrent register swaps in a whole new index
        return text if index is None else index.scrub(text)


_scrubber = Scrubber()


def register_secret(value: str | None) -> None:
    """Register a secret the process obtained with the process-wide scrubber."""
    _scrubber.register(value)


def scrubber() -> Scrubber:
    """The process-wide scrubber."""
    return _scrubber


def holds_secret(text: str) -> bool:
    """Whether `text` holds a registered secret in any of its forms (shapes alone do not count)."""
    return _scrubber.scrub(text) != text


def redact_data(value: Any) -> Any:
    """A JSON-shaped value with every string in it redacted, keys included.

    Redact before serialising, not the serialised text: there a labelled value runs up to an
    escaped quote (`api_key=...\\"`), and taking it takes the backslash, which breaks the JSON.
    """
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(key)): redact_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(item) for item in value]
    return value


def redact(text: str) -> str:
    """Remove every registered secret in any of its forms, then anything shaped like a secret."""
    text = _scrubber.scrub(text)
    lowered = text.lower()
    for pattern, words in _SECRET_PATTERNS:
        if any(word in lowered for word in words):
            text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text
