"""R1V4 API outputs (JSONL): the `r1v4` reader of `trajforge import`.

Layout, from SkyworkAI/Skywork-R1V `r1v4/parse_utils.py` (rounds of think, tool_call JSON and
observation JSON, then think and answer) and `r1v4/test_cases.jsonl`: each line `{"id", "image":
<path relative to the file, or a data URI>, "question", "answer"?, "response": {"full_response":
"<think>...</think><tool_call>...</tool_call><observation>...</observation>...<answer>...</answer>"}}`.
An observation is JSON such as `{"result": ..., "type": "code", "images": ["data:image/png;base64,
..."]}` or plain text; every image anywhere in it is kept (Skywork's own viewer, `r1v4/visual.py`,
takes images from anywhere in the response). Rollouts of one question (R1V4 publishes 4) get their
own index: `rollout` from the record, else their order in the file.

Shares everything but the record layout with the other readers (`stages.synth.imports.base`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

from pipeline.format import read_trajectory
from pipeline.schema import Category
from pipeline.store import RunStore
from stages.synth.imports.base import (
    Context,
    ImportRecord,
    ImportReport,
    ImportTurn,
    LineError,
    ToolMap,
    gold_of,
    import_file,
    rollout_of,
)

NAME = "r1v4"
TOOLS: dict[str, tuple[str, dict[str, str]]] = {}
_CATEGORIES = set(get_args(Category)) - {"plan"}  # a plan sample is derived, never imported

__all__ = ["ImportReport", "LineError", "import_r1v4", "read"]


def read(record: dict[str, Any], ctx: Context) -> ImportRecord:
    """One JSONL record -> an ImportRecord (LineError on anything unusable)."""
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise LineError("missing 'question'")
    response = record.get("response")
    full = response.get("full_response") if isinstance(response, dict) else response
    if not isinstance(full, str) or not full.strip():
        raise LineError("missing 'response.full_response'")
    images = ctx.images.refs(record.get("image"))
    parsed = read_trajectory(full)  # lenient: the report's own outputs are not canonical
    turns = []
    for turn in parsed.turns:
        observation = None if turn.observation is None else ctx.images.observation(turn.observation)
        turn.observation = None
        ctx.tools.apply(turn)
        turns.append(ImportTurn(turn=turn, observation=observation))
    gold, aliases = gold_of(record)
    return ImportRecord(
        question=question,
        turns=turns,
        images=images,
        gold=gold,
        aliases=aliases,
        source_id=str(record.get("id", "")),
        rollout=rollout_of(record),
        teacher=str(record.get("teacher", "r1v4")),
        mode="general" if record.get("mode") == "general" else "deepresearch",
        category=record.get("category", "other") if record.get("category") in _CATEGORIES else "other",
    )


def import_r1v4(
    path: Path, store: RunStore, *, shard_size: int = 256, progress: bool = True, tools: ToolMap | None = None
) -> ImportReport:
    """Import an R1V4 JSONL file into `store/raw`, skipping trajectories already there (resume)."""
    return import_file(
        path, store, NAME, read, tools or ToolMap(TOOLS), shard_size=shard_size, progress=progress
    )
