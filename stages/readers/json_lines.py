"""JSON lines as people write them, streamed: one object per line, objects written back to back or
pretty-printed over several lines (BrowseComp-VL copies), or a `.json` file holding one array.

Read here rather than by `datasets`' JSON builder because seeds and benchmarks need what it does
not give: a broken line costs that line only (the builder fails the whole file), rows may differ
in type (an answer that is a string in one row and a list in the next), and rows keep the line
they start on, which is their id when the file has none (BrowseComp-VL).

A file that is one top-level array is streamed item by item (`_array_records`): read line by
line it was one growing value, re-parsed on every line (10K rows: 33 s instead of ~3). A broken
line that looked unfinished used to swallow the good line after it; now that line is read again
on its own.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_DECODER = json.JSONDecoder()
_CHUNK = 1 << 20


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
    with open(path, "rb") as handle:
        head = handle.read(4096)
    body = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if body.startswith(b"["):
        yield from _array_records(path, 1 + head[: len(head) - len(body)].count(b"\n"))
    else:
        yield from _line_records(path)


def _line_records(path: Path) -> Iterator[tuple[str, Any, str]]:
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
            if pending and _breaks_on_its_own(pending + line) and not _breaks_on_its_own(line):
                # the value above never ended and this line starts afresh: the broken value
                # costs its own line(s), not this one
                yield f"line {start}", None, "not valid JSON: the value never ends"
                pending = ""
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


def _breaks_on_its_own(text: str) -> bool:
    """Whether the first value of `text` is broken (not merely unfinished)."""
    for _, _, error in _values(text, 0):
        return bool(error)
    return False


def _array_records(path: Path, line: int) -> Iterator[tuple[str, Any, str]]:
    """Items of a file that is one top-level array (starting on `line`), each parsed once from
    a buffer of about one chunk (an item longer than a chunk is parsed again as it grows)."""
    where = f"line {line}"
    decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
    with open(path, "rb") as handle:
        text, pos, eof = "", 0, False

        def more() -> bool:
            nonlocal text, pos, eof
            if eof:
                return False
            chunk = handle.read(_CHUNK)
            eof = not chunk
            text = text[pos:] + decoder.decode(chunk, final=eof)
            pos = 0
            return True

        def skip_space() -> str:
            nonlocal pos
            while True:
                while pos < len(text) and text[pos].isspace():
                    pos += 1
                if pos < len(text) or not more():
                    return text[pos] if pos < len(text) else ""

        skip_space()
        pos += 1  # the "["
        index = 0
        while True:
            mark = skip_space()
            if mark == "]":
                pos += 1
                break
            if not mark:
                yield f"{where} item {index}", None, "not valid JSON: the file ends inside the array"
                return
            try:
                value, end = _DECODER.raw_decode(text, pos)
            except json.JSONDecodeError as exc:
                if exc.pos >= len(text) - 64 and more():
                    continue  # the item goes on in the next chunk: parse it again, whole
                error = f"not valid JSON: {exc.msg}; the rest of the array is skipped"
                yield f"{where} item {index}", None, error
                return
            if end >= len(text) - 1 and more():
                continue  # a number cut at the chunk's end may go on
            pos = end
            yield f"{where} item {index}", value, ""
            index += 1
            mark = skip_space()
            if mark == ",":
                pos += 1
            elif mark != "]":
                yield f"{where} item {index}", None, "not valid JSON: expected ',' or ']' after an item"
                return
        if skip_space():
            yield where, None, "not valid JSON: text after the top-level array is ignored"
