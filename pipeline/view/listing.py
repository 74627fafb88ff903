"""The list page and its index: every trajectory as a compact row, shipped in chunks of script
files (they load from disk as well as over HTTP), so the first page shows after one chunk
whatever the run's size, and filtering and search run in the browser."""

from __future__ import annotations

import json
from typing import Any

from jinja2 import Environment

from pipeline.view.data import Entry, RunData

CHUNK_ROWS = 1000
PAGE_SIZE = 50
QUESTION_CHARS = 240


def row(e: Entry) -> list[Any]:
    """One list row; the order is list.js's field order (id, task, status, category, turns,
    calls, tools, outcome, question, stage)."""
    question = e.question if len(e.question) <= QUESTION_CHARS else e.question[: QUESTION_CHARS - 1] + "…"
    return [
        e.id, e.task_id, e.status, e.category, e.turns, e.tool_calls,
        " ".join(sorted(e.tools)), e.outcome, question, e.stage,
    ]  # fmt: skip


def chunk_count(data: RunData) -> int:
    return -(-len(data.entries) // CHUNK_ROWS)


def chunk_js(data: RunData, number: int) -> str | None:
    """`data/list-NNNN.js`: a call that hands rows to the list page."""
    if not 0 <= number < chunk_count(data):
        return None
    rows = [row(e) for e in data.entries[number * CHUNK_ROWS : (number + 1) * CHUNK_ROWS]]
    payload = json.dumps(rows, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    return f"tfListChunk({number},{payload});\n"


def render(env: Environment, data: RunData, base: dict[str, Any]) -> str:
    """The page itself holds no rows: only the filter choices and how many chunks to load."""
    total = len(data.entries)
    meta = {"chunks": chunk_count(data), "total": total, "page_size": PAGE_SIZE, "root": base["root"]}
    return env.get_template("list.html").render(**base, meta=meta, total=f"{total:,}", **data.facets)
