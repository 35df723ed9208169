"""Content codings of a page body, decoded a bounded step at a time.

httpx decodes each raw chunk whole (and any stack of codings), so a 5 KB `gzip, gzip` bomb is
gigabytes before a size cap can count it. Here: one layer of gzip or deflate at most, each step
producing at most DECODE_STEP bytes, so the caller checks its cap between steps.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator

# One content-coding layer at most, of these (zlib wbits: gzip framing, zlib framing). br would
# need the brotli package, which is not a dependency: it is refused by name instead.
_DECODERS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
# Decoded bytes produced per step: the page cap is checked between steps, so a bomb costs at
# most the cap plus one step of memory.
DECODE_STEP = 256 * 1024


class RefusedEncoding(ValueError):
    """A Content-Encoding this client will not decode; the message names it and what is accepted."""


def decoder_for(content_encoding: str) -> Callable[[bytes], Iterator[bytes]]:
    """The decoder for a Content-Encoding header value: identity, or one gzip/deflate layer."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return identity
    if len(codings) > 1 or codings[0] not in _DECODERS:
        reason = (
            "more than one content-coding layer"
            if len(codings) > 1
            else "br, which needs the brotli package (not installed)"
            if codings[0] == "br"
            else "an unsupported content coding"
        )
        raise RefusedEncoding(
            f"page refused: Content-Encoding {', '.join(codings)!r} is {reason}; "
            "accepted: one layer of gzip or deflate"
        )
    return _Inflater(_DECODERS[codings[0]], raw_fallback=codings[0] == "deflate")


def identity(raw: bytes) -> Iterator[bytes]:
    yield raw


class _Inflater:
    """One layer of gzip or deflate, decoded at most DECODE_STEP bytes at a time."""

    def __init__(self, wbits: int, *, raw_fallback: bool) -> None:
        self._inflate = zlib.decompressobj(wbits)
        # "deflate" means zlib framing, but some servers send raw deflate (httpx accepts both).
        self._raw_fallback = raw_fallback

    def __call__(self, raw: bytes) -> Iterator[bytes]:
        if self._raw_fallback:
            self._raw_fallback = False
            try:
                zlib.decompressobj(zlib.MAX_WBITS).decompress(raw[:64], 1)
            except zlib.error:
                self._inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        data = raw
        while data:
            piece = self._inflate.decompress(data, DECODE_STEP)
            if piece:
                yield piece
            data = self._inflate.unconsumed_tail
