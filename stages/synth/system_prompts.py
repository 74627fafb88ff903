"""The system prompts of each mode, with the tool lists filled from the tools' declarations.

The executor and planner templates in `prompts/` hold `$tools` and `$plan_tools`; here they are
filled from a `ToolTable` (the run's tools, by default the built-in ones). The same function
serves synthesis, evaluation, SFT formatting and the exports, so a student trains on the very
prompt its teacher saw.
"""

from __future__ import annotations

from functools import cache

from pipeline.chat import ToolProtocol
from pipeline.tool_spec import ToolTable
from prompts import Prompt, load_prompt, with_tools
from stages.tools.registry import tool_table

#: The prompt each mode runs under (Plan mode is the planner's).
PROMPT_FOR_MODE = {"deepresearch": "executor_deepresearch", "general": "executor_general", "plan": "planner"}
PLANNER = PROMPT_FOR_MODE["plan"]


def _fields(tools: ToolTable, mode: str, protocol: str) -> dict[str, str]:
    return {"tools": tools.for_mode(mode).prompt_block(protocol), "plan_tools": tools.planner_block()}


@cache
def _shipped_fields(mode: str, protocol: str) -> dict[str, str]:
    """The tool lists as the built-in tools fill them (what the shipped versions mean)."""
    return _fields(tool_table(), mode, protocol)


def _filled(template: Prompt, mode: str, protocol: str, tools: ToolTable | None) -> Prompt:
    shipped = _shipped_fields(mode, protocol)
    return with_tools(template, _fields(tools, mode, protocol) if tools is not None else shipped, shipped)


def executor_prompt(mode: str, protocol: ToolProtocol = "text", tools: ToolTable | None = None) -> Prompt:
    """The system prompt of an executor mode (its id is the trajectory's prompt_version).

    Native tool calling has its own prompts (the tools travel as function schemas); training
    text is always R1V4 text under the text prompt, whatever protocol the teacher used.
    """
    name = PROMPT_FOR_MODE["general" if mode == "general" else "deepresearch"]
    return _filled(load_prompt(f"{name}_native" if protocol == "native" else name), mode, protocol, tools)


def planner_prompt(tools: ToolTable | None = None) -> Prompt:
    """The planner's prompt, listing the plannable tools."""
    return _filled(load_prompt(PLANNER), "deepresearch", "text", tools)


def system_prompt(mode: str, version: str | None = None) -> Prompt:
    """A mode's training prompt (text protocol), at `version` when it is known here, else the
    latest: a prompt filled with other tools was saved into the run and found by its version."""
    name = PROMPT_FOR_MODE.get(mode, PROMPT_FOR_MODE["deepresearch"])
    try:
        template = load_prompt(name, version)
    except KeyError:
        template = load_prompt(name)
    return _filled(template, mode, "text", None)


def fill_shipped(text: str, native: bool = False) -> str:
    """A template's text filled with the built-in tools (for texts read straight from files)."""
    template = Prompt("template", "v0", text)
    return _filled(template, "deepresearch", "native" if native else "text", None).text
