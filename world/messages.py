"""Chat messages as the oracle reads them, whatever shape the client sent them in.

Clients lay a conversation out in several ways: assistant turns as R1V4 text or as native
`tool_calls` (content null or prose, the think in `reasoning_content`/`reasoning`); tool results
as `<observation>` user turns or as `role: tool` messages (text or a list of parts), with produced
images inline or in a user message right after. `read_messages` reduces every one of them to
`Message(role, text, images, calls, reasoning)`, and folds a tool message's trailing image-only
user message into it, so the oracle replays one history shape.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pipeline.format import Turn, parse_turn
from pipeline.lenient import json_objects, read_json, strip_fence

OBSERVATION_OPEN = "<observation>"


@dataclass
class Call:
    """A native tool call read from `message.tool_calls` (arguments None: unreadable JSON)."""

    name: str
    arguments: dict[str, Any] | None


@dataclass
class Message:
    """A chat message reduced to what the oracle reads: role, text and image data URIs."""

    role: str
    text: str
    images: list[str] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    reasoning: str = ""  # reasoning_content / reasoning sent back with an assistant turn


def _content(content: Any) -> tuple[str, list[str]]:
    texts: list[str] = []
    images: list[str] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for item in content:
            if isinstance(item, str):
                texts.append(item)
            elif not isinstance(item, dict):
                continue
            elif item.get("type") == "text":
                texts.append(str(item.get("text", "")))
            elif item.get("type") in ("image_url", "input_image"):
                url = item.get("image_url")
                images.append(url.get("url", "") if isinstance(url, dict) else str(url or ""))
    return "".join(texts), images


def _calls(raw: Any) -> list[Call]:
    calls: list[Call] = []
    for item in raw if isinstance(raw, list) else []:
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            continue
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            read = read_json(arguments, expect=dict) if arguments.strip() else None
            arguments = read.value if read is not None and read.ok else ({} if read is None else None)
        calls.append(Call(str(function["name"]), arguments if isinstance(arguments, dict) else None))
    return calls


def read_messages(raw: list[dict[str, Any]]) -> list[Message]:
    """Every message in one shape; a `tool` message absorbs the image-only user turn after it."""
    out: list[Message] = []
    for message in raw:
        if not isinstance(message, dict):
            continue
        text, images = _content(message.get("content"))
        role = str(message.get("role", ""))
        reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
        read = Message(
            role=role,
            text=text,
            images=images,
            calls=_calls(message.get("tool_calls")) if role == "assistant" else [],
            reasoning=str(reasoning) if role == "assistant" else "",
        )
        if role == "user" and out and out[-1].role == "tool" and images and OBSERVATION_OPEN not in text:
            out[-1].images += images  # the tool's produced images, sent as a user turn
            continue
        out.append(read)
    return out


def assistant_turn(message: Message) -> Turn | None:
    """The oracle's view of one assistant message, or None when its action cannot be read.

    Native calls are read directly (name + arguments); text goes through `pipeline.format`
    (as lenient as that parser is), and a reasoning field sent back stands in for the think.
    """
    if message.calls:
        call = message.calls[0]
        if call.arguments is None:
            return None
        think = message.reasoning or message.text
        return Turn(think=think.strip(), tool_name=call.name, arguments=call.arguments)
    text = message.text
    if message.reasoning and "<think>" not in text:
        text = f"<think>{message.reasoning.strip()}</think>{text.strip()}"
    parsed = parse_turn(text)
    if len(parsed.turns) != 1:
        return None
    turn = parsed.turns[0]
    # the oracle follows what was done, not how neatly it was written: a readable action counts
    # even without its think or with prose around it (the filters judge the format)
    readable = (turn.tool_name is not None and turn.arguments is not None) or (
        turn.answer is not None and turn.tool_name is None
    )
    return turn if readable else None


def payload_of(text: str) -> dict[str, Any]:
    """The JSON object a request's message carries (fenced, bare, or inside prose), else {}."""
    inner, fenced = strip_fence(text)
    if fenced:
        try:
            value = json.loads(inner)
            if isinstance(value, dict):
                return value
        except ValueError:
            pass
    objects = [v for v in json_objects(text) if isinstance(v, dict)]
    return max(objects, key=len) if objects else {}
