"""The R1V4 planner format: a JSON array of 2 to 10 `{description, tool_name, parameters}` steps.

One validator and one renderer. A step that depends on an earlier one says so with a
placeholder such as `[Person identified in Step 1]` or `[Result from Step 2]`; a placeholder
must point to an earlier step. Validation never raises on model output: it returns the steps
it could read and a list of errors (shown back to the teacher on retry).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from pipeline.lenient import JsonRead, last_array
from pipeline.schema import PlanStep
from pipeline.tool_spec import NO_TOOL, ToolTable

MIN_STEPS, MAX_STEPS = 2, 10
_PLACEHOLDER_RE = re.compile(r"\[([^\[\]]*?\bstep\s*(\d+)\b[^\[\]]*?)\]", re.IGNORECASE)
PLAN_KEYS = {"description", "tool_name", "parameters"}
#: What the planner is told when a reply holds no plan array (shown back to it on retry).
EXPECTED_FORMAT = (
    'a single JSON array of step objects, e.g. [{"description": "...", "tool_name": "text_search", '
    '"parameters": {"query": "..."}}, {"description": "...", "tool_name": "none", "parameters": {}}], '
    "with no numbered list and no text outside the array"
)
_NUMBERED_RE = re.compile(r"^\s*(?:step\s*)?\d+[.):]\s+\S", re.IGNORECASE | re.MULTILINE)


def placeholders(text: str) -> list[tuple[str, int]]:
    """`[... Step N ...]` placeholders in a text, as (placeholder, N)."""
    return [(m.group(0), int(m.group(2))) for m in _PLACEHOLDER_RE.finditer(text)]


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def looks_like_plan(value: list[Any]) -> bool:
    """A non-empty array of objects that use the plan's keys (not a placeholder or a number list)."""
    return bool(value) and all(isinstance(item, dict) and PLAN_KEYS & set(item) for item in value)


def read_plan(text: str) -> JsonRead:
    """The plan array in a planner reply through the one lenient reader (`pipeline.lenient`):
    bare, fenced, after prose (the last plan-like array wins), trailing commas repaired.
    A reply with no such array (R1V4's Figure 4: a numbered list) gets an error saying what
    format is expected, which the planner is re-asked with."""
    read = last_array(text, accept=looks_like_plan)
    if read.ok:
        return read
    if _NUMBERED_RE.search(text):
        found = "a numbered list"
    elif not text.strip():
        found = "an empty reply"
    else:
        found = f"no JSON array of steps in {_excerpt(text)!r}"
    return JsonRead(error=f"expected {EXPECTED_FORMAT}; got {found}")


def extract_plan_json(text: str) -> Any:
    """The plan array in a planner reply (see `read_plan`); ValueError with the reason if none."""
    read = read_plan(text)
    if not read.ok:
        raise ValueError(read.error)
    return read.value


def validate_plan(
    data: Any,
    tools: ToolTable,
    *,
    mode: str | None = None,
    require_final_none: bool = True,
) -> tuple[list[PlanStep], list[str]]:
    """Check a parsed plan against the plannable tools (of `mode`'s, when given); returns the
    readable steps and every error found."""
    allowed = set(tools.plan_tools(mode))
    errors: list[str] = []
    if not isinstance(data, list):
        return [], ["plan must be a JSON array of steps"]
    if not MIN_STEPS <= len(data) <= MAX_STEPS:
        errors.append(f"plan has {len(data)} steps; it must have {MIN_STEPS} to {MAX_STEPS}")
    steps: list[PlanStep] = []
    for number, item in enumerate(data, start=1):
        where = f"step {number}"
        if not isinstance(item, dict):
            errors.append(f"{where}: must be an object with description, tool_name, parameters")
            continue
        missing = PLAN_KEYS - set(item)
        if missing:
            errors.append(f"{where}: missing {sorted(missing)}")
        extra = set(item) - PLAN_KEYS
        if extra:
            errors.append(f"{where}: unexpected keys {sorted(extra)}")
        description, tool, params = item.get("description"), item.get("tool_name"), item.get("parameters", {})
        if not isinstance(description, str) or not description.strip():
            errors.append(f"{where}: description must be a non-empty string")
            description = str(description or "")
        if tool not in allowed:
            errors.append(f"{where}: tool_name {tool!r} is not one of {sorted(allowed)}")
        if not isinstance(params, dict):
            errors.append(f"{where}: parameters must be an object")
            params = {}
        elif (
            tool in allowed
            and (expected := _plan_parameters(tools, tool)) is not None
            and set(params) != expected
        ):
            errors.append(
                f"{where}: {tool} takes parameters {sorted(expected) or '{}'}, got {sorted(params)}"
            )
        for text in [description, *_strings(params)]:
            for placeholder, target in placeholders(text):
                if not 1 <= target < number:
                    errors.append(
                        f"{where}: placeholder {placeholder} must point to an earlier step (1..{number - 1})"
                    )
        steps.append(PlanStep(description=description, tool_name=str(tool), parameters=params))
    if require_final_none and steps and steps[-1].tool_name != NO_TOOL:
        errors.append("the last step must be a 'none' reasoning or verification step")
    return steps, errors


def _plan_parameters(tools: ToolTable, tool: str) -> set[str] | None:
    """The parameter names a step with `tool` must take; None: free-form (a code step describes
    its image operation in its own words)."""
    spec = tools.get(tool)
    if spec is None:
        return set()  # `none`
    return None if spec.runs_code else {spec.plan_parameter or ""}


def parse_plan(text: str, tools: ToolTable, **kwargs: Any) -> tuple[list[PlanStep], list[str]]:
    """Extract and validate a plan from a planner reply."""
    read = read_plan(text)
    if not read.ok:
        return [], [f"plan is not valid JSON: {read.error}"]
    return validate_plan(read.value, tools, **kwargs)


def _excerpt(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def render_plan(steps: Iterable[PlanStep]) -> str:
    """The canonical JSON text of a plan (what a plan-mode sample's answer contains): exactly
    `json.dumps(..., ensure_ascii=False, indent=2)`, built from the C encoder's scalars (the
    stdlib's indented encoder is pure Python, and each call leaves a reference cycle behind)."""
    value = [s.model_dump() for s in steps]
    try:
        return _indented(value, "\n")
    except TypeError:  # a key the fast path does not spell (not a str): the stdlib's own way
        return json.dumps(value, ensure_ascii=False, indent=2)


def _indented(value: Any, newline: str) -> str:
    """`value` as `json.dumps(value, ensure_ascii=False, indent=2)` writes it at this depth."""
    if isinstance(value, dict) and value:
        inner = newline + "  "
        if not all(isinstance(key, str) for key in value):
            raise TypeError("non-string key")
        items = (_string(k) + ": " + _indented(v, inner) for k, v in value.items())
        return "{" + inner + ("," + inner).join(items) + newline + "}"
    if isinstance(value, (list, tuple)) and value:
        inner = newline + "  "
        return "[" + inner + ("," + inner).join(_indented(v, inner) for v in value) + newline + "]"
    return _string(value) if isinstance(value, str) else _scalar(value)


_string = json.encoder.encode_basestring  # what the encoder writes for a str (ensure_ascii=False)
_scalar = json.JSONEncoder(ensure_ascii=False).encode
