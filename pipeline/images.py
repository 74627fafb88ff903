"""Guarded image decoding: every image trajforge reads goes through here.

Images come from seeds, teachers, search results and hostile sandbox code, so each read is
bounded: a pixel-count limit checked from the header before decoding (decompression bombs),
a byte limit, and a full decode so truncated files fail here, for that item, with a message
that says what to do, instead of deep inside a stage.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import stat
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

#: Default limits: 64 MP (a 8192x8192 scan) and 64 MiB of encoded bytes.
MAX_PIXELS = 64_000_000
MAX_BYTES = 64 * 1024 * 1024

_DATA_URI_RE = re.compile(r"^data:(image/[\w.+-]+)?(;[\w=-]+)*;base64,", re.IGNORECASE)


class ImageError(ValueError):
    """An image that cannot be used; the message names the item and what to do."""


def decode_image(
    data: bytes, *, name: str = "image", max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES
) -> Image.Image:
    """Decode bytes into a fully loaded PIL image, or raise ImageError with a clear reason."""
    if len(data) > max_bytes:
        raise ImageError(
            f"{name}: {len(data)} bytes exceeds the {max_bytes}-byte limit; downscale or re-encode it"
        )
    if not data:
        raise ImageError(f"{name}: empty file; re-export the image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(
                    f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of {max_pixels} "
                    "(possible decompression bomb); downscale it or raise the pixel limit in the config"
                )
            image.load()
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: refused as a decompression bomb ({exc}); downscale it") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            f"{name}: not a readable image (unknown format); check the file is a PNG/JPEG/WebP"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: corrupt or truncated image ({exc}); re-download or re-export it") from exc
    return image


def read_file_bytes(path: str | Path, max_bytes: int = MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, or ImageError.

    Paths come from seed rows and tool arguments: `/dev/zero` would read until memory runs out
    and a FIFO would block forever. The file is opened non-blocking (a FIFO without a writer
    opens at once), checked to be a regular file on the open descriptor (no race with a swap),
    and never read past `max_bytes`, even if it grows meanwhile."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror}); check the path") from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ImageError(f"{path}: not a regular file (a device, FIFO or folder); give an image file")
    with os.fdopen(fd, "rb") as handle:
        if info.st_size > max_bytes:
            raise ImageError(
                f"{path}: {info.st_size} bytes exceeds the {max_bytes}-byte limit; downscale or re-encode it"
            )
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageError(
            f"{path}: more than {max_bytes} bytes (it grew while read); downscale or re-encode it"
        )
    return data


def read_image(path: str | Path, **limits: int) -> Image.Image:
    """Guarded read of an image file (a regular file within the byte limit, then decoded)."""
    data = read_file_bytes(path, limits.get("max_bytes", MAX_BYTES))
    return decode_image(data, name=str(path), **limits)


def header_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file's header alone, nothing decoded: for choosing what to do
    with an image before paying for its decode. ImageError when the header is unreadable."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: not a readable image ({exc}); check the file is a PNG/JPEG/WebP") from exc


def is_data_uri(value: str) -> bool:
    return bool(_DATA_URI_RE.match(value))


def data_uri_bytes(uri: str) -> bytes:
    """Bytes of a base64 `data:image/...` URI (ImageError if malformed)."""
    match = _DATA_URI_RE.match(uri)
    if not match:
        raise ImageError("not a base64 data:image URI")
    try:
        return base64.b64decode(uri[match.end() :], validate=False)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"malformed base64 in data URI ({exc})") from exc


def to_data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def sniff_mime(data: bytes) -> str:
    """MIME type from magic bytes (PNG, JPEG, WebP, GIF), defaulting to PNG."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "image/png"


def fit_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """Downscale (keeping aspect) so width*height <= max_pixels; never upscales."""
    width, height = image.size
    if width * height <= max_pixels:
        return image
    scale = (max_pixels / (width * height)) ** 0.5
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
