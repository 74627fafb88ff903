"""LLaMA-Factory ShareGPT rows: DeepEyesV2, Mini-o3, and trajforge's own `export llamafactory`.

Layouts:
- LLaMA-Factory (hiyouga/LLaMA-Factory `data/README.md`, sharegpt format): `conversations` of
  `{from, value}` with `human` / `gpt` / `function_call` / `observation` / `system`, or OpenAI-style
  `messages` of `{role, content}`; optional `system` and `tools` (a JSON string) columns; `images`
  with one `<image>` placeholder per image, in order. `dataset_info.json` beside the file may
  rename the columns and tags: it is honoured when present.
- DeepEyesV2 (Visual-Agent/DeepEyesV2 `cold_start/data/dataset_info.json`: sharegpt with
  `messages` / `images` and role tags; `evaluation/VLMEvalKit/vlmeval/api/prompt.py`): assistant
  turns act with `<code>```python ...```</code>` (mapped to `code`) or `<answer>`; the result is
  the next user turn ("Code execution result: ..." with the produced images as placeholders).
- Mini-o3 cold start (its preprocessing in dddraxxx/Mini-o3 `scripts/preprocess_coldstart.py` and
  `tests/minio3/test_preprocess_coldstart_sft.py`): `conversations` of `{from, value}`, `images`
  (root image, then each zoom-in), `rollout_index`; the action is
  `<grounding>{"bbox_2d": [...], "source": "original_image" | "observation_N"}</grounding>`, kept as
  the tool `grounding` with that schema; the observation is a human turn holding the crop's
  `<image>`.
- trajforge's own export (`pipeline/exports.py`): R1V4 turns in assistant messages, observations
  as `<observation>...</observation>` user turns, `mode` and `category` columns.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pipeline import lenient
from pipeline.format import Turn
from stages.synth.imports.base import Context, ImportRecord, LineError, gold_of, rollout_of, tool_specs
from stages.synth.imports.conversation import Message, build_record, text_of

NAME = "sharegpt"
#: Mini-o3's zoom-in action is not a trajforge tool: it keeps its name and this schema.
GROUNDING_SCHEMA = {
    "type": "object",
    "properties": {"bbox_2d": {"type": "array", "items": {"type": "number"}}, "source": {"type": "string"}},
    "required": ["bbox_2d"],
}
TOOLS: dict[str, tuple[str, dict[str, str]]] = {}
ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "function_call": "call",
    "tool_call": "call",
    "observation": "tool",
    "tool": "tool",
    "tool_response": "tool",
    "system": "system",
}
_GROUNDING = re.compile(r"<grounding>\s*(.*?)\s*</grounding>", re.DOTALL)
_THINK = re.compile(r"</?think>")


def grounding_turn(text: str) -> Turn | None:
    """Mini-o3's `<grounding>{...}</grounding>` action as a call of the tool `grounding`."""
    match = _GROUNDING.search(text)
    if match is None:
        return None
    turn = Turn(
        think=_THINK.sub("", text[: match.start()]).strip(), raw=text, acted=True, tool_name="grounding"
    )
    read = lenient.read_json(match.group(1), expect=dict)
    if read.ok:
        turn.arguments = read.value
        turn.repairs = list(read.repairs)
    else:
        turn.errors.append(f"turn 0: unreadable <grounding> JSON ({read.error})")
    if "<answer>" in text[match.end() :]:
        from pipeline.format import CALL_AND_ANSWER

        turn.errors.append(f"turn 0: {CALL_AND_ANSWER}")
    return turn


def _columns(ctx: Context) -> tuple[dict[str, str], dict[str, str]]:
    """Column and tag names from the `dataset_info.json` entry beside the file that names it."""
    info = ctx.base / "dataset_info.json"
    if not info.is_file() or ctx.file is None:
        return {}, {}
    try:
        entries = json.loads(info.read_text(encoding="utf-8"))
    except ValueError:
        return {}, {}
    for entry in entries.values() if isinstance(entries, dict) else []:
        if isinstance(entry, dict) and entry.get("file_name") == ctx.file.name:
            return dict(entry.get("columns") or {}), dict(entry.get("tags") or {})
    return {}, {}


def messages_of(record: dict[str, Any], ctx: Context) -> list[Message]:
    columns, tags = _columns(ctx)
    raw = record.get(columns.get("messages", "")) or record.get("messages") or record.get("conversations")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raw = None
    if not isinstance(raw, list) or not raw:
        raise LineError("missing 'messages' or 'conversations' (a list of turns)")
    role_tag = tags.get("role_tag")
    content_tag = tags.get("content_tag")
    renamed = {
        tags[k]: v
        for k, v in (
            ("user_tag", "user"),
            ("assistant_tag", "assistant"),
            ("observation_tag", "tool"),
            ("function_tag", "call"),
            ("system_tag", "system"),
        )
        if tags.get(k)
    }
    messages = []
    system = record.get(columns.get("system", "system"))
    if isinstance(system, str) and system.strip():
        messages.append(Message(role="system", text=system))
    for item in raw:
        if not isinstance(item, dict):
            raise LineError("a turn is not an object")
        role = item.get(role_tag) if role_tag else item.get("role", item.get("from"))
        content = item.get(content_tag) if content_tag else item.get("content", item.get("value"))
        role = renamed.get(role, ROLES.get(role, role))
        text, images = text_of(content)
        message = Message(role=role, text=text, images=images)
        if role == "assistant":
            message.turn = grounding_turn(text)
        if role == "call":
            message.calls = _calls(text)
        messages.append(message)
    return messages


def _calls(text: str) -> list[dict[str, Any]]:
    read = lenient.read_json(text, expect=(dict, list))
    if not read.ok:
        raise LineError(f"function_call turn is not JSON ({read.error})")
    calls = read.value if isinstance(read.value, list) else [read.value]
    return [
        {"name": c.get("name"), "arguments": c.get("arguments", {})} for c in calls if isinstance(c, dict)
    ]


def read(record: dict[str, Any], ctx: Context) -> ImportRecord:
    columns, _ = _columns(ctx)
    images = record.get(columns.get("images", "images")) or record.get("image") or []
    result = build_record(messages_of(record, ctx), ctx, images if isinstance(images, list) else [images])
    result.tools = tool_specs(record.get(columns.get("tools", "tools")), ctx.tools)
    if any(t.turn.tool_name == "grounding" for t in result.turns) and not any(
        t.name == "grounding" for t in result.tools
    ):
        result.tools.append(ctx.tools.spec("grounding", GROUNDING_SCHEMA))
    uses_code = any(t.turn.tool_name == "code" for t in result.turns)
    if result.tools and uses_code and not any(t.name == "code" for t in result.tools):
        result.tools.append(ctx.tools.spec("code", CODE_SCHEMA))
    result.gold, result.aliases = gold_of(record)
    result.rollout = rollout_of(record)
    result.source_id = str(record.get("id", record.get("uid", record.get("sample_index", ""))))
    result.mode = record.get("mode") or ("general" if _code_only(result) else "deepresearch")
    result.category = str(record.get("category", "other"))
    result.teacher = str(record.get("teacher", "") or "")
    return result


CODE_SCHEMA = {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]}


def _code_only(record: ImportRecord) -> bool:
    names = {t.turn.tool_name for t in record.turns if t.turn.tool_name}
    return bool(names) and names <= {"code"}
