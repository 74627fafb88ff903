"""Reply decoding: every shape a chat-completions server sends, read into one `TeacherReply`.

Servers differ in where a turn's parts arrive:
- `message.content`: text (the R1V4 turn, prose, or null when the reply is only tool calls);
- `message.reasoning_content` (vLLM, SGLang, DeepSeek) or `message.reasoning` (OpenRouter, newer
  vLLM): the thinking, when the server runs a reasoning parser; OpenRouter also sends
  `message.reasoning_details` (`reasoning.text` / `reasoning.summary` / `reasoning.encrypted`
  parts), the only readable thinking for some models (Gemini's summaries): read when
  `reasoning` is empty;
- `message.tool_calls`: native function calls (`--tool-call-parser`, OpenAI, OpenRouter);
- `message.refusal`: OpenAI's structured refusal;
- streaming (`stream=True`): the same parts as deltas, tool calls as indexed argument pieces.
Decoding keeps each part apart; `pipeline.format.read_reply` turns them into one turn. What the
decoder reshapes losslessly (arguments sent as an object) is named in `normalisations`; a reply
without `usage` is marked `tokens_estimated` (the client fills in an estimate).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

#: Keys of a chat-completions response that are standard; everything else lands in `extra`.
_STANDARD_KEYS = {
    "id",
    "object",
    "created",
    "model",
    "choices",
    "usage",
    "system_fingerprint",
    "service_tier",
    "prompt_logprobs",
    "kv_transfer_params",
    "metadata",
    "moderation",
}
#: Message fields that carry a reasoning parser's output, in the order they are preferred.
REASONING_FIELDS = ("reasoning_content", "reasoning")


@dataclass
class TeacherReply:
    """One teacher answer, its parts as the server sent them, and what it cost."""

    text: str  # message content ("" when the server sent none)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # non-standard response keys ("trajforge")
    finish_reason: str | None = None
    reasoning: str = ""  # reasoning_content / reasoning, when the server splits thinking off
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # {"id", "name", "arguments" (raw str)}
    refusal: str | None = None
    normalisations: list[str] = field(default_factory=list)  # pipeline.format.NORMALISATIONS names
    tokens_estimated: bool = False  # the server sent no usage: the token counts are estimates

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TeacherReply:
        """A reply from its stored form (older cache entries lack the newer fields)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


#: How a refusal written as text starts (no R1V4 tags, no tool call): the common phrasings.
_REFUSAL_RE = re.compile(
    r"^\s*(?:i['’]m sorry|i am sorry|sorry, (?:but )?i|i (?:can(?:no|['’])t|won['’]t|am unable|['’]m unable|am not able)"
    r"|as an ai\b|i must (?:decline|refuse))",
    re.IGNORECASE,
)


def refusal_of(reply: TeacherReply) -> str | None:
    """The refusal a reply carries: OpenAI's `message.refusal`, or refusing text with no turn in it."""
    if reply.refusal:
        return reply.refusal
    text = reply.text.strip()
    if reply.tool_calls or not text or "<" in text:
        return None
    return text if _REFUSAL_RE.match(text) and len(text) < 600 else None


class MalformedReply(Exception):
    """A 2xx response that carries no usable message (retried like a transient error)."""


def _get(obj: Any, name: str) -> Any:
    """A field of an SDK object or dict, including non-standard ones (pydantic `model_extra`)."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "model_extra", None) or {}
        value = extra.get(name)
    return value


def _reasoning(message: Any) -> str:
    for name in REASONING_FIELDS:
        value = _get(message, name)
        if isinstance(value, str) and value:
            return value
    details = _get(message, "reasoning_details")
    if isinstance(details, list):  # OpenRouter: text parts, else summaries; encrypted ones unreadable
        parts = [str(_get(d, "text") or _get(d, "summary") or "") for d in details]
        return "".join(p for p in parts if p)
    return ""


def _arguments_were_object(message: Any) -> bool:
    return any(
        (arguments := _get(_get(call, "function"), "arguments")) is not None
        and not isinstance(arguments, str)
        for call in _get(message, "tool_calls") or []
    )


def _tool_call(raw: Any, index: int) -> dict[str, Any]:
    function = _get(raw, "function") or {}
    arguments = _get(function, "arguments")
    if arguments is not None and not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)  # a server that sends an object
    return {
        "id": str(_get(raw, "id") or f"call_{index}"),
        "name": str(_get(function, "name") or ""),
        "arguments": arguments or "",
    }


def _extra(completion: Any) -> dict[str, Any]:
    if isinstance(completion, dict):
        return {key: value for key, value in completion.items() if key not in _STANDARD_KEYS}
    extra = dict(getattr(completion, "model_extra", None) or {})
    for key in _STANDARD_KEYS:
        extra.pop(key, None)
    return extra


def _check(reply: TeacherReply) -> TeacherReply:
    if not (reply.text or reply.reasoning or reply.tool_calls or reply.refusal):
        raise MalformedReply("response message has no content, reasoning, tool calls or refusal")
    return reply


def decode_completion(completion: Any, latency: float) -> TeacherReply:
    """A TeacherReply from a (non-streamed) chat completion, as the JSON body (a dict) or the
    SDK's ChatCompletion; MalformedReply when it has no message."""
    choices = _get(completion, "choices")
    if not choices or not isinstance(choices, list | tuple):
        raise MalformedReply("response has no choices")
    choice = choices[0]
    message = _get(choice, "message")
    if message is None:
        raise MalformedReply("response choice has no message")
    content = _get(message, "content")
    usage = _get(completion, "usage")
    normalisations = ["arguments_as_object"] if _arguments_were_object(message) else []
    return _check(
        TeacherReply(
            text=content if isinstance(content, str) else "",
            reasoning=_reasoning(message),
            tool_calls=[_tool_call(call, i) for i, call in enumerate(_get(message, "tool_calls") or [])],
            refusal=_get(message, "refusal") or None,
            prompt_tokens=int(_get(usage, "prompt_tokens") or 0),
            completion_tokens=int(_get(usage, "completion_tokens") or 0),
            latency_s=latency,
            extra=_extra(completion),
            finish_reason=_get(choice, "finish_reason"),
            normalisations=normalisations,
            tokens_estimated=_no_usage(usage),
        )
    )


def _no_usage(usage: Any) -> bool:
    """No usage, or one that counts nothing (some servers send zeros instead of leaving it out)."""
    return usage is None or not (_get(usage, "prompt_tokens") or _get(usage, "completion_tokens"))


class StreamAccumulator:
    """Folds streamed chunks (content, reasoning, tool-call pieces, refusal, usage) into a reply."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Any = None
        self.extra: dict[str, Any] = {}
        self.chunks = 0

    def add(self, chunk: Any) -> None:
        self.chunks += 1
        self.extra.update(_extra(chunk))
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        for choice in getattr(chunk, "choices", None) or []:
            if getattr(choice, "index", 0):
                continue  # n > 1 is never asked for
            delta = getattr(choice, "delta", None)
            if (content := _get(delta, "content")) and isinstance(content, str):
                self.text.append(content)
            if reasoning := _reasoning(delta):
                self.reasoning.append(reasoning)
            if refusal := _get(delta, "refusal"):
                self.refusal.append(str(refusal))
            for piece in _get(delta, "tool_calls") or []:
                index = int(_get(piece, "index") or 0)
                call = self.calls.setdefault(index, {"id": "", "name": "", "arguments": ""})
                call["id"] = call["id"] or str(_get(piece, "id") or "")
                function = _get(piece, "function")
                call["name"] += str(_get(function, "name") or "") if not call["name"] else ""
                call["arguments"] += str(_get(function, "arguments") or "")
            if getattr(choice, "finish_reason", None):
                self.finish_reason = choice.finish_reason

    def reply(self, latency: float) -> TeacherReply:
        if not self.chunks:
            raise MalformedReply("stream ended without a chunk")
        calls = [{**call, "id": call["id"] or f"call_{index}"} for index, call in sorted(self.calls.items())]
        return _check(
            TeacherReply(
                text="".join(self.text),
                reasoning="".join(self.reasoning),
                tool_calls=calls,
                refusal="".join(self.refusal) or None,
                prompt_tokens=int(getattr(self.usage, "prompt_tokens", 0) or 0),
                completion_tokens=int(getattr(self.usage, "completion_tokens", 0) or 0),
                latency_s=latency,
                extra=self.extra,
                finish_reason=self.finish_reason,
                tokens_estimated=_no_usage(self.usage),
            )
        )
