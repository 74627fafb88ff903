"""Teacher styles: the oracle's canonical reply reshaped the way real servers and models send it.

`shape()` turns a `Reply` into an `Output` (reasoning field, content, native tool calls, refusal,
finish reason) following `world.knobs.teacher_style` and the request itself, as vLLM, SGLang
and OpenAI do:
- a reasoning parser puts the think in `message.<reasoning_field>`, content keeps the action;
- native function calling (`tool_protocol: native` and a request with `tools`) answers a tool
  call as `message.tool_calls` with the think as plain prose (or in the reasoning field);
- formatting slips (`world.slips`), a refused first turn, a reply cut at half;
- what real models and servers add (`TeacherStyle` documents each): a thinking model served
  without a reasoning parser (no opening <think>), leaked template tokens (GLM-4.5V's answer
  box, end-of-turn markers), two calls in one turn, a call made before the think closed (at the
  end of the reasoning field), a draft call quoted in the think, replies without `usage`,
  judges that answer in a sentence or not at all the first time; `mixed` draws the server
  shape per conversation, and `cluster` makes a conversation that slipped keep slipping;
- the request's `stop` (cut before the first stop string, finish "stop"), `max_tokens` /
  `max_completion_tokens` (about 4 characters a token; beyond: cut, finish "length") and
  `response_format` (a judge then answers exactly its JSON object).
Every draw is a hash (reruns repeat); what was injected goes into the truth record.
The reply is a list of segments in generation order (reasoning, content, call arguments), so
a cut falls where a real server's would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import world.slips as S
from pipeline.format import parse_turn, render_tool_call
from world.knobs import TeacherStyle, clustered, drawn, unit
from world.roles import structured

REFUSAL = "I'm sorry, but I can't help with that."
CHARS_PER_TOKEN = 4
#: End-of-turn / end-of-text markers of common chat templates (Qwen/InternVL, GLM, Llama, Mistral).
END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|user|>", "<|eot_id|>", "</s>")
BOX_OPEN, BOX_CLOSE = "<|begin_of_box|>", "<|end_of_box|>"
#: A draft call a planning model quotes in its think (never to be run: it would print "draft").
DRAFT_CALL = {"name": "code", "arguments": {"code": "print('draft')"}}
JUDGE_VAGUE = "Let me look at the observation once more before I decide."
#: Server shapes `mixed` draws per conversation: (reasoning_field, think_in_prompt).
SERVER_SHAPES = (("none", False), ("reasoning_content", False), ("reasoning", False), ("none", True))
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
    copies: int = 1  # native calls sent (2: the same call twice, as a model that calls twice)

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
                "id": self.call["id"] + ("" if n == 0 else f"_{n}"),
                "type": "function",
                "function": {"name": self.call["name"], "arguments": arguments},
            }
            for n in range(self.copies)
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
                for n in range(1, self.copies):  # the same call again, whole, as its own index
                    out.append(
                        {"tool_calls": [{**call, "index": n} for call in self.tool_calls()[n : n + 1]]}
                    )
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
    if style.mixed:  # the server shape of this conversation, as a fleet of endpoints differs
        shape_of = SERVER_SHAPES[int(unit("server_shape", salt, question) * len(SERVER_SHAPES))]
        style = style.model_copy(update={"reasoning_field": shape_of[0], "think_in_prompt": shape_of[1]})
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
    if drawn(style.no_usage, "no_usage", salt, question, len(messages), reply.role):
        out.record["no_usage"] = True
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

    def now(name: str, rate: float) -> bool:  # this turn shows `name` (clustered per conversation)
        return clustered(rate, style.cluster, name, salt, question, index)

    wanted = [k for k, rate in style.slips.items() if now(k, rate)]
    in_prompt = style.think_in_prompt and not reasoning
    if in_prompt:  # every turn starts inside the think its template opened
        wanted = [k for k in wanted if k not in S.THINK_SLIPS] + ["missing_think_open"]
    native = (
        style.tool_protocol == "native"
        and bool(body.get("tools"))
        and body.get("tool_choice") != "none"  # "none": the server answers in text
        and turn.tool_name is not None
    )
    is_call = turn.tool_name is not None
    shown = [
        name
        for name, rate, fits in (
            ("quoted_call", style.quoted_call, True),
            ("reasoning_only", style.reasoning_only, is_call),
            ("two_calls", style.two_calls, is_call),
            ("special_tokens", style.special_tokens, True),
        )
        if fits and now(name, rate)
    ]
    if "quoted_call" in shown:
        draft = f"<tool_call>{render_tool_call(DRAFT_CALL['name'], DRAFT_CALL['arguments'])}</tool_call>"
        turn = dataclasses.replace(
            turn, think=f"I could start with {draft} but let me first reason. {turn.think}"
        )
    if "special_tokens" in shown and not is_call:  # GLM-4.5V boxes its final answer
        turn = dataclasses.replace(turn, answer=f"{BOX_OPEN}{turn.answer}{BOX_CLOSE}")
    if "reasoning_only" in shown:
        return _acted_in_think(turn, style, index, shown, in_prompt)
    chosen = S.choose(wanted, turn, reasoning_parser=reasoning, native=native)
    record: dict[str, Any] = {"slips": chosen, "behaviours": shown}
    end = END_TOKENS[int(unit("end_token", salt, question, index) * len(END_TOKENS))]
    tail = [Segment("content", end, ("special_tokens",))] if "special_tokens" in shown and is_call else []
    if native:
        prose = (turn.think or "").strip()
        # a thinking model without a reasoning parser closes the think its template opened
        think = Segment(
            "reasoning" if reasoning else "content", f"{prose}\n</think>\n\n" if in_prompt else prose
        )
        arguments = Segment("arguments", S.arguments_text(turn, chosen), tuple(chosen))
        call = {"id": _call_id(salt, question, index), "name": str(turn.tool_name)}
        copies = 2 if "two_calls" in shown else 1
        return Output([think, arguments, *tail], style.reasoning_field, call, "tool_calls", record, copies)
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
    if "two_calls" in shown:
        again = render_tool_call(str(turn.tool_name), turn.arguments or {})
        segments.append(Segment("content", f"\n<tool_call>{again}</tool_call>"))
    return Output(segments + tail, style.reasoning_field, record=record)


def _acted_in_think(turn: Any, style: TeacherStyle, index: int, shown: list[str], in_prompt: bool) -> Output:
    """The call made before the think closed: with a reasoning parser it lands at the end of the
    reasoning field and the content is empty (vLLM's parsers file all before </think> as
    reasoning); without one, the reply is the think with the call inside and nothing after."""
    call = f"<tool_call>{render_tool_call(str(turn.tool_name), turn.arguments or {})}</tool_call>"
    think = f"{(turn.think or '').strip()}\n\n{call}"
    record: dict[str, Any] = {"slips": [], "behaviours": shown}
    if style.reasoning_field != "none":
        return Output([Segment("reasoning", think)], style.reasoning_field, record=record)
    opening = "" if in_prompt else "<think>"
    return Output([Segment("content", f"{opening}{think}</think>")], style.reasoning_field, record=record)


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
    free = not structured(body) and not any(m.get("role") == "assistant" for m in messages)  # a re-ask: JSON
    if free and drawn(style.judge_vague, "judge_vague", salt, last):
        segments.append(Segment("content", JUDGE_VAGUE))
        return Output(segments, style.reasoning_field, record={"judge_vague": True})
    if free and drawn(style.judge_sentence, "judge_sentence", salt, last):
        passed = '"verdict": "pass"' in verdict
        segments.append(Segment("content", f"{'Yes' if passed else 'No'}, {reason.rstrip('.')}."))
        return Output(segments, style.reasoning_field, record={"judge_sentence": True})
    prose = drawn(style.judge_prose, "judge_prose", salt, last) and free
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
