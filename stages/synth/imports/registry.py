"""`trajforge import FORMAT FILE`: the readers by format name, and `auto`.

Each reader module names its format (`NAME`), its tool-name table (`TOOLS`, on top of
`base.COMMON_TOOLS`) and one function `read(record, ctx) -> ImportRecord`; `base` does the rest
(images, tool names, rollouts, writing). `detect` recognises a file's format from its first
records and says why, so `auto` can tell the user what it chose.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pipeline.store import RunStore
from stages.synth.imports import chatml, ms_swift, openai, r1v4, sharegpt, thyme
from stages.synth.imports.base import ImportReport, LineError, ToolMap, import_file, iter_records

READERS: dict[str, ModuleType] = {m.NAME: m for m in (r1v4, chatml, sharegpt, ms_swift, openai, thyme)}
FORMATS = (*READERS, "auto")


@dataclass
class Detection:
    format: str
    reason: str


def _looks(record: dict[str, Any]) -> Detection | None:
    """The format one record is written in, with the evidence, or None."""
    response = record.get("response")
    if isinstance(response, dict) and "full_response" in response:
        return Detection("r1v4", "'response.full_response' holds R1V4 text")
    if isinstance(response, str) and ("<sandbox_output>" in response or "<code>" in response):
        return Detection("thyme", "'response' holds <code> and <sandbox_output> blocks")
    messages = record.get("messages") or record.get("conversations") or record.get("trace")
    if isinstance(messages, str):
        try:
            messages = json.loads(messages)
        except ValueError:
            messages = None
    if not isinstance(messages, list):
        return None
    items = [m for m in messages if isinstance(m, dict)]
    roles = {m.get("role", m.get("from")) for m in items}
    texts = " ".join(
        str(m.get("content", m.get("value", "")))
        for m in items
        if isinstance(m.get("content", m.get("value")), str)
    )
    if any(m.get("tool_calls") for m in items) or (
        "tool" in roles and any("tool_call_id" in m for m in items)
    ):
        return Detection("openai", "assistant messages carry native 'tool_calls' answered by 'tool' messages")
    if roles & {"tool_call", "tool_response"}:
        return Detection("ms-swift", "messages with 'tool_call' / 'tool_response' roles")
    if record.get("type") == "chatml" or ("<tool_response>" in texts and "<tools>" in texts):
        return Detection("chatml", "<tools> in the prompt and <tool_response> in user turns")
    if "from" in next(iter(items), {}) or record.get("images") is not None or "<observation>" in texts:
        return Detection("sharegpt", "ShareGPT turns ('conversations' or 'messages' with 'images')")
    if "<tool_response>" in texts:
        return Detection("chatml", "<tool_response> in user turns")
    return Detection("sharegpt", "chat messages without native tool calls")


def detect(path: Path, sample: int = 5) -> Detection:
    """Recognise a file's format from its first records (ValueError when nothing fits)."""
    found: list[Detection] = []
    for _, record in iter_records(path):
        if isinstance(record, dict) and (hit := _looks(record)) is not None:
            found.append(hit)
        if len(found) >= sample:
            break
    if not found:
        raise ValueError(
            f"{path.name}: no record looks like a known trajectory format; name it: "
            f"trajforge import {{{'|'.join(READERS)}}} {path.name}"
        )
    best = max({d.format for d in found}, key=lambda f: sum(d.format == f for d in found))
    return next(d for d in found if d.format == best)


def import_trajectories(
    fmt: str, path: Path, store: RunStore, *, tool_map: dict[str, str] | None = None, progress: bool = True
) -> tuple[ImportReport, Detection | None]:
    """Import `path` in format `fmt` (or `auto`); returns the report and, for auto, what was chosen."""
    detection = detect(path) if fmt == "auto" else None
    name = detection.format if detection else fmt
    if name not in READERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    module = READERS[name]
    tools = ToolMap(module.TOOLS, tool_map or {})
    return import_file(path, store, name, module.read, tools, progress=progress), detection


__all__ = ["FORMATS", "READERS", "Detection", "ImportReport", "LineError", "detect", "import_trajectories"]
