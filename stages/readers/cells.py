"""Reading one cell of a published dataset row: images in every shape datasets ship, nested fields.

One owner for what seeds and benchmark loaders both need, so an image cell means the same thing
wherever a row comes from: a `datasets` image struct `{bytes, path}`, raw bytes, a data URI, bare
base64 text (Thyme-RL stores its images so), a file path relative to the dataset, or a PIL image.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path
from typing import Any

from PIL import Image

from pipeline.images import ImageError, data_uri_bytes, is_data_uri, read_file_bytes

#: Text this long made only of base64 characters is an image, not a file name.
_BASE64_MIN_CHARS = 256
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")


class SeedError(ValueError):
    """One row that cannot be used; the message says which and why."""


def _looks_base64(text: str) -> bool:
    return len(text) >= _BASE64_MIN_CHARS and _BASE64.fullmatch(text) is not None


def image_bytes(value: Any, base: Path) -> bytes:
    """Bytes of one image cell; `base` is the folder relative paths resolve against."""
    if isinstance(value, dict):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            return image_bytes(value["path"], base)
        raise SeedError("image cell has neither bytes nor path")
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return buffer.getvalue()
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        if is_data_uri(value):
            return data_uri_bytes(value)
        if _looks_base64(value):
            try:
                return base64.b64decode(value + "=" * (-len(value.strip()) % 4))
            except (binascii.Error, ValueError) as exc:
                raise SeedError(f"image cell is not valid base64 ({exc})") from None
        file = Path(value) if Path(value).is_absolute() else base / value
        try:  # only a regular file, size-limited: a row may name /dev/zero or a FIFO
            return read_file_bytes(file)
        except ImageError as exc:
            raise SeedError(f"image file {exc}") from None
    raise SeedError(f"image cell of type {type(value).__name__} is not an image")


#: What `pick` returns for a path the row does not have.
MISSING = object()


def pick(row: dict[str, Any], path: str) -> Any:
    """The value at a column path: `question`, `reward_model.ground_truth`, `texts.0.user`.

    A name that is a column as a whole wins over a dotted reading of it. Returns the sentinel
    `MISSING` (never raises) when the path does not exist, so callers say which column it was.
    """
    if path in row:
        return row[path]
    value: Any = row
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif (
            isinstance(value, list | tuple)
            and part.lstrip("-").isdigit()
            and -len(value) <= int(part) < len(value)
        ):
            value = value[int(part)]
        else:
            return MISSING
    return value
