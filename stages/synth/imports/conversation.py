"""Chat-shaped records (ChatML, ShareGPT, ms-swift, OpenAI messages) -> an `ImportRecord`.

Each format's reader only says what its messages look like: it turns its rows into `Message`s
(a role out of system / user / assistant / call / tool, text, native calls, attached images).
This module walks them the same way for all: the first user message is the question (its
`<image>` placeholders take the task's images); each assistant message is one turn; a `call`
message (LLaMA-Factory's `function_call`, ms-swift's `tool_call`) is the action of the assistant
text before it; a `tool` message, or a user message after a call, is that call's observation
(several results of one call are joined); `<image>` placeholders take the record's images in order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.chat import question_from_text
from pipeline.format import IMAGE_MARKER, Turn, read_reply
from stages.synth.imports.base import (
    Context,
    ImportRecord,
    ImportTurn,
    LineError,
    Observation,
    code_turn,
    take_placeholders,
)

#: Wrappers peers put around a tool result inside a user turn.
_RESULT_WRAPPERS = re.compile(
    r"^\s*<(observation|tool_response|sandbox_output)>\s*(.*?)\s*</\1>\s*$", re.DOTALL
)
_ERROR_TAIL = re.compile(r"(?:^|\n)Error: (?P<error>[^\n]*)$")


@dataclass
class Message:
    role: str  # system | user | assistant | call | tool
    text: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)  # native calls: {"id", "name", "arguments"}
    reasoning: str = ""
    images: list[Any] = field(default_factory=list)  # images attached to this message (content parts)
    call_id: str | None = None
    turn: Turn | None = None  # a turn the format's reader already read (an action tag of its own)


def text_of(content: Any) -> tuple[str, list[Any]]:
    """Text of a message's content (a string or content parts) and the images its parts carry;
    an image part becomes an `<image>` marker where it sat."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if isinstance(content, list):
        parts, images = [], []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, dict) and part.get("type") in ("image", "image_url", "input_image"):
                images.append(part)
                parts.append(IMAGE_MARKER)
        return "".join(parts), images
    return str(content), []


def build_record(
    messages: list[Message],
    ctx: Context,
    images: list[Any],
    *,
    question_of: Any = None,
) -> ImportRecord:
    """Walk `messages` into turns and observations. `images` is the record's image list (consumed
    by `<image>` placeholders in order); `question_of(text)` cuts the question out of the first
    user message when a format wraps it in instructions."""
    queue = list(images)
    system = [m for m in messages if m.role == "system"]
    rest = [m for m in messages if m.role != "system"]
    if not rest or rest[0].role != "user":
        raise LineError("no user message with the question before the first assistant turn")
    first = rest[0]
    text, task_images = _placeholders(first, queue, ctx, "question")
    question = question_from_text(text.replace(IMAGE_MARKER, "")).strip()
    if question_of is not None:
        question = question_of(question)
    turns: list[ImportTurn] = []
    pending: Message | None = None  # assistant text whose action is in the next `call` message
    for index, message in enumerate(rest[1:], 1):
        if message.role == "assistant" and not message.calls and _needs_call(message, rest, index):
            pending = message
            continue
        if message.role in ("assistant", "call"):
            think = pending.text if pending is not None and message.role == "call" else ""
            reasoning = pending.reasoning if pending is not None and message.role == "call" else ""
            pending = None
            turns.append(_turn(message, think, reasoning))
            continue
        if message.role in ("tool", "user"):
            last = turns[-1] if turns else None
            if last is None or last.turn.tool_name is None:
                raise LineError(
                    f"message {index + len(system)}: a {message.role} message that answers no tool call "
                    "(multi-question dialogues are not trajectories)"
                )
            obs = _observation(message, queue, ctx, f"message {index + len(system)}")
            if last.observation is None:
                last.observation = obs
            else:  # several results for one call (OpenAI's parallel calls, split tool turns)
                last.observation.text += "\n\n" + obs.text
                last.observation.images += obs.images
                last.observation.error = last.observation.error or obs.error
            continue
        raise LineError(f"message {index}: unknown role {message.role!r}")
    if pending is not None:
        turns.append(_turn(pending, "", ""))
    if queue:
        raise LineError(f"{len(queue)} images left over after every {IMAGE_MARKER} placeholder was matched")
    for item in turns:
        ctx.tools.apply(item.turn)
    return ImportRecord(question=question, turns=turns, images=task_images)


def _needs_call(message: Message, rest: list[Message], index: int) -> bool:
    """Assistant text with no action of its own, followed by a `call` message."""
    following = rest[index + 1] if index + 1 < len(rest) else None
    return following is not None and following.role == "call" and "<answer>" not in message.text


def _turn(message: Message, think: str, reasoning: str) -> ImportTurn:
    call_id = None
    if message.turn is not None:
        turn = message.turn
    elif message.role == "call" or message.calls:
        calls = message.calls
        call_id = calls[0].get("id") if calls else None
        content = think if message.role == "call" else message.text
        turn = read_reply(content, reasoning=reasoning or message.reasoning, tool_calls=calls).turns[0]
    else:
        turn = (
            code_turn(message.text)
            if "<code>" in message.text and "<tool_call>" not in message.text
            else None
        )
        if turn is None:
            turn = read_reply(message.text, reasoning=message.reasoning).turns[0]
    turn.raw = turn.raw or message.text
    return ImportTurn(turn=turn, call_id=call_id)


def _placeholders(message: Message, queue: list[Any], ctx: Context, where: str) -> tuple[str, list[str]]:
    """A message's own attached images, else as many of the record's images as it has placeholders."""
    if message.images:
        return message.text, [ctx.images.ref(img) for img in message.images]
    return take_placeholders(message.text, queue, ctx.images, where)


def _observation(message: Message, queue: list[Any], ctx: Context, where: str) -> Observation:
    text = message.text
    wrapped = _RESULT_WRAPPERS.match(text)
    if wrapped:
        text = wrapped.group(2)
    text, refs = _placeholders(Message(role="tool", text=text, images=message.images), queue, ctx, where)
    obs = ctx.images.observation(text)
    obs.images = refs + obs.images  # placeholder images first, then any inline data URIs
    error = _ERROR_TAIL.search(obs.text)
    if error and obs.error is None:  # trajforge's own exports write a tool error as a last line
        obs.error = error["error"]
        obs.text = obs.text[: error.start()]
    return obs
