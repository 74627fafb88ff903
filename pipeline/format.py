"""The R1V4 trajectory text format: the one parser and the one renderer.

An assistant turn is `<think>...</think>` followed by exactly one of
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` or `<answer>...</answer>`; a tool's
result comes back as `<observation>...</observation>`. Nothing else in trajforge builds or
splits these strings.

Two readers, one format. `parse_trajectory` / `parse_turn` read canonical text strictly (what
trajforge itself wrote). `read_reply` / `read_trajectory` read what a teacher wrote, leniently:
every shape a server sends (reasoning fields, native tool calls) and the slips real models make
(`REPAIRS`) are mended and named on the turn; what cannot be mended is an error to re-ask about.
Neither raises on model output: each returns the turns it could read plus format errors.
Rendering is canonical (no whitespace between tags, one JSON spelling), so
`render_trajectory(parse_trajectory(text).turns) == text` for canonical text. Content is taken
verbatim up to its own closing tag; the renderer neutralises a closing tag inside content
(`</observation>` in a fetched page, say) so it cannot end the segment early.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pipeline import lenient

THINK, TOOL_CALL, ANSWER, OBSERVATION = "think", "tool_call", "answer", "observation"
TAGS = (THINK, TOOL_CALL, ANSWER, OBSERVATION)
#: Marks where an observation's n-th image sits in its text (R1V4 shows `<sub-image N>` refs).
IMAGE_MARKER = "<image>"

_OPEN_RE = re.compile(r"<(think|tool_call|answer|observation)>")

#: Repairs the lenient reader makes to teacher text, each recorded by name on the step. The
#: offline world's teacher styles inject the same names as slips, so tests meet every one.
REPAIRS: dict[str, str] = {
    "json_fence": "tool-call JSON wrapped in a ``` fence",
    "raw_newline_in_string": "real line breaks inside a JSON string (code written verbatim)",
    "trailing_comma": "a comma before a closing brace or bracket",
    "single_quotes": "Python-style or typographic quotes instead of JSON double quotes",
    "stray_brace": "an extra closing brace after the JSON or after </tool_call>",
    "json_repaired": "other JSON damage mended by json-repair",
    "parameters_key": "'parameters' (or 'args', 'input') instead of 'arguments'",
    "call_shape": "a tool call in another common shape ({'function': {...}}, {'tool': ...})",
    "prose_outside_tags": "text before <think> or after the action, dropped",
    "closing_tag_opens_turn": "the turn opened with </think> instead of <think>",
    "missing_think_close": "<think> not closed before the action",
    "missing_think_tags": "untagged reasoning before the action, taken as the think",
    "untagged_tool_call": "a tool call written without <tool_call> tags",
    "unclosed_action": "<tool_call> or <answer> not closed at the end of the reply",
    "own_observation": "the teacher wrote its own <observation>; the reply was cut there",
    "extra_actions": "more than one tool call in one reply; the first was kept",
    "special_tokens": "chat-template special tokens leaked into the text (GLM-4.5V's <|begin_of_box|>, "
    "<|im_end|>, <|eot_id|>, <|endoftext|>, a trailing </s>, ...), stripped",
    "action_in_reasoning": "no action after the think, but a complete one at its very end (a call made "
    "before </think>, which a reasoning parser files under reasoning); taken as the action",
    "xml_call_format": "a call in a model's own XML form (GLM-4.5's <arg_key>/<arg_value>, Qwen3-Coder's "
    "<function=...><parameter=...>) instead of JSON",
}
#: Lossless normalisations of how a server shaped the reply (its template, its parsers): read
#: and recorded apart from `REPAIRS` (they are no slip of the model and never count toward
#: `filter.max_repairs`).
NORMALISATIONS: dict[str, str] = {
    "missing_think_open": "the reply starts inside the think (its <think> was in the prompt: a thinking "
    "model's chat template, served without a reasoning parser)",
    "reasoning_field": "the think arrived in a reasoning field (reasoning_content, reasoning, "
    "OpenRouter's reasoning_details)",
    "arguments_as_string": "a call's 'arguments' given as a JSON string holding the object",
    "arguments_as_object": "a native call's arguments sent as a JSON object instead of a string",
    "kimi_think_tokens": "Kimi-VL's think markers \u25c1think\u25b7 ... \u25c1/think\u25b7 read as <think> ... </think>",
}
#: A reply that calls a tool and also answers wrote its answer before the observation came back:
#: a defect of the trajectory (an error: re-asked in synthesis, dropped at import), not a slip.
CALL_AND_ANSWER = "calls a tool and answers in the same turn (the answer came before the observation)"
#: The slips the offline world's teacher styles can inject (`world.knobs.teacher_style.slips`).
SLIPS = (
    "json_fence",
    "raw_newline_in_string",
    "trailing_comma",
    "single_quotes",
    "stray_brace",
    "arguments_as_string",
    "parameters_key",
    "prose_outside_tags",
    "closing_tag_opens_turn",
    "missing_think_open",
    "missing_think_close",
    "untagged_tool_call",
    "own_observation",
)


@dataclass
class Turn:
    """One assistant turn (think + action) and the observation that answered it, if any."""

    think: str | None = None
    tool_name: str | None = None
    arguments: dict[str, Any] | None = None
    answer: str | None = None
    observation: str | None = None
    errors: list[str] = field(default_factory=list)
    raw: str = ""  # the exact assistant text of this turn as it was parsed
    acted: bool = False  # an action tag was seen, even if its body was unreadable
    repairs: list[str] = field(default_factory=list)  # slips the lenient reader mended (REPAIRS)
    normalisations: list[str] = field(default_factory=list)  # lossless server shapes (NORMALISATIONS)

    @property
    def action(self) -> str:
        """ "tool_call", "answer" or "invalid" (no readable action)."""
        if self.tool_name is not None and self.answer is None:
            return "tool_call"
        if self.answer is not None and self.tool_name is None:
            return "answer"
        return "invalid"

    @property
    def has_action(self) -> bool:
        return self.acted or self.tool_name is not None or self.answer is not None


@dataclass
class ParseResult:
    """Turns that could be read and every format error found (with the turn index)."""

    turns: list[Turn]
    errors: list[str]

    @property
    def final_answer(self) -> str | None:
        return self.turns[-1].answer if self.turns and self.turns[-1].answer is not None else None

    @property
    def ok(self) -> bool:
        return not self.errors


# --------------------------------------------------------------------------------- rendering


def _neutralise(text: str, tag: str) -> str:
    return text.replace(f"</{tag}>", f"&lt;/{tag}&gt;")


def render_tool_call(name: str, arguments: dict[str, Any]) -> str:
    """The canonical `<tool_call>` body."""
    return json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)


def render_turn(
    think: str,
    *,
    tool_name: str | None = None,
    arguments: dict[str, Any] | None = None,
    answer: str | None = None,
) -> str:
    """One assistant turn: think, then exactly one tool call or answer."""
    if (tool_name is None) == (answer is None):
        raise ValueError("a turn has exactly one action: pass tool_name or answer, not both or neither")
    head = f"<think>{_neutralise(think, THINK)}</think>"
    if tool_name is not None:
        body = _neutralise(render_tool_call(tool_name, arguments or {}), TOOL_CALL)
        return f"{head}<tool_call>{body}</tool_call>"
    return f"{head}<answer>{_neutralise(answer or '', ANSWER)}</answer>"


def render_observation(text: str) -> str:
    """A tool result as the model sees it."""
    return f"<observation>{_neutralise(text, OBSERVATION)}</observation>"


def render_trajectory(turns: list[Turn]) -> str:
    """A full R1V4 response: every turn, each tool call followed by its observation."""
    parts: list[str] = []
    for turn in turns:
        parts.append(
            render_turn(
                turn.think or "", tool_name=turn.tool_name, arguments=turn.arguments, answer=turn.answer
            )
        )
        if turn.observation is not None:
            parts.append(render_observation(turn.observation))
    return "".join(parts)


# ----------------------------------------------------------------------------------- parsing


def _read_call(body: str, errors: list[str], where: str) -> tuple[str | None, dict[str, Any] | None]:
    try:
        call = json.loads(body.strip())
    except ValueError as exc:
        errors.append(f"{where}: bad tool_call JSON ({exc.msg} at char {exc.pos})")
        return None, None
    if not isinstance(call, dict):
        errors.append(f"{where}: bad tool_call: expected a JSON object with name and arguments")
        return None, None
    name, arguments = call.get("name"), call.get("arguments", {})
    if not isinstance(name, str) or not name:
        errors.append(f"{where}: bad tool_call: missing string 'name'")
        return None, None
    if not isinstance(arguments, dict):
        errors.append(f"{where}: bad tool_call: 'arguments' must be a JSON object")
        return name, None
    extra = sorted(set(call) - {"name", "arguments"})
    if extra:
        errors.append(f"{where}: bad tool_call: unexpected keys {extra}")
    return name, arguments


def parse_trajectory(text: str, *, expect_answer: bool = True) -> ParseResult:
    """Split a full response into turns; collect format errors instead of raising.

    `expect_answer=False` parses a prefix (a conversation still in progress).
    """
    turns: list[Turn] = []
    errors: list[str] = []
    pos, n = 0, len(text)
    turn_start = 0

    def current() -> Turn | None:
        return turns[-1] if turns else None

    while pos < n:
        match = _OPEN_RE.search(text, pos)
        stray = text[pos : match.start() if match else n]
        if stray.strip():
            errors.append(f"turn {len(turns)}: stray text outside tags: {stray.strip()[:60]!r}")
        if not match:
            break
        tag = match.group(1)
        close = text.find(f"</{tag}>", match.end())
        if close < 0:
            errors.append(f"turn {max(len(turns) - 1, 0)}: unclosed <{tag}>")
            body, pos = text[match.end() :], n
        else:
            body, pos = text[match.end() : close], close + len(tag) + 3
        turn = current()
        if tag == THINK:
            if turn is not None and not turn.has_action and turn.observation is None:
                msg = f"turn {len(turns) - 1}: <think> without a tool_call or answer"
                turn.errors.append(msg)
                errors.append(msg)
            turns.append(Turn(think=body))
            turn_start = match.start()
        elif tag in (TOOL_CALL, ANSWER):
            if turn is None or turn.has_action or turn.observation is not None:
                if turn is not None and turn.has_action and turn.observation is None:
                    msg = f"turn {len(turns) - 1}: two actions in one turn (<{tag}> after a {turn.action})"
                else:
                    msg = f"turn {len(turns)}: missing <think> before <{tag}>"
                turn = Turn()
                turns.append(turn)
                turn_start = match.start()
                turn.errors.append(msg)
                errors.append(msg)
            where = f"turn {len(turns) - 1}"
            turn.acted = True
            if tag == TOOL_CALL:
                local: list[str] = []
                turn.tool_name, turn.arguments = _read_call(body, local, where)
                turn.errors.extend(local)
                errors.extend(local)
            else:
                turn.answer = body
            turn.raw = text[turn_start:pos]
        else:  # observation
            if turn is None or turn.tool_name is None or turn.observation is not None:
                errors.append(f"turn {max(len(turns) - 1, 0)}: <observation> without a preceding tool_call")
                continue
            turn.observation = body
    # a turn that ended with two actions is caught when the second action arrives above; here
    # the last turn must have an action, and a finished trajectory must end with an answer
    last = current()
    if last is not None and not last.has_action:
        msg = f"turn {len(turns) - 1}: <think> without a tool_call or answer"
        last.errors.append(msg)
        errors.append(msg)
    for index, turn in enumerate(turns[:-1]):
        if turn.answer is not None:
            errors.append(f"turn {index}: <answer> before the end of the trajectory")
        elif turn.tool_name is not None and turn.observation is None:
            errors.append(f"turn {index}: tool_call without an <observation>")
    if expect_answer and (last is None or last.answer is None):
        errors.append("trajectory does not end with an <answer>")
    return ParseResult(turns=turns, errors=errors)


def parse_turn(text: str) -> ParseResult:
    """Parse one assistant message: exactly one turn, no observation, answer optional."""
    result = parse_trajectory(text, expect_answer=False)
    if not result.turns:
        result.errors.append("turn 0: no <think>, <tool_call> or <answer> found")
    elif len(result.turns) > 1:
        result.errors.append(f"turn 0: {len(result.turns)} actions in one message (expected one)")
    if any(t.observation is not None for t in result.turns):
        result.errors.append("turn 0: assistant message contains an <observation>")
    return result


# ------------------------------------------------------------------------- lenient reading

_ACTION_RE = re.compile(r"<(tool_call|answer)>")
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
_ARGUMENT_KEYS = ("arguments", "parameters", "args", "input")


def read_reply(
    content: str | None,
    *,
    reasoning: str = "",
    tool_calls: list[dict[str, Any]] | None = None,
) -> ParseResult:
    """One teacher reply, leniently: exactly one turn (or errors saying why it is unreadable).

    `reasoning` is a server's split-off thinking (`reasoning_content` / `reasoning`); it is the
    turn's think, with any `<think>` the content still holds appended. `tool_calls` are native
    calls (`{"name", "arguments": raw JSON string}`); the first is the action. A call quoted
    inside the think is never the action; a complete action at the very end of the think with
    nothing after it is (`action_in_reasoning`).
    """
    if tool_calls:
        return _read_native(content or "", reasoning, tool_calls)
    turn = _read_text_turn(content or "", reasoning)
    return ParseResult(turns=[turn], errors=list(turn.errors))


def _read_native(content: str, reasoning: str, calls: list[dict[str, Any]]) -> ParseResult:
    turn = _read_text_turn(content, reasoning, need_action=False)
    turn.errors.clear()  # the content is only the think here; its missing action is no error
    repairs = [r for r in turn.repairs if r not in ("missing_think_tags", "prose_outside_tags")]
    if turn.answer is not None:
        turn.errors.append(f"turn 0: {CALL_AND_ANSWER}")
    elif turn.tool_name is not None:
        repairs.append("extra_actions")  # a text call beside a native call: the native call wins
    turn.tool_name = turn.arguments = turn.answer = None
    if len(calls) > 1:
        repairs.append("extra_actions")
    call = calls[0]
    turn.repairs = list(dict.fromkeys(repairs))
    turn.acted = True
    raw_arguments = call.get("arguments")
    body = {"name": call.get("name"), "arguments": raw_arguments if raw_arguments not in (None, "") else "{}"}
    turn.tool_name, turn.arguments = _call_from(body, turn, "turn 0")
    if turn.arguments is not None:
        turn.arguments, leaked = lenient.strip_special_tokens_in(turn.arguments)
        if leaked:
            turn.repairs.append("special_tokens")
    turn.repairs = list(dict.fromkeys(turn.repairs))
    return ParseResult(turns=[turn], errors=list(turn.errors))


_KIMI_THINK = {"\u25c1think\u25b7": _THINK_OPEN, "\u25c1/think\u25b7": _THINK_CLOSE}
#: A complete action at the very end of a think (nothing but whitespace after it).
_TRAILING_ACTION_RE = re.compile(r"<(tool_call|answer)>(?:(?!<(?:tool_call|answer)>).)*</\1>\s*$", re.DOTALL)


def _read_text_turn(text: str, reasoning: str, *, need_action: bool = True) -> Turn:
    """The lenient reading of one assistant message's text."""
    turn = Turn(raw=text)
    repairs, normal = turn.repairs, turn.normalisations
    if reasoning:
        normal.append("reasoning_field")
    if "\u25c1" in text:
        for token, tag in _KIMI_THINK.items():
            if token in text:
                text = text.replace(token, tag)
                normal.append("kimi_think_tokens")
    text, leaked = lenient.strip_special_tokens(text)
    reasoning, leaked_too = lenient.strip_special_tokens(reasoning)
    # a parser that keeps the tags in the field (`<think>...</think>` as reasoning): the inside
    reasoning = reasoning.strip().removeprefix(_THINK_OPEN).removesuffix(_THINK_CLOSE)
    if leaked or leaked_too:
        repairs.append("special_tokens")
    if (cut := text.find("<observation>")) >= 0:
        text = text[:cut]
        repairs.append("own_observation")
    stripped = text.lstrip()
    if stripped.startswith(_THINK_CLOSE):
        after = stripped[len(_THINK_CLOSE) :]
        if _THINK_CLOSE in after and _THINK_OPEN not in after.split(_THINK_CLOSE, 1)[0]:
            text = _THINK_OPEN + after
            repairs.append("closing_tag_opens_turn")
        else:  # a lone leading </think>: what a reasoning parser or a chat template left behind
            text = after
            if not reasoning:
                normal.append("missing_think_open")
    think, rest = _split_think(text, turn, has_reasoning=bool(reasoning))
    if reasoning:
        think = reasoning.strip() + (f"\n\n{think}" if think else "")
    if need_action and not rest.strip() and (found := _TRAILING_ACTION_RE.search(think)):
        # the model acted before closing its think (a reasoning parser then files the action
        # under reasoning and the content is empty): the action at the very end is the turn's
        rest, think = think[found.start() :], think[: found.start()].strip()
        repairs.append("action_in_reasoning")
    turn.think = think
    _read_action(rest, turn, need_action=need_action)
    turn.repairs = list(dict.fromkeys(repairs))
    turn.normalisations = list(dict.fromkeys(normal))
    return turn


def _split_think(text: str, turn: Turn, *, has_reasoning: bool) -> tuple[str, str]:
    """(think, the text after it) from `<think>` tags, their slips, or untagged prose.

    Everything before a `</think>` is think, whatever it quotes: a `<tool_call>` written there
    while planning is never the action.
    """
    repairs = turn.repairs
    action = _ACTION_RE.search(text)
    action_at = action.start() if action else len(text)
    opened, closed = text.find(_THINK_OPEN), text.find(_THINK_CLOSE)
    if 0 <= opened < action_at:
        if opened and text[:opened].strip():
            repairs.append("prose_outside_tags")
        start = opened + len(_THINK_OPEN)
        if start <= closed:
            return text[start:closed].strip(), text[closed + len(_THINK_CLOSE) :]
        repairs.append("missing_think_close")
        return text[start:action_at].strip(), text[action_at:]
    if closed >= 0 and (opened < 0 or opened > closed):
        turn.normalisations.append("missing_think_open")
        return text[:closed].strip(), text[closed + len(_THINK_CLOSE) :]
    prose = text[:action_at].strip()
    untagged = _untagged_call_start(text[:action_at]) if action is None else None
    if untagged is not None:
        prose = text[:untagged].strip()
        action_at = untagged
    if prose:
        repairs.append("prose_outside_tags" if has_reasoning else "missing_think_tags")
    return ("" if has_reasoning else prose), text[action_at:]


def _untagged_call_start(text: str) -> int | None:
    """Where an untagged tool call starts (a ``` fence or a bare object with a "name"), if any."""
    for match in re.finditer(r"```|\{", text):
        read = lenient.read_json(text[match.start() :], expect=dict)
        if read.ok and isinstance(read.value.get("name") or read.value.get("function"), (str, dict)):
            return match.start()
    return None


def _read_action(rest: str, turn: Turn, *, need_action: bool) -> None:
    match = _ACTION_RE.search(rest)
    if match is None:
        start = _untagged_call_start(rest)
        if start is not None:
            turn.repairs.append("untagged_tool_call")
            turn.acted = True
            turn.tool_name, turn.arguments = _call_from(rest[start:], turn, "turn 0")
        elif need_action:
            what = f": {rest.strip()[:60]!r}" if rest.strip() else ""
            turn.errors.append(f"turn 0: no <tool_call> or <answer> found{what}")
        elif rest.strip():
            turn.repairs.append("prose_outside_tags")
        return
    if rest[: match.start()].strip():
        turn.repairs.append("prose_outside_tags")
    tag = match.group(1)
    close = rest.find(f"</{tag}>", match.end())
    if close < 0:
        body, after = rest[match.end() :], ""
        turn.repairs.append("unclosed_action")
    else:
        body, after = rest[match.end() : close], rest[close + len(tag) + 3 :]
    turn.acted = True
    if tag == TOOL_CALL:
        turn.tool_name, turn.arguments = _call_from(body, turn, "turn 0")
    else:
        turn.answer = body.strip()
    tail = after.strip()
    if tail and (other := _ACTION_RE.search(tail)):
        if other.group(1) != tag:
            turn.errors.append(f"turn 0: {CALL_AND_ANSWER}")
        else:
            turn.repairs.append("extra_actions")
    elif tail and not tail.strip("}] \n"):
        turn.repairs.append("stray_brace")
    elif tail:
        turn.repairs.append("prose_outside_tags")


def _call_from(
    body: str | dict[str, Any], turn: Turn, where: str
) -> tuple[str | None, dict[str, Any] | None]:
    """Name and arguments of a tool call in any common shape; repairs named on the turn."""
    xml_like = isinstance(body, str) and ("<arg_key>" in body or "<function=" in body)
    if xml_like and (xml := lenient.xml_call(body)) is not None:  # type: ignore[arg-type]
        turn.repairs.append("xml_call_format")
        return _call_from(xml, turn, where)
    if isinstance(body, str):
        read = lenient.read_json(body, expect=dict)
        turn.repairs.extend(read.repairs)
        if not read.ok:
            turn.errors.append(f"{where}: unreadable tool_call JSON ({read.error})")
            return None, None
        call = read.value
    else:
        call = body
    if isinstance(call.get("function"), dict):  # {"type": "function", "function": {...}}
        call = call["function"]
        turn.repairs.append("call_shape")
    name = call.get("name")
    if not isinstance(name, str) or not name:
        for key in ("tool_name", "tool"):
            if isinstance(call.get(key), str) and call[key]:
                name = call[key]
                turn.repairs.append("call_shape")
                break
    if not isinstance(name, str) or not name:
        turn.errors.append(
            f'{where}: tool_call has no tool name (expected {{"name": ..., "arguments": {{...}}}})'
        )
        return None, None
    key = next((k for k in _ARGUMENT_KEYS if k in call), None)
    arguments: Any = call.get(key, {}) if key else {}
    if key not in (None, "arguments"):
        turn.repairs.append("parameters_key")
    if isinstance(arguments, str):
        read = lenient.read_json(arguments, expect=dict) if arguments.strip() else lenient.JsonRead(value={})
        if not read.ok:
            turn.errors.append(f"{where}: tool_call arguments are not a JSON object ({read.error})")
            return name, None
        if isinstance(body, str):  # native calls carry arguments as a string by design
            turn.normalisations.append("arguments_as_string")
        turn.repairs.extend(read.repairs)
        arguments = read.value
    if not isinstance(arguments, dict):
        turn.errors.append(f"{where}: tool_call 'arguments' must be a JSON object")
        return name, None
    return name, arguments


def read_trajectory(text: str) -> ParseResult:
    """A whole response (R1V4 output, an import) read leniently: observations split the turns."""
    turns: list[Turn] = []
    errors: list[str] = []
    pos = 0
    for match in re.finditer(r"<observation>(.*?)(?:</observation>|$)", text, re.DOTALL):
        segment = text[pos : match.start()]
        pos = match.end()
        if not segment.strip() and turns and turns[-1].observation is not None:
            turns[-1].observation += match.group(1)  # two observation blocks for one call
            continue
        turn = _read_text_turn(segment, "")
        _collect(turn, len(turns), errors)
        turn.observation = match.group(1)
        if turn.tool_name is None:
            errors.append(f"turn {len(turns)}: <observation> without a preceding tool_call")
        turns.append(turn)
    tail = text[pos:]
    if tail.strip():
        turn = _read_text_turn(tail, "")
        _collect(turn, len(turns), errors)
        turns.append(turn)
    last = turns[-1] if turns else None
    if last is None or last.answer is None:
        errors.append("trajectory does not end with an <answer>")
    for index, turn in enumerate(turns[:-1]):
        if turn.answer is not None:
            errors.append(f"turn {index}: <answer> before the end of the trajectory")
    return ParseResult(turns=turns, errors=errors)


def _collect(turn: Turn, index: int, errors: list[str]) -> None:
    turn.errors = [e.replace("turn 0", f"turn {index}", 1) for e in turn.errors]
    errors.extend(turn.errors)
