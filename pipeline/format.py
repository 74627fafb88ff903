"""The R1V4 trajectory text format: the one parser and the one renderer.

An assistant turn is `<think>...</think>` followed by exactly one of
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` or `<answer>...</answer>`; a tool's
result comes back as `<observation>...</observation>`. Nothing else in trajforge builds or
splits these strings.

Parsing never raises on model output: it returns the turns it could read plus format errors.
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
    "arguments_as_string": "'arguments' given as a JSON string instead of an object",
    "parameters_key": "'parameters' (or 'args', 'input') instead of 'arguments'",
    "call_shape": "a tool call in another common shape ({'function': {...}}, {'tool': ...})",
    "prose_outside_tags": "text before <think> or after the action, dropped",
    "closing_tag_opens_turn": "the turn opened with </think> instead of <think>",
    "missing_think_open": "thinking text closed by </think> that was never opened",
    "missing_think_close": "<think> not closed before the action",
    "missing_think_tags": "untagged reasoning before the action, taken as the think",
    "untagged_tool_call": "a tool call written without <tool_call> tags",
    "unclosed_action": "<tool_call> or <answer> not closed at the end of the reply",
    "own_observation": "the teacher wrote its own <observation>; the reply was cut there",
    "extra_actions": "more than one action in one reply; the first was kept",
}
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
