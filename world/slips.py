"""Formatting slips real models make, written into an executor turn on purpose.

Each slip in `pipeline.format.SLIPS` is written the way models really write it (R1V4's own
figures show several): the lenient reader in `pipeline.format` must repair every one, and the
truth record says which were injected. A turn is built as pieces (prefix, think, action, ...),
each tagged with the slip that produced it, so the server can tell which slips survived a cut.

What a slip needs from the turn decides whether it applies: tool-call slips need a tool call,
`raw_newline_in_string` a string argument with a line break, `single_quotes` a plain string
argument. Think-tag slips (`closing_tag_opens_turn`, `missing_think_open`, `missing_think_close`)
exclude each other (the first drawn wins), and none applies when a reasoning parser owns the
think tags; `untagged_tool_call` replaces `json_fence` (its call is already fenced).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from pipeline.format import SLIPS, Turn

THINK_SLIPS = ("closing_tag_opens_turn", "missing_think_open", "missing_think_close")
#: Slips that live in a call's arguments string (native tool calling).
ARGUMENT_SLIPS = ("json_fence", "raw_newline_in_string", "trailing_comma", "single_quotes")
#: Slips written inside the call's own text.
_IN_CALL = (*ARGUMENT_SLIPS, "arguments_as_string", "parameters_key", "untagged_tool_call")
#: Slips that need a tool call in the turn: the in-call ones and what follows a call.
_CALL_ONLY = {*_IN_CALL, "stray_brace", "own_observation"}
_PLAIN_STRING_RE = re.compile(r"""^[^'"‘’“”\\\n]+$""")
_PREFIXES = ("Let me check the image.", "Okay, let me think about this step by step.")
_SUFFIXES = ("I'll wait for the result.", "Let me see what comes back.")
_ANSWER_SUFFIX = "I hope this helps!"


@dataclass
class Piece:
    text: str
    slips: tuple[str, ...] = ()  # the slips this piece carries (for "did they survive a cut")


@dataclass
class SlippedTurn:
    """A turn as pieces: the think part and the action part, with the slips applied."""

    think: list[Piece] = field(default_factory=list)  # <think>...</think> or its slipped form
    action: list[Piece] = field(default_factory=list)  # everything after the think
    slips: list[str] = field(default_factory=list)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def applicable(name: str, turn: Turn, *, reasoning_parser: bool, native: bool = False) -> bool:
    """Whether slip `name` can be written into this turn at all."""
    is_call = turn.tool_name is not None
    if native:  # a native call carries only argument slips; a native answer is text
        return (name in ARGUMENT_SLIPS and is_call and _fits(name, turn)) or (
            not is_call and applicable(name, turn, reasoning_parser=reasoning_parser)
        )
    if name in _CALL_ONLY and not is_call:
        return False
    if name in THINK_SLIPS and reasoning_parser:
        return False
    return _fits(name, turn)


def _fits(name: str, turn: Turn) -> bool:
    strings = _strings(turn.arguments or {})
    if name == "raw_newline_in_string":
        return any("\n" in s for s in strings)
    if name == "single_quotes":
        return any(_PLAIN_STRING_RE.match(s) for s in strings)
    return True


def choose(drawn: list[str], turn: Turn, *, reasoning_parser: bool, native: bool = False) -> list[str]:
    """The drawn slips that apply to this turn, conflicts resolved, in SLIPS order."""
    out: list[str] = []
    for name in SLIPS:
        if name not in drawn or not applicable(name, turn, reasoning_parser=reasoning_parser, native=native):
            continue
        if name in THINK_SLIPS and any(t in out for t in THINK_SLIPS):
            continue
        out.append(name)
    if "untagged_tool_call" in out and "json_fence" in out:
        out.remove("json_fence")
    return out


# ------------------------------------------------------------------------------ JSON writing


def _string(value: str, *, raw_newlines: bool, quote: str | None) -> str:
    text = json.dumps(value, ensure_ascii=False)
    if raw_newlines:  # undo the \n escapes only (a \\ pair is an escaped backslash: keep it)
        text = re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(0), text)
    if quote and _PLAIN_STRING_RE.match(value):
        opener, closer = (quote, quote) if quote == "'" else ("‘", "’")
        text = f"{opener}{value}{closer}"
    return text


def dump(value: Any, *, raw_newlines: bool = False, quote: str | None = None) -> str:
    """JSON text of `value` with slips in its strings (raw line breaks, non-JSON quotes)."""
    if isinstance(value, dict):
        items = [
            f"{json.dumps(str(k))}: {dump(v, raw_newlines=raw_newlines, quote=quote)}"
            for k, v in value.items()
        ]
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(dump(v, raw_newlines=raw_newlines, quote=quote) for v in value) + "]"
    if isinstance(value, str):
        return _string(value, raw_newlines=raw_newlines, quote=quote)
    return json.dumps(value, ensure_ascii=False)


def _quote_for(tool_name: str | None) -> str:
    """R1V4's Figure 6 puts a text_search query in typographic quotes; others slip to '...'."""
    return "‘" if tool_name == "text_search" else "'"


def arguments_text(turn: Turn, slips: list[str]) -> str:
    """A native call's `function.arguments` string with the argument slips written in."""
    text = dump(
        turn.arguments or {},
        raw_newlines="raw_newline_in_string" in slips,
        quote=_quote_for(turn.tool_name) if "single_quotes" in slips else None,
    )
    if "trailing_comma" in slips:
        text = text[:-1] + ",}"
    if "json_fence" in slips:
        text = f"```json\n{text}\n```"
    return text


def call_text(turn: Turn, slips: list[str]) -> str:
    """The tool-call JSON as the model wrote it, slips included."""
    key = "parameters" if "parameters_key" in slips else "arguments"
    arguments = turn.arguments or {}
    quote = _quote_for(turn.tool_name) if "single_quotes" in slips else None
    raw_newlines = "raw_newline_in_string" in slips
    if "arguments_as_string" in slips:
        inner = dump(arguments, raw_newlines=raw_newlines, quote=quote)
        value = json.dumps(inner, ensure_ascii=False)
    else:
        value = dump(arguments, raw_newlines=raw_newlines, quote=quote)
    text = f"{{{json.dumps('name')}: {json.dumps(turn.tool_name)}, {json.dumps(key)}: {value}}}"
    if "trailing_comma" in slips:
        text = text[:-1] + ",}"
    return text


def _invented_observation(turn: Turn) -> str:
    if turn.tool_name == "code":
        return "Saved image_9.png: the crop clearly shows the label."
    return "1. The page confirms what I expected.\n2. Another result with the same answer."


def write(turn: Turn, slips: list[str], *, pick: float = 0.0, prose_before: bool = True) -> SlippedTurn:
    """The turn's text as pieces with `slips` (already chosen) written in.

    `pick` (a stable number in [0, 1)) chooses among a slip's variants, so reruns match;
    `prose_before=False` puts stray prose after the action (a reasoning parser drops text
    before <think>, so with one only the trailing sentence reaches the client).
    """
    out = SlippedTurn(slips=list(slips))
    think = (turn.think or "").replace("</think>", "&lt;/think&gt;")
    lead = prose_before and pick < 0.5 and not any(s in slips for s in THINK_SLIPS)
    if "prose_outside_tags" in slips and lead:
        out.think.append(Piece(_PREFIXES[int(pick * 4) % 2] + " ", ("prose_outside_tags",)))
        prose_after = False
    else:
        prose_after = "prose_outside_tags" in slips
    if "closing_tag_opens_turn" in slips:
        out.think.append(Piece(f"</think>{think}</think>", ("closing_tag_opens_turn",)))
    elif "missing_think_open" in slips:
        out.think.append(Piece(f"{think}</think>", ("missing_think_open",)))
    elif "missing_think_close" in slips:
        out.think.append(Piece(f"<think>{think}\n", ("missing_think_close",)))
    else:
        out.think.append(Piece(f"<think>{think}</think>"))
    if turn.tool_name is None:
        answer = (turn.answer or "").replace("</answer>", "&lt;/answer&gt;")
        out.action.append(Piece(f"<answer>{answer}</answer>"))
        if prose_after:
            out.action.append(Piece(" " + _ANSWER_SUFFIX, ("prose_outside_tags",)))
        return out
    call = call_text(turn, slips).replace("</tool_call>", "&lt;/tool_call&gt;")
    carried = tuple(s for s in slips if s in _IN_CALL)
    if "untagged_tool_call" in slips:
        out.action.append(Piece(f"\n```json\n{call}\n```", carried))
    elif "json_fence" in slips:
        out.action.append(Piece(f"<tool_call>\n```json\n{call}\n```\n</tool_call>", carried))
    else:
        out.action.append(Piece(f"<tool_call>{call}</tool_call>", carried))
    if "stray_brace" in slips:
        out.action.append(Piece("}", ("stray_brace",)))
    if prose_after:
        out.action.append(Piece("\n" + _SUFFIXES[int(pick * 4) % 2], ("prose_outside_tags",)))
    if "own_observation" in slips:
        out.action.append(
            Piece(f"\n<observation>{_invented_observation(turn)}</observation>", ("own_observation",))
        )
    return out
