"""A page body as it comes off the wire, bounded: inflated while streaming, never past a limit.

httpx decodes `Content-Encoding` chunk by chunk, but each chunk is inflated whole and stacked
encodings (`gzip, gzip`) multiply: a few KB became 2 GiB in memory before a size check could see
it. Here the raw bytes are inflated with zlib's `max_length`, so at most `limit` bytes are ever
held, whatever the ratio. One encoding layer (gzip or deflate) is accepted; a stack of them is
refused (no real server needs one, and each layer multiplies the ratio).
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

#: What web_visit asks servers for: the encodings this module inflates.
ACCEPT_ENCODING = "gzip, deflate"
_IDENTITY = {"", "identity"}
_GZIP = {"gzip", "x-gzip"}


class BodyError(RuntimeError):
    """The body cannot be read safely; the message says why."""


def encoding_layers(header: str) -> list[str]:
    """The non-identity layers of a Content-Encoding header, in the order they were applied."""
    return [part.strip().lower() for part in header.split(",") if part.strip().lower() not in _IDENTITY]


class BoundedInflater:
    """Inflates one gzip/deflate layer in pieces; `feed` never returns more than `room` bytes."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._zlib_wrapped = True  # deflate: RFC says zlib-wrapped, many servers send raw
        self._d = self._new()
        self._started = False

    def _new(self):
        if self.encoding in _GZIP:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj(zlib.MAX_WBITS if self._zlib_wrapped else -zlib.MAX_WBITS)

    def feed(self, data: bytes, room: int) -> tuple[bytes, bool]:
        """(inflated bytes, full): `full` when `room` was reached with input left over."""
        out = bytearray()
        while data and room > len(out):
            try:
                piece = self._d.decompress(data, room - len(out))
            except zlib.error as exc:
                if self.encoding not in _GZIP and not self._started and self._zlib_wrapped:
                    self._zlib_wrapped = False  # raw deflate after all: start again
                    self._d = self._new()
                    continue
                raise BodyError(f"the {self.encoding} body is corrupt ({exc})") from None
            self._started = True
            out += piece
            if self._d.unconsumed_tail:
                data = self._d.unconsumed_tail
                continue
            if self._d.eof and self._d.unused_data and self.encoding in _GZIP:
                data = self._d.unused_data  # concatenated gzip members (RFC 1952 allows them)
                self._d = self._new()
                continue
            data = b""
        return bytes(out), bool(data)


async def read_body(raw: AsyncIterator[bytes], content_encoding: str, limit: int) -> bytes:
    """At most `limit` bytes of the decoded body (longer bodies are cut there). Reads at most
    `limit` raw bytes too, so a stream of empty gzip members cannot spin forever."""
    layers = encoding_layers(content_encoding)
    if len(layers) > 1:
        raise BodyError(
            f"stacked content encodings ({', '.join(layers)}) are refused: they multiply a "
            "compression bomb; one gzip or deflate layer is accepted"
        )
    if layers and layers[0] not in _GZIP | {"deflate"}:
        raise BodyError(f"content encoding {layers[0]!r} is not supported (only gzip and deflate)")
    inflater = BoundedInflater(layers[0]) if layers else None
    body = bytearray()
    raw_bytes = 0
    async for chunk in raw:
        raw_bytes += len(chunk)
        if inflater is None:
            body += chunk[: limit - len(body)]
            full = len(body) >= limit
        else:
            piece, full = inflater.feed(chunk, limit - len(body))
            body += piece
            full = full or len(body) >= limit
        if full or raw_bytes >= limit:
            break
    return bytes(body)
