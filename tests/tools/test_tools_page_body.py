"""The bounded inflater on its own: every encoding a server may send, bodies cut at the limit,
stacked layers refused, and the inflated size never past the room it is given."""

from __future__ import annotations

import asyncio
import gzip
import zlib

import pytest

from stages.tools.visit.page_body import BodyError, BoundedInflater, encoding_layers, read_body

TEXT = b"<p>harbour light</p>" * 500


def _chunks(data: bytes, size: int = 1000):
    async def gen():
        for start in range(0, len(data), size):
            yield data[start : start + size]

    return gen()


def _read(data: bytes, encoding: str, limit: int = 1_000_000) -> bytes:
    return asyncio.run(read_body(_chunks(data), encoding, limit))


def _raw_deflate(data: bytes) -> bytes:
    squeeze = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return squeeze.compress(data) + squeeze.flush()


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("", lambda d: d),
        ("identity", lambda d: d),
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", _raw_deflate),
        ("gzip", lambda d: gzip.compress(d[:3000]) + gzip.compress(d[3000:])),  # two members
        ("identity, gzip", gzip.compress),
    ],
)
def test_each_encoding_reads_back(encoding, encode):
    assert _read(encode(TEXT), encoding) == TEXT


def test_bodies_are_cut_at_the_limit():
    assert _read(gzip.compress(TEXT), "gzip", limit=777) == TEXT[:777]
    assert _read(TEXT, "", limit=50) == TEXT[:50]


@pytest.mark.parametrize("header", ["gzip, gzip", "deflate, gzip", "gzip,deflate"])
def test_stacked_encodings_are_refused(header):
    with pytest.raises(BodyError, match="stacked"):
        _read(gzip.compress(gzip.compress(TEXT)), header)


def test_unknown_and_corrupt_encodings_are_errors():
    with pytest.raises(BodyError, match="not supported"):
        _read(TEXT, "br")
    with pytest.raises(BodyError, match="corrupt"):
        _read(b"\x1f\x8b\x08\x00" + b"\x00" * 50, "gzip")


def test_one_feed_never_returns_more_than_its_room():
    bomb = gzip.compress(bytes(20_000_000))  # ~20 KB inflating to 20 MB
    inflater = BoundedInflater("gzip")
    out, full = inflater.feed(bomb, 4096)
    assert len(out) == 4096 and full


def test_layers_are_read_in_order():
    assert encoding_layers("identity, gzip , Deflate") == ["gzip", "deflate"]
