"""Undoing gzip and deflate Content-Encoding, always in bounded steps.

A few bytes of gzip may inflate to gigabytes, so nothing here decodes without a limit: callers
say how much they take at a time (a stream) or at all (a request body, an answer's head).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

#: zlib window bits per Content-Encoding: gzip wants its header and trailer (16 + the largest
#: window), deflate in HTTP is the zlib format (the largest window).
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class InflateError(ValueError):
    """The compressed data is broken (zlib's reason is the message)."""


class Inflater:
    """One compressed body, decoded piece by piece."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._z = zlib.decompressobj(WBITS[encoding])
        #: Whether ``head`` left decodable input behind (the body is longer than its limit).
        self.cut = False

    @property
    def eof(self) -> bool:
        """Whether the end of the compressed stream has been seen (else it is truncated)."""
        return self._z.eof

    def feed(self, data: bytes, step: int) -> Iterator[bytes]:
        """All of ``data`` decoded, at most ``step`` bytes at a time."""
        try:
            yield self._z.decompress(data, step)
            while self._z.unconsumed_tail:
                yield self._z.decompress(self._z.unconsumed_tail, step)
        except zlib.error as exc:
            raise InflateError(str(exc)) from None

    def head(self, data: bytes, limit: int) -> bytes:
        """At most ``limit`` bytes of ``data`` decoded; the rest is dropped (see ``cut``)."""
        try:
            out = self._z.decompress(data, limit)
        except zlib.error as exc:
            raise InflateError(str(exc)) from None
        self.cut = bool(self._z.unconsumed_tail)
        return out


def inflater(encoding: str) -> Inflater | None:
    """A decoder for a Content-Encoding value (any case and spacing), or None when it is not
    gzip or deflate."""
    encoding = encoding.strip().lower()
    return Inflater(encoding) if encoding in WBITS else None
