"""Which role a chat request asks the oracle to play: judge, planner or executor.

Recognised from the request's structure and content, never from the exact wording of
trajforge's prompt files, so a user who rewrites the prompts (R1V4's own system prompts, say)
still gets a working offline run:
- judge: the last user message carries a JSON object with a question and the fields a judge
  reads (`predicted`, `observation_text`, `next_thought`, `last_thought`, `gold_answer`), or the
  request asks for structured output (`response_format`) and is no planner;
- planner: no `tools`, no assistant turn that acted (R1V4 tags or tool calls), and instructions
  that ask for a plan written as JSON steps (`tool_name`/`parameters`, a JSON array or list);
- executor: everything else.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from world.messages import Message, payload_of

Role = Literal["judge", "planner", "executor"]
JUDGE_KEYS = frozenset({"predicted", "gold_answer", "observation_text", "next_thought", "last_thought"})
_ACTED_RE = re.compile(r"<(?:think|tool_call|answer)>|</think>")
_PLAN_RE = re.compile(r"\bplan(?:s|ning|ner)?\b", re.IGNORECASE)
_STEPS_RE = re.compile(
    r"tool_name|\"parameters\"|\bparameters\b|json\s+(?:array|list)|list of steps|steps?\b",
    re.IGNORECASE,
)
_ACTION_PROTOCOL_RE = re.compile(r"<tool_call>|<answer>")


def judge_message(messages: list[Message]) -> Message | None:
    """The user message that carries the judge case: the last one, or the one before a re-ask
    (the judge's reply shown back and a stricter instruction after it)."""
    users = [m for m in messages if m.role == "user"]
    candidates = users[-1:] if not any(m.role == "assistant" for m in messages) else users[::-1]
    return next((m for m in candidates if _case_of(m)), None)


def judge_payload(messages: list[Message]) -> dict[str, Any]:
    """The judge case the request carries ({} when it holds none)."""
    message = judge_message(messages)
    return _case_of(message) if message is not None else {}


def _case_of(message: Message) -> dict[str, Any]:
    if not any(f'"{key}"' in message.text for key in JUDGE_KEYS):
        return {}  # cheap gate: an executor's observation (a whole page) is never scanned for JSON
    data = payload_of(message.text)
    return data if "question" in data and JUDGE_KEYS & set(data) else {}


def _acted(message: Message) -> bool:
    return message.role == "assistant" and bool(message.calls or _ACTED_RE.search(message.text))


def asks_for_plan(messages: list[Message]) -> bool:
    """Instructions (system text, else the first user text) that ask for a plan of JSON steps."""
    system = "\n".join(m.text for m in messages if m.role == "system")
    if not system:
        system = next((m.text for m in messages if m.role == "user"), "")
    if _ACTION_PROTOCOL_RE.search(system):
        return False  # an executor prompt: it teaches the <tool_call>/<answer> protocol
    return bool(_PLAN_RE.search(system) and _STEPS_RE.search(system))


def structured(body: dict[str, Any]) -> bool:
    """The request asks for a JSON reply (`json_schema` or `json_object`, not `text`)."""
    response_format = body.get("response_format")
    return isinstance(response_format, dict) and response_format.get("type") in ("json_schema", "json_object")


def role_of(body: dict[str, Any], messages: list[Message]) -> Role:
    if judge_payload(messages):
        return "judge"
    if not body.get("tools") and not any(_acted(m) for m in messages) and asks_for_plan(messages):
        return "planner"
    if structured(body) and not any(_acted(m) for m in messages):
        return "judge"
    return "executor"
