"""The one gzip/deflate decoder: bounded in every use."""

from __future__ import annotations

import gzip
import zlib

import pytest

from shim.inflate import InflateError, inflater


def test_encodings() -> None:
    assert inflater("identity") is None and inflater("br") is None
    for name in ("gzip", " X-Gzip ", "deflate"):
        assert inflater(name) is not None


def test_feed_is_bounded_per_step_and_complete() -> None:
    data = b"a" * 100_000
    decoder = inflater("gzip")
    assert decoder is not None
    pieces = list(decoder.feed(gzip.compress(data), 4096))
    assert max(len(p) for p in pieces) <= 4096
    assert b"".join(pieces) == data and decoder.eof


def test_head_stops_at_its_limit() -> None:
    decoder = inflater("deflate")
    assert decoder is not None
    head = decoder.head(zlib.compress(b"z" * 50_000), 100)
    assert head == b"z" * 100 and decoder.cut and not decoder.eof


def test_broken_data() -> None:
    decoder = inflater("gzip")
    assert decoder is not None
    with pytest.raises(InflateError):
        decoder.head(b"not gzip at all", 100)
