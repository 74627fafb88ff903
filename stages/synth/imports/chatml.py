"""ChatML agent logs (QwQ / Qwen-Agent, WebDancer): tools in `<tools>`, results in `<tool_response>`.

Layout, from the trajectories Alibaba-NLP published with WebDancer (repository Alibaba-NLP/WebAgent,
`WebDancer/datasets/sample_traj.jsonl`; 100 of them are in ../shared/reference/webdancer/): one JSON
object per line, `{"type": "chatml", "messages": [{"role", "content"}], "functions", "answer":
[[gold, ...]], ...}`. The system message sets the persona; the first user message lists the tools
inside `<tools>...</tools>` (JSON objects separated by commas or lines) and ends with
`User: <question>`; each assistant message is `<think>...</think>` then one
`<tool_call>{"name", "arguments"}</tool_call>` or `<answer>...</answer>`; the result comes back in
the next user message inside `<tool_response>...</tool_response>`. The tools `search` (`query`, a
list) and `visit` (`url`, `goal`) map onto `text_search` and `web_visit`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pipeline import lenient
from stages.synth.imports.base import Context, ImportRecord, LineError, gold_of, rollout_of, tool_specs
from stages.synth.imports.conversation import Message, build_record, text_of

NAME = "chatml"
TOOLS: dict[str, tuple[str, dict[str, str]]] = {}
_TOOLS_BLOCK = re.compile(r"<tools>\s*(.*?)\s*</tools>", re.DOTALL)
_USER_PREFIX = re.compile(r"(?:^|\n)\s*User:\s*", re.IGNORECASE)


def declared_tools(text: str) -> list[Any]:
    """The tool objects inside `<tools>`: a JSON list, comma-separated objects, or one per line."""
    match = _TOOLS_BLOCK.search(text)
    if match is None:
        return []
    body = match.group(1)
    for candidate in (body, f"[{body}]"):
        read = lenient.read_json(candidate, expect=list)
        if read.ok and all(isinstance(t, dict) for t in read.value):
            return read.value
    tools = []
    for line in body.splitlines():
        try:
            tools.append(json.loads(line))
        except ValueError:
            continue
    return tools


def question_of(text: str) -> str:
    """The question in a first user message that also carries the tool instructions."""
    if _TOOLS_BLOCK.search(text) is None:
        return text
    prefixes = list(_USER_PREFIX.finditer(text))
    if prefixes:
        return text[prefixes[-1].end() :].strip()
    return _TOOLS_BLOCK.sub("", text).strip()


def read(record: dict[str, Any], ctx: Context) -> ImportRecord:
    raw = record.get("messages") or record.get("conversations")
    if not isinstance(raw, list) or not raw:
        raise LineError("missing 'messages' (a list of {role, content})")
    messages: list[Message] = []
    declared: list[Any] = []
    for item in raw:
        if not isinstance(item, dict):
            raise LineError("a message is not an object")
        text, images = text_of(item.get("content"))
        role = item.get("role", "")
        if role in ("system", "user") and not declared:
            declared = declared_tools(text)
        if role == "user" and text.lstrip().startswith("<tool_response>"):
            role = "tool"
        messages.append(
            Message(role=role, text=text, images=images, reasoning=item.get("reasoning_content") or "")
        )
    result = build_record(messages, ctx, record.get("images") or [], question_of=question_of)
    result.tools = tool_specs(declared or record.get("functions") or record.get("tools"), ctx.tools)
    result.gold, result.aliases = gold_of(record)
    result.rollout = rollout_of(record)
    result.source_id = str(record.get("id", record.get("uid", "")))
    result.teacher = str(record.get("model", record.get("teacher", "")) or "")
    return result
