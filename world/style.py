"""Teacher styles: the oracle's canonical reply reshaped the way real servers and models send it.

`shape()` turns a `Reply` into an `Output` (reasoning field, content, native tool calls, refusal,
finish reason) following `world.knobs.teacher_style` and the request itself, as vLLM, SGLang
and OpenAI do:
- a reasoning parser puts the think in `message.<reasoning_field>`, content keeps the action;
- native function calling (`tool_protocol: native` and a request with `tools`) answers a tool
  call as `message.tool_calls` with the think as plain prose (or in the reasoning field);
- formatting slips (`world.slips`), a refused first turn, a reply cut at half;
- the request's `stop` (cut before the first stop string, finish "stop"), `max_tokens` /
  `max_completion_tokens` (about 4 characters a token; beyond: cut, finish "length") and
  `response_format` (a judge then answers exactly its JSON object).
Every draw is a hash (reruns repeat); what was injected goes into the truth record.
The reply is a list of segments in generation order (reasoning, content, call arguments), so
a cut falls where a real server's would.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import world.slips as S
from pipeline.format import parse_turn
from world.knobs import TeacherStyle, drawn, unit
from world.roles import structured

REFUSAL = "I'm sorry, but I can't help with that."
CHARS_PER_TOKEN = 4
_JUDGE_OPENERS = {
    "answer": "Let me compare the predicted answer with the gold answer and its aliases.",
    "step": "Let me compare what the thought claims with what the observation actually shows.",
    "final": "Let me compare the final answer with what the last thought concluded.",
    "image": "Let me compare what the thought says it sees with what the image shows.",
}


@dataclass
class Segment:
    """One run of generated text: which message field it fills and the slips it carries."""

    field: str  # "reasoning" | "content" | "arguments" | "refusal"
    text: str
    slips: tuple[str, ...] = ()


@dataclass
class Output:
    """The assistant message to send, in parts, with what this turn injected."""

    segments: list[Segment]
    reasoning_field: str = "none"
    call: dict[str, str] | None = None  # {"id", "name"} of a native tool call
    finish: str = "stop"
    record: dict[str, Any] = field(default_factory=dict)

    def text(self, name: str) -> str | None:
        parts = [s.text for s in self.segments if s.field == name]
        return "".join(parts) if parts else None

    @property
    def generated(self) -> str:
        return "".join(s.text for s in self.segments)

    def tool_calls(self) -> list[dict[str, Any]] | None:
        if self.call is None:
            return None
        arguments = self.text("arguments") or ""
        return [
            {
                "id": self.call["id"],
                "type": "function",
                "function": {"name": self.call["name"], "arguments": arguments},
            }
        ]

    def message(self) -> dict[str, Any]:
        """`choices[0].message` of a non-streamed response."""
        content = self.text("content")
        message: dict[str, Any] = {
            "role": "assistant",
            "content": content if content or self.call is None else None,
            "refusal": self.text("refusal"),
        }
        if self.reasoning_field != "none" and self.text("reasoning") is not None:
            message[self.reasoning_field] = self.text("reasoning")
        calls = self.tool_calls()
        if calls:
            message["tool_calls"] = calls
        return message

    def deltas(self, size: int = 64) -> list[dict[str, Any]]:
        """The streamed deltas in order (after the role delta), as vLLM sends them."""
        out: list[dict[str, Any]] = []
        for segment in self.segments:
            pieces = [segment.text[i : i + size] for i in range(0, len(segment.text), size)]
            if segment.field == "arguments":
                assert self.call is not None
                out.append(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": self.call["id"],
                                "type": "function",
                                "function": {"name": self.call["name"], "arguments": ""},
                            }
                        ]
                    }
                )
                out += [{"tool_calls": [{"index": 0, "function": {"arguments": p}}]} for p in pieces]
                continue
            key = self.reasoning_field if segment.field == "reasoning" else segment.field
            out += [{key: p} for p in pieces]
        return out


def _call_id(*parts: object) -> str:
    return "call_" + hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:24]


def _first_user(messages: list[dict[str, Any]]) -> str:
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(
                    str(c.get("text", "")) for c in content if isinstance(c, dict) and c.get("type") == "text"
                )
            return str(content or "")
    return ""


def shape(
    reply: Any, body: dict[str, Any], style: TeacherStyle, salt: str, *, cut_half: bool = False
) -> Output:
    """The styled output of one reply (`cut_half`: an injected 'truncated' error)."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    question = _first_user(messages)
    if reply.role == "judge":
        out = _judge(reply, body, style, salt, messages)
    elif reply.role == "planner":
        out = _planner(reply, style)
    else:
        out = _executor(reply, body, style, salt, question, messages)
    knob_cut = reply.role == "executor" and drawn(style.truncate, "truncate", salt, question, len(messages))
    if out.record.get("refusal"):
        knob_cut = False
    _cut(out, body, half=cut_half or knob_cut, why="error" if cut_half else "truncate")
    return out


def _executor(
    reply: Any,
    body: dict[str, Any],
    style: TeacherStyle,
    salt: str,
    question: str,
    messages: list[dict[str, Any]],
) -> Output:
    reasoning = style.reasoning_field != "none"
    first_turn = not any(m.get("role") == "assistant" for m in messages)
    if first_turn and drawn(style.refusal, "refusal", salt, question):
        where = "field" if unit("refusal_shape", salt, question) < 0.5 else "content"
        name = "refusal" if where == "field" else "content"
        return Output([Segment(name, REFUSAL)], style.reasoning_field, record={"refusal": where, "slips": []})
    parsed = parse_turn(reply.text)
    if parsed.errors or not parsed.turns:  # a defect wrote broken text on purpose: send it as is
        head, closed, rest = reply.text.partition("</think>")
        if reasoning and closed and head.startswith("<think>"):  # the parser still takes the think
            segments = [Segment("reasoning", head[len("<think>") :]), Segment("content", rest)]
        else:
            segments = [Segment("content", reply.text)]
        return Output(segments, style.reasoning_field, record={"slips": []})
    turn = parsed.turns[0]
    index = sum(1 for m in messages if m.get("role") == "assistant")
    wanted = [k for k, rate in style.slips.items() if drawn(rate, k, salt, question, index)]
    native = (
        style.tool_protocol == "native"
        and bool(body.get("tools"))
        and body.get("tool_choice") != "none"  # "none": the server answers in text
        and turn.tool_name is not None
    )
    chosen = S.choose(wanted, turn, reasoning_parser=reasoning, native=native)
    record: dict[str, Any] = {"slips": chosen}
    if native:
        think = Segment("reasoning" if reasoning else "content", (turn.think or "").strip())
        arguments = Segment("arguments", S.arguments_text(turn, chosen), tuple(chosen))
        call = {"id": _call_id(salt, question, index), "name": str(turn.tool_name)}
        return Output([think, arguments], style.reasoning_field, call, "tool_calls", record)
    pick = unit("pick", salt, question, index)
    written = S.write(turn, chosen, pick=pick, prose_before=not reasoning)
    segments: list[Segment] = []
    if reasoning:
        segments.append(Segment("reasoning", turn.think or ""))
        if pick < 0.5:
            segments.append(Segment("content", "\n\n"))
    else:
        segments += [Segment("content", p.text, p.slips) for p in written.think]
    segments += [Segment("content", p.text, p.slips) for p in written.action]
    return Output(segments, style.reasoning_field, record=record)


def _judge(
    reply: Any, body: dict[str, Any], style: TeacherStyle, salt: str, messages: list[dict[str, Any]]
) -> Output:
    verdict = reply.text
    try:
        reason = str(json.loads(verdict).get("reason", ""))
    except (ValueError, AttributeError):
        reason = ""
    opener = _JUDGE_OPENERS.get(getattr(reply, "kind", None) or "", _JUDGE_OPENERS["answer"])
    segments: list[Segment] = []
    if style.reasoning_field != "none":
        segments.append(Segment("reasoning", f"{opener} {reason[:1].upper()}{reason[1:]}."))
    last = json.dumps(messages[-1].get("content"), sort_keys=True) if messages else ""
    prose = drawn(style.judge_prose, "judge_prose", salt, last) and not structured(body)
    if prose:
        fenced = unit("judge_fence", salt, last) < 0.5
        verdict_json = f"```json\n{verdict}\n```" if fenced else verdict
        text = f"{opener} {reason[:1].upper()}{reason[1:]}.\nSo my verdict is:\n{verdict_json}"
        segments.append(Segment("content", text))
    else:
        segments.append(Segment("content", verdict))
    return Output(segments, style.reasoning_field, record={"judge_prose": prose})


def _planner(reply: Any, style: TeacherStyle) -> Output:
    segments = []
    if style.reasoning_field != "none":
        segments.append(
            Segment("reasoning", "I will lay out the steps the agent should follow, as a JSON array.")
        )
    segments.append(Segment("content", reply.text))
    return Output(segments, style.reasoning_field)


def _stops(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if isinstance(stop, str):
        return [stop] if stop else []
    return [s for s in stop or [] if isinstance(s, str) and s]


def _cut(out: Output, body: dict[str, Any], *, half: bool, why: str) -> None:
    """Apply the request's stop strings, its token limit and a drawn truncation, earliest first."""
    total = len(out.generated)
    cuts: list[tuple[int, str, str | None]] = []  # (position, finish, reason)
    offset = 0
    for segment in out.segments:
        hits = [(segment.text.find(s), s) for s in _stops(body) if s in segment.text]
        if hits and segment.field != "refusal":
            position, stop = min(hits)
            cuts.append((offset + position, "stop", stop))
            break
        offset += len(segment.text)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit > 0 and total > limit * CHARS_PER_TOKEN:
        cuts.append((limit * CHARS_PER_TOKEN, "length", "max_tokens"))
    if half and total > 1:
        cuts.append((total // 2, "length", why))
    sent = list(out.record.get("slips", []))
    if cuts:
        position, finish, reason = min(cuts, key=lambda c: c[0])
        kept, offset = [], 0
        for segment in out.segments:
            if offset >= position:
                break
            kept.append(Segment(segment.field, segment.text[: position - offset], segment.slips))
            offset += len(segment.text)
        # a slip was sent when some of its text was (a cut right after a newline sends none)
        survived = {name for segment in kept if segment.text.strip() for name in segment.slips}
        sent = [name for name in sent if name in survived]
        out.segments = kept or [Segment("content", "")]
        out.finish = finish
        if not any(s.field == "arguments" for s in kept):
            out.call = None
        out.record["stopped" if finish == "stop" else "truncated"] = reason
    if "slips" in out.record:
        out.record["slips_sent"] = sent
