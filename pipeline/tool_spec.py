"""What a tool declares about itself, once: the table every consumer of tool names derives from.

A tool's module states its `ToolSpec` (name, the modes that offer it, the JSON schema of its
arguments, how the prompts show it, its planner parameter); `stages/tools/registry.py` lists the
tools, one line each. Everything that needs tool names or argument shapes reads a `ToolTable`
built from those declarations and handed to it: the executor prompts' tool lists and the
planner's, the native function schemas, the plan format's parameters, the format check, plan
samples. A run records the table it offered (`RUN/tools.json`), so a later `trajforge filter`
judges calls against the tools the teacher was actually given.

The spine never imports a tool: the table is data, built by the stage that owns the tools.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import jsonschema

#: The planner's step without a tool (reasoning, verification): always allowed, never declared.
NO_TOOL = "none"


@dataclass(frozen=True)
class ToolSpec:
    """One tool as the teacher, the prompts, the plan format and the filters see it."""

    name: str
    modes: tuple[str, ...] = ("deepresearch",)  # executor modes that offer it ("deepresearch", "general")
    description: str = ""  # the function description native tool calling sends
    parameters: Mapping[str, Any] = field(default_factory=dict)  # JSON schema of its arguments (one required)
    prompt: str = ""  # what it does, as the executor prompts say it
    text_usage: str = "{...}"  # its arguments as the text protocol's prompt shows them: '{"urls": ["..."]}'
    native_usage: str = ""  # the same for native tool calling: '(urls)'; empty: just the name
    plan_parameter: str | None = None  # the planner's singular parameter ("url"); None: not plannable
    plan_prompt: str = ""  # what a plan step with it does, as the planner prompt says it
    plan_label: str = "Result from Step {k}"  # placeholder naming what a step of it found
    plan_step: str = "Use {tool} with {value}"  # a plan step's description, from one executed input
    runs_code: bool = False  # its argument is code run in the sandbox (execution/re-crop checks)

    @property
    def argument(self) -> str:
        """The one required argument (R1V4's executor tools each take one: code, a list of
        queries, image paths or URLs)."""
        return str(self.parameters.get("required", [""])[0])

    @property
    def argument_is_list(self) -> bool:
        return self.parameters.get("properties", {}).get(self.argument, {}).get("type") == "array"

    def function_schema(self) -> dict[str, Any]:
        """OpenAI-style function schema (what native tool calling sends)."""
        return {"name": self.name, "description": self.description, "parameters": dict(self.parameters)}

    def argument_errors(self, arguments: Mapping[str, Any]) -> list[str]:
        """What is wrong with a call's arguments (empty when valid): its declared schema, made
        strict (no other arguments; the one argument not blank, a list not empty)."""
        return schema_errors(self.name, self.strict_parameters, arguments)

    @functools.cached_property
    def strict_parameters(self) -> dict[str, Any]:
        properties = dict(self.parameters.get("properties", {}))
        rule = dict(properties.get(self.argument, {}))
        if self.argument_is_list:
            rule |= {"minItems": 1, "items": {**rule.get("items", {}), "type": "string", "pattern": r"\S"}}
        else:
            rule |= {"type": "string", "pattern": r"\S"}
        properties[self.argument] = rule
        return {**self.parameters, "properties": properties, "additionalProperties": False}


def schema_errors(tool: str, schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> list[str]:
    """What is wrong with a call's arguments under a JSON schema (a tool's own, or the one an
    imported record declared); the one validator of tool arguments. A schema that is itself
    broken constrains nothing: the call is still a JSON object."""
    try:
        validator = _validator(json.dumps(schema, sort_keys=True))
    except jsonschema.SchemaError:
        return []
    errors = sorted(validator.iter_errors(dict(arguments)), key=lambda e: list(e.path))
    return [f"{tool}: {'/'.join(map(str, e.path)) + ': ' if e.path else ''}{e.message}" for e in errors[:3]]


@functools.lru_cache(maxsize=256)
def _validator(schema: str) -> jsonschema.Draft202012Validator:
    parsed = json.loads(schema)
    jsonschema.Draft202012Validator.check_schema(parsed)
    return jsonschema.Draft202012Validator(parsed)


@dataclass(frozen=True)
class ToolTable:
    """The tools a run offers, in prompt order, and every view of them the core needs."""

    specs: tuple[ToolSpec, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates or NO_TOOL in names:
            raise ValueError(f"tool names must be unique and not {NO_TOOL!r}: {duplicates or [NO_TOOL]}")

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self.specs)

    def __contains__(self, name: object) -> bool:
        return any(spec.name == name for spec in self.specs)

    def get(self, name: str | None) -> ToolSpec | None:
        return next((spec for spec in self.specs if spec.name == name), None)

    def for_mode(self, mode: str) -> ToolTable:
        """The tools an executor mode offers (unknown modes: DeepResearch's)."""
        known = {m for spec in self.specs for m in spec.modes}
        chosen = mode if mode in known else "deepresearch"
        return ToolTable(tuple(spec for spec in self.specs if chosen in spec.modes))

    def plan_tools(self, mode: str | None = None) -> tuple[str, ...]:
        """Tools a plan step may use: the plannable ones (of a mode's, when given), then `none`."""
        offered = self.for_mode(mode) if mode else self
        return (*(spec.name for spec in offered if spec.plan_parameter), NO_TOOL)

    def prompt_block(self, protocol: str = "text") -> str:
        """The executor prompt's tool list, one line per tool."""
        if protocol == "native":
            return "\n".join(
                f"- {s.name}{' ' + s.native_usage if s.native_usage else ''}. {s.prompt}" for s in self.specs
            )
        return "\n".join(f"- {s.name}: {s.text_usage}. {s.prompt}" for s in self.specs)

    def planner_block(self) -> str:
        """The planner prompt's tool list (plannable tools, research before image operations as
        R1V4's planner lists them; the `none` line is the prompt's own)."""
        plannable = sorted((s for s in self.specs if s.plan_parameter), key=lambda s: s.runs_code)
        return "\n".join(
            f'- "{s.name}" with {{"{s.plan_parameter}": "..."}}: {s.plan_prompt};' for s in plannable
        )

    # -------------------------------------------------------------------- the run's record

    def to_json(self) -> str:
        return json.dumps([asdict(spec) for spec in self.specs], indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ToolTable:
        rows = json.loads(text)
        return cls(tuple(ToolSpec(**{**row, "modes": tuple(row["modes"])}) for row in rows))

    @classmethod
    def parse(cls, text: str, where: str) -> ToolTable:
        """The table a run recorded (`where`: its name in messages); an unreadable one is an
        error that says what to do, never a silent fallback to other tools."""
        try:
            return cls.from_json(text)
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(
                f"{where} is not a tool table ({type(exc).__name__}: {exc}); restore it, or delete it to judge "
                "calls against trajforge's own tools"
            ) from None

    @classmethod
    def of(cls, specs: Iterable[ToolSpec]) -> ToolTable:
        return cls(tuple(specs))
