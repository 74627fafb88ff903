"""Fast lossless PNG writing with one fixed row filter (standalone: stdlib + numpy + cv2 only).

Used on both sides of the code sandbox: the host's decode-friendly input copies
(`fast_inputs`, no filter) and, inside the sandbox, the images teacher code saves without
choosing how (`sandbox_worker`, the "up" filter). PIL's PNG writer tries all five row filters on
every row and keeps the best, which is most of its cost at zlib level 1: a crop-and-zoom call's
sandbox CPU is 0.71 (render-like input) and 0.87 (noisy photo) of what it is when PIL saves at
level 1, for files 0.89 and 1.12 of the size (`python bench/bench_tools.py --only png-saves`).
Pixels are the same whatever the filter: only the file's bytes differ.

The image data is written as one IDAT chunk: libpng writes 8 KiB chunks, and PIL walks chunks in
Python when it reads the file back (a stored 5 MP copy is ~1,900 chunks, which doubled its decode).
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Channels of the PIL modes written here (8 bits each); any other mode is left to PIL.
CHANNELS = {"L": 1, "RGB": 3, "RGBA": 4}
_TO_BGR = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}
ROW_FILTERS = {
    "none": cv2.IMWRITE_PNG_FILTER_NONE,
    "sub": cv2.IMWRITE_PNG_FILTER_SUB,
    "up": cv2.IMWRITE_PNG_FILTER_UP,
    "paeth": cv2.IMWRITE_PNG_FILTER_PAETH,
}


def fast_png(pixels: np.ndarray, *, level: int, row_filter: str) -> bytes:
    """PNG bytes of 8-bit L (h x w), RGB or RGBA (h x w x 3|4, in that channel order) pixels."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise ValueError(f"expected 8-bit pixels of 1, 3 or 4 channels, got {pixels.dtype} {pixels.shape}")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels in _TO_BGR:
        pixels = cv2.cvtColor(pixels, _TO_BGR[channels])  # cv2 reads colour as BGR(A)
    elif channels != 1:
        raise ValueError(f"expected 1, 3 or 4 channels, got {channels}")
    params = [cv2.IMWRITE_PNG_COMPRESSION, level, cv2.IMWRITE_PNG_FILTER, ROW_FILTERS[row_filter]]
    ok, encoded = cv2.imencode(".png", pixels, params)
    if not ok:
        raise ValueError("cv2 could not encode the pixels as PNG")
    return one_idat(encoded.tobytes())


def one_idat(png: bytes) -> bytes:
    """The same PNG with its image data in one IDAT chunk."""
    chunks, position = [], len(PNG_MAGIC)
    while position + 8 <= len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        chunks.append((png[position + 4 : position + 8], png[position + 8 : position + 8 + length]))
        position += length + 12
    data = b"".join(body for kind, body in chunks if kind == b"IDAT")
    head = [(kind, body) for kind, body in chunks if kind not in (b"IDAT", b"IEND")]
    return PNG_MAGIC + b"".join(_chunk(kind, body) for kind, body in [*head, (b"IDAT", data), (b"IEND", b"")])


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
