"""The tools trajforge offers, one line each, and the run's tool set built from the config.

Each tool declares itself once (`Tool.spec`: name, modes, JSON schema, how prompts and plans
show it); everything else derives from the table built here: the prompts' tool lists, the
native function schemas, the plan format, the format check (through the run's `tools.json`).
Adding a tool is its module plus one line in `BUILTIN_TOOLS`, or, from outside trajforge, one
line in the config: `tools.extra: ["my_package.my_tool:MyTool"]`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from pipeline.config import Config, ToolsConfig
from pipeline.tool_spec import ToolSpec, ToolTable
from stages.tools.base import CACHE_FILE, Tool, ToolEnv
from stages.tools.code.code_tool import CodeTool
from stages.tools.search.search_tools import ImageSearchTool, TextSearchTool
from stages.tools.visit.web_visit import WebVisitTool

__all__ = [
    "BUILTIN_TOOLS",
    "CACHE_FILE",
    "build_tools",
    "close_tools",
    "run_tools",
    "tool_classes",
    "tool_table",
]

#: R1V4's executor tools, in the order the prompts list them.
BUILTIN_TOOLS: tuple[type[Tool], ...] = (
    CodeTool,
    ImageSearchTool,
    TextSearchTool,
    WebVisitTool,
)


def _load(reference: str) -> type[Tool]:
    """`package.module:Class` -> the class, with an error that says what to fix."""
    module_name, _, class_name = reference.partition(":")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(
            f"tools.extra: cannot load {reference!r} ({exc}); write it as 'package.module:Class'"
        ) from exc
    if not (
        isinstance(found, type)
        and issubclass(found, Tool)
        and isinstance(getattr(found, "spec", None), ToolSpec)
    ):
        raise ValueError(f"tools.extra: {reference!r} is not a trajforge Tool subclass with a `spec`")
    return found


def tool_classes(cfg: ToolsConfig | None = None) -> tuple[type[Tool], ...]:
    """The built-in tools, then the config's `tools.extra`."""
    return BUILTIN_TOOLS + tuple(_load(ref) for ref in (cfg.extra if cfg is not None else []))


def tool_table(cfg: ToolsConfig | None = None) -> ToolTable:
    """Every declared tool (all modes): what prompts, plans and the filters derive from."""
    return ToolTable.of(cls.spec for cls in tool_classes(cfg))


def build_tools(cfg: ToolsConfig, mode: str, *, corpus_dir: Path | None, cache_dir: Path) -> dict[str, Tool]:
    """name -> tool for `mode`, in prompt order ("general" offers `code` only)."""
    if mode not in ("deepresearch", "general"):
        raise ValueError(f"unknown tool mode {mode!r}; use 'deepresearch' or 'general'")
    env = ToolEnv(corpus_dir=corpus_dir, cache_dir=cache_dir)
    return {cls.spec.name: cls.create(cfg, env) for cls in tool_classes(cfg) if mode in cls.spec.modes}


def run_tools(cfg: Config, mode: str, run_dir: Path) -> dict[str, Tool]:
    """A run's tools: local search over `tools.search.corpus` (an encyclopedia served locally),
    else `tools.search.corpus_dir`, else the world's corpus."""
    corpus = cfg.tools.search.corpus_dir or str(Path(cfg.world.dir) / "corpus")
    return build_tools(cfg.tools, mode, corpus_dir=Path(corpus), cache_dir=run_dir / "cache" / "tools")


def tool_stats(tools: dict[str, Tool]) -> dict[str, dict]:
    """Per-tool counters (calls, cache hits and misses, API calls) for run summaries."""
    return {name: tool.stats() for name, tool in tools.items() if hasattr(tool, "stats")}


async def close_tools(tools: dict[str, Tool]) -> None:
    """Stop sandbox workers, HTTP clients and cache handles."""
    for tool in tools.values():
        await tool.aclose()
