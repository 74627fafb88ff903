"""OpenAI chat messages with native tool calls (DataDesigner traces and the like).

Layout, from NVIDIA-NeMo/DataDesigner `docs/concepts/mcp/traces.md` (its `*__trace` columns): a
list of `{role, content}` messages; an assistant message may carry `tool_calls: [{id, type:
"function", function: {name, arguments: <JSON string>}}]` and `reasoning_content`; each result is a
`{role: "tool", content, tool_call_id}` message; content may be a string or content parts (`text`,
`image_url` with a URL or a data URI). The record keeps its `tools` list (OpenAI function
schemas) and the trace under `messages`, `trace` or any `*__trace` column.
"""

from __future__ import annotations

import json
from typing import Any

from stages.synth.imports.base import Context, ImportRecord, LineError, gold_of, rollout_of, tool_specs
from stages.synth.imports.conversation import Message, build_record, text_of

NAME = "openai"
TOOLS: dict[str, tuple[str, dict[str, str]]] = {}


def trace_of(record: dict[str, Any]) -> list[Any] | None:
    for key in ("messages", "trace"):
        if isinstance(record.get(key), list):
            return record[key]
    for key, value in record.items():
        if key.endswith("__trace"):
            value = json.loads(value) if isinstance(value, str) else value
            if isinstance(value, list):
                return value
    return None


def _calls(item: dict[str, Any]) -> list[dict[str, Any]]:
    calls = []
    for call in item.get("tool_calls") or []:
        function = call.get("function", call) if isinstance(call, dict) else {}
        arguments = function.get("arguments", "{}")
        calls.append(
            {
                "id": call.get("id"),
                "name": function.get("name"),
                "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
            }
        )
    return calls


def read(record: dict[str, Any], ctx: Context) -> ImportRecord:
    raw = trace_of(record)
    if not raw:
        raise LineError("missing 'messages' (or a '*__trace' column): a list of OpenAI chat messages")
    messages = []
    for item in raw:
        if not isinstance(item, dict):
            raise LineError("a message is not an object")
        text, images = text_of(item.get("content"))
        messages.append(
            Message(
                role=item.get("role", ""),
                text=text,
                calls=_calls(item) if item.get("role") == "assistant" else [],
                reasoning=item.get("reasoning_content") or item.get("reasoning") or "",
                images=images,
                call_id=item.get("tool_call_id"),
            )
        )
    result = build_record(messages, ctx, record.get("images") or [])
    result.tools = tool_specs(record.get("tools"), ctx.tools)
    result.gold, result.aliases = gold_of(record)
    result.rollout = rollout_of(record)
    result.source_id = str(record.get("id", record.get("uid", "")))
    result.teacher = str(record.get("model", "") or "")
    return result
