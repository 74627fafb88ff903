"""Lenient JSON reading of model output: the one owner of "JSON a model wrote".

Real teachers write JSON that `json.loads` refuses: fenced in ```json, code with real line breaks
inside a string, trailing commas, Python-style single quotes, a stray closing brace, prose before
and after. Every reader of model-written JSON (tool calls in `pipeline.format`, plans in
`pipeline.plan_format`, judge verdicts in `filters.judges`) goes through here, so a slip is
repaired the same way everywhere and each repair is named (the names are recorded on the step).

Repairs use json-repair (a maintained library) after the cheap exact paths fail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import json_repair

#: ```json ... ``` (or a bare ``` fence) around JSON.
_FENCE_RE = re.compile(r"```[ \t]*(?:json[c5]?|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_FENCE_MARK_RE = re.compile(r"```[ \t]*(?:json[c5]?|JSON)?")
_TRAILING_COMMA_RE = re.compile(r",\s*[}\]]")
_SINGLE_QUOTED_KEY_RE = re.compile(r"[{,]\s*'[^'\n]+'\s*:")
_TYPOGRAPHIC_QUOTES = str.maketrans({"“": '"', "”": '"', "‘": "'", "’": "'"})


@dataclass
class JsonRead:
    """A value read from model text, the repairs it took, or why nothing could be read."""

    value: Any = None
    repairs: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


#: Special tokens of common chat templates that models and servers leak into text: GLM-4.5V's
#: answer box (`<|begin_of_box|>`/`<|end_of_box|>`); end-of-turn, end-of-text and role markers of
#: Qwen/InternVL/Kimi (`<|im_end|>`, `<|im_start|>`, `<|endoftext|>`, `<|im_assistant|>`,
#: `<|im_middle|>`), InternLM's tool markers (`<|action_start|><|plugin|>`), GLM (`<|user|>`, its
#: end of turn, `<|assistant|>`, `<|observation|>`, `[gMASK]<sop>`), Llama (`<|eot_id|>`,
#: `<|eom_id|>`, `<|start_header_id|>`), DeepSeek (`<｜end▁of▁sentence｜>`), Gemma
#: (`<end_of_turn>`) and sentencepiece's `</s>` at the very end. `<|...|>` covers most; `</s>`,
#: which HTML in a fetched page may hold, only when trailing.
_SPECIAL_TOKEN_RE = re.compile(
    r"<\|[A-Za-z][A-Za-z0-9_\-]{0,40}\|>"  # <|im_end|>, <|begin_of_box|>, <|eot_id|>, ...
    r"|<｜[^｜<>\n]{1,40}｜>"  # DeepSeek's full-width bars: <｜end▁of▁sentence｜>
    r"|<(?:start|end)_of_turn>"  # Gemma
    r"|\[gMASK\]|<sop>|<eop>"  # GLM's prefix and segment markers
    r"|(?:</s>|<eos>)\s*$"  # sentencepiece / Gemma end of sequence, trailing only
)
#: Role headers a template writes after its marker (`<|start_header_id|>assistant<|end_header_id|>`).
_HEADER_RE = re.compile(r"<\|start_header_id\|>\w*<\|end_header_id\|>")


def strip_special_tokens(text: str) -> tuple[str, bool]:
    """`text` without leaked chat-template special tokens, and whether it held any.

    Only the tokens go; what they wrapped stays (`<|begin_of_box|>1813<|end_of_box|>` is `1813`).
    """
    if "<" not in text:
        return text, False
    stripped = _SPECIAL_TOKEN_RE.sub("", _HEADER_RE.sub("", text))
    return stripped, stripped != text


def strip_special_tokens_in(value: Any) -> tuple[Any, bool]:
    """The same over every string of a JSON value (a call's arguments), and whether any changed."""
    if isinstance(value, str):
        return strip_special_tokens(value)
    if isinstance(value, list):
        items = [strip_special_tokens_in(v) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    if isinstance(value, dict):
        items = {k: strip_special_tokens_in(v) for k, v in value.items()}
        return {k: v for k, (v, _) in items.items()}, any(c for _, c in items.values())
    return value, False


_GLM_ARG_RE = re.compile(r"<arg_key>(.*?)</arg_key>\s*<arg_value>(.*?)</arg_value>", re.DOTALL)
_QWEN_FUNCTION_RE = re.compile(r"<function=([^>\s]+)>(.*?)(?:</function>|$)", re.DOTALL)
_QWEN_PARAMETER_RE = re.compile(r"<parameter=([^>\s]+)>(.*?)(?:</parameter>|(?=<parameter=)|$)", re.DOTALL)


def xml_call(body: str) -> dict[str, Any] | None:
    """`{"name", "arguments"}` from a call in a model's own XML form, or None.

    GLM-4.5/4.5V (vLLM's `glm45` tool parser): `name<arg_key>k</arg_key><arg_value>v</arg_value>`;
    Qwen3-Coder (`qwen3_coder`): `<function=name><parameter=k>v</parameter></function>`. A value
    that reads as JSON (a list, a number) is taken as that value, else as the string it is.
    """

    def value(text: str) -> Any:
        text = text.strip("\n")
        try:
            decoded = json.loads(text)
        except ValueError:
            return text
        return decoded if not isinstance(decoded, str | int | float) or text.strip()[:1] in '"[{' else text

    if (function := _QWEN_FUNCTION_RE.search(body)) is not None:
        pairs = _QWEN_PARAMETER_RE.findall(function.group(2))
        return {"name": function.group(1).strip(), "arguments": {k.strip(): value(v) for k, v in pairs}}
    pairs = _GLM_ARG_RE.findall(body)
    name = body.split("<arg_key>", 1)[0].strip()
    if not pairs or not re.fullmatch(r"[\w.\-]+", name):
        return None
    return {"name": name, "arguments": {k.strip(): value(v) for k, v in pairs}}


def strip_fence(text: str) -> tuple[str, bool]:
    """The inside of the first ``` fence, if the text has one (and whether it had)."""
    match = _FENCE_RE.search(text)
    if match is None:
        return text, False
    return match.group(1), True


def read_json(text: str, *, expect: type | tuple[type, ...] | None = None) -> JsonRead:
    """Read one JSON value from model text, repairing known slips and naming each repair.

    `expect` (dict, list) rejects a value of another type (json-repair turns almost any text
    into *some* value; a string where an object was asked for is not a repair).
    """
    repairs: list[str] = []
    body = text.strip()
    inner, fenced = strip_fence(body)
    if fenced:
        repairs.append("json_fence")
        body = inner.strip()
    if not body:
        return JsonRead(error="no JSON found (empty)")
    value, more = _decode(body)
    repairs += more
    if value is _NOTHING:
        return JsonRead(repairs=repairs, error=f"not JSON and not repairable: {body[:60]!r}")
    if expect is not None and not isinstance(value, expect):
        names = expect.__name__ if isinstance(expect, type) else "/".join(t.__name__ for t in expect)
        return JsonRead(
            repairs=repairs, error=f"expected a JSON {_kind(names)}, got {_kind(type(value).__name__)}"
        )
    return JsonRead(value=value, repairs=repairs)


_NOTHING = object()


def _kind(name: str) -> str:
    return {"dict": "object", "list": "array", "str": "string"}.get(name, name)


def _decode(body: str) -> tuple[Any, list[str]]:
    """(value or _NOTHING, repairs) for text that should be exactly one JSON value."""
    try:
        return json.loads(body), []
    except ValueError:
        pass
    try:  # control characters (real line breaks, tabs) inside strings: code written verbatim
        return json.loads(body, strict=False), ["raw_newline_in_string"]
    except ValueError:
        pass
    repairs: list[str] = []
    if _TRAILING_COMMA_RE.search(body):
        repairs.append("trailing_comma")
    if _SINGLE_QUOTED_KEY_RE.search(body) or body.translate(_TYPOGRAPHIC_QUOTES) != body:
        repairs.append("single_quotes")
    if re.search(r'"[^"\n]*\n[^"]*"', body):
        repairs.append("raw_newline_in_string")
    stray = _stray_closers(body)
    if stray:
        repairs.append("stray_brace")
        try:
            return json.loads(stray, strict=False), repairs
        except ValueError:
            body = stray
    fixed = json_repair.repair_json(
        body.translate(_TYPOGRAPHIC_QUOTES), return_objects=True, skip_json_loads=True
    )
    if fixed in ("", None) or (
        isinstance(fixed, (dict, list)) and not fixed and body.strip() not in ("{}", "[]")
    ):
        return _NOTHING, repairs
    return fixed, repairs or ["json_repaired"]


def _stray_closers(body: str) -> str | None:
    """`{...}}` or `[...]]`: the body without the extra closers at its end, else None."""
    trimmed = body.rstrip()
    count = 0
    while trimmed and trimmed[-1] in "}]" and count < 3:
        candidate = trimmed[:-1].rstrip()
        count += 1
        try:
            json.loads(candidate, strict=False)
            return candidate
        except ValueError:
            trimmed = candidate
    return None


def json_objects(text: str) -> list[Any]:
    """Every top-level JSON object or array found in prose, in order (fenced ones included).

    A reasoning judge writes its thoughts first and its verdict last; a planner may think
    aloud before the array. Reads with `json.JSONDecoder.raw_decode` from each opening bracket.
    """
    decoder = json.JSONDecoder(strict=False)
    found: list[Any] = []
    pos = 0
    while True:
        match = re.search(r"[{\[]", text[pos:])
        if match is None:
            return found
        start = pos + match.start()
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            pos = start + 1
            continue
        found.append(value)
        pos = end


def last_object(text: str, *, has_key: str | None = None) -> JsonRead:
    """The last JSON object in `text` (with `has_key`, the last that has it); repaired if needed."""
    candidates = [v for v in json_objects(text) if isinstance(v, dict) and (has_key is None or has_key in v)]
    if candidates:
        repairs = ["prose_outside_json"] if text.strip() != json.dumps(candidates[-1]) else []
        return JsonRead(value=candidates[-1], repairs=repairs)
    start = text.rfind("{")
    while start >= 0:
        read = read_json(text[start:], expect=dict)
        if read.ok and (has_key is None or has_key in read.value):
            return JsonRead(value=read.value, repairs=["prose_outside_json", *read.repairs])
        start = text.rfind("{", 0, start)
    return JsonRead(error=f"no JSON object{f' with {has_key!r}' if has_key else ''} found")


def last_array(text: str, *, accept: Callable[[list[Any]], bool] | None = None) -> JsonRead:
    """The last JSON array in `text` that `accept` takes (a planner thinks aloud first); repaired
    if needed. The repair path reads each `[` up to its matching `]` only, so prose after the
    array (or a `[Step 1]` placeholder inside it) never becomes part of the value."""

    def wanted(value: Any) -> bool:
        return isinstance(value, list) and (accept is None or accept(value))

    candidates = [v for v in json_objects(text) if wanted(v)]
    if candidates:
        return JsonRead(value=candidates[-1], repairs=_framing(text, candidates[-1]))
    start = text.rfind("[")
    while start >= 0:
        end = _closing(text, start)
        read = read_json(text[start:end], expect=list)
        if read.ok and wanted(read.value):
            outside = _FENCE_MARK_RE.sub("", text[:start] + text[end:]).strip()
            fenced = "```" in text[:start] + text[end:]
            framing = ["prose_outside_json"] if outside else ["json_fence"] if fenced else []
            return JsonRead(value=read.value, repairs=[*framing, *read.repairs])
        start = text.rfind("[", 0, start)
    return JsonRead(error="no JSON array found")


def _framing(text: str, value: Any) -> list[str]:
    """[] for text that is exactly `value`, ["json_fence"] for a fence around it, else prose."""
    for body, repairs in ((text, []), (strip_fence(text)[0], ["json_fence"])):
        try:
            if json.loads(body, strict=False) == value:
                return repairs
        except ValueError:
            continue
    return ["prose_outside_json"]


def _closing(text: str, start: int) -> int:
    """End (exclusive) of the bracketed value opening at `start`, strings skipped; len(text) if unclosed."""
    depth, in_string, escaped = 0, False, False
    for pos in range(start, len(text)):
        char = text[pos]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return pos + 1
    return len(text)
