"""Reading a PNG's chunks and row filters, for tests of how images are written."""

from __future__ import annotations

import struct
import zlib


def png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    chunks, position = [], 8
    while position + 8 <= len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        chunks.append((png[position + 4 : position + 8], png[position + 8 : position + 8 + length]))
        position += length + 12
    return chunks


def row_filters(png: bytes) -> set[int]:
    """The filter type byte opening each row of an 8-bit, non-interlaced PNG."""
    chunks = png_chunks(png)
    width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
    assert depth == 8
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour]
    data = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = 1 + width * channels
    assert len(data) == stride * height
    return set(data[::stride])
