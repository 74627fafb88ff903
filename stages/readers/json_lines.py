"""JSON lines as people write them, streamed: one object per line, objects written back to back or
pretty-printed over several lines (BrowseComp-VL copies), or a `.json` file holding one array.

Read here rather than by `datasets`' JSON builder because seeds and benchmarks need what it does
not give: a broken line costs that line only (the builder fails the whole file), rows may differ
in type (an answer that is a string in one row and a list in the next), and rows keep the line
they start on, which is their id when the file has none (BrowseComp-VL).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_DECODER = json.JSONDecoder()


def _values(text: str, position: int) -> Iterator[tuple[int, Any, str]]:
    """(end, value, "") for each complete value from `position`, then (start, None, error) for
    broken text or (start, None, "") for a value that continues on the next line."""
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position >= len(text):
            return
        try:
            value, position = _DECODER.raw_decode(text, position)
        except json.JSONDecodeError as exc:
            unfinished = exc.pos >= len(text.rstrip())
            yield position, None, "" if unfinished else f"{exc.msg} (column {exc.colno})"
            return
        yield position, value, ""


def json_records(path: Path) -> Iterator[tuple[str, Any, str]]:
    """(where, value, "") per JSON value, or (where, None, error) per broken one; `where` is
    `line N`, the line the value starts on (`line N item K` inside a top-level array)."""
    pending, start = "", 0  # a value that spans lines, and the line it starts on
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield (
                    f"line {start if pending else number}",
                    None,
                    f"line {number} is not UTF-8 ({exc.reason})",
                )
                pending = ""
                continue
            if not pending:
                start = number
            text, pending = pending + line, ""
            for end, value, error in _values(text, 0):
                if value is None and not error:
                    pending = text[end:]  # the value goes on below; it started on `start`
                    break
                if value is None:
                    yield f"line {start}", None, f"not valid JSON: {error}"
                elif isinstance(value, list):
                    for index, item in enumerate(value):
                        yield f"line {start} item {index}", item, ""
                else:
                    yield f"line {start}", value, ""
                start = number  # a further value on this line starts here
    if pending.strip():
        yield f"line {start}", None, "not valid JSON: the file ends inside this value"
