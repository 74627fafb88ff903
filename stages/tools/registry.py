"""Build the tool set for a mode from the config; close it when the run ends.

DeepResearch mode gets R1V4's four executor tools, General mode only `code`. Each tool has its
own handle on the shared SQLite cache under `cache_dir`, so hit counts are per tool.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import Config, ToolsConfig
from stages.tools.base import Tool
from stages.tools.cache import ToolCache
from stages.tools.code.code_tool import CodeTool

CACHE_FILE = "tools_cache.sqlite"


def _corpus(cfg: ToolsConfig, corpus_dir: Path | None) -> Path:
    chosen = Path(cfg.search.corpus_dir) if cfg.search.corpus_dir else corpus_dir
    if chosen is None:
        raise ValueError("local search needs a corpus: set tools.search.corpus_dir or build the world")
    return chosen


def build_text_backend(cfg: ToolsConfig, corpus_dir: Path | None):
    from stages.tools.search import search_tools as search

    backend = cfg.search.text_backend
    if backend == "ddgs":
        return search.DdgsText()
    if backend == "serper":
        return search.SerperText(search.SerperClient(cfg.search.serper_key_env))
    index_dir = Path(cfg.search.index_dir) if cfg.search.index_dir else None
    return search.LocalText(_corpus(cfg, corpus_dir), index_dir)


def build_image_backend(cfg: ToolsConfig, corpus_dir: Path | None, cache_dir: Path):
    from stages.tools.search import search_tools as search

    if cfg.search.image_backend == "serper":
        client = search.SerperClient(cfg.search.serper_key_env)
        return search.SerperLens(client, cfg.search.public_image_base_url, cache_dir / "public_images")
    index_dir = Path(cfg.search.index_dir) if cfg.search.index_dir else None
    return search.LocalImages(_corpus(cfg, corpus_dir), index_dir)


def build_tools(cfg: ToolsConfig, mode: str, *, corpus_dir: Path | None, cache_dir: Path) -> dict[str, Tool]:
    """name -> tool for `mode` ("deepresearch": all four; "general": code only)."""
    if mode not in ("deepresearch", "general"):
        raise ValueError(f"unknown tool mode {mode!r}; use 'deepresearch' or 'general'")
    tools: dict[str, Tool] = {"code": CodeTool(cfg.code)}
    if mode == "general":
        return tools
    from stages.tools.search.search_tools import ImageSearchTool, TextSearchTool
    from stages.tools.visit.web_visit import WebVisitTool

    def cache(enabled: bool) -> ToolCache:
        return ToolCache(cache_dir / CACHE_FILE, enabled=enabled)

    top_k = cfg.search.top_k
    tools["image_search"] = ImageSearchTool(
        build_image_backend(cfg, corpus_dir, cache_dir), cache(cfg.search.cache), top_k
    )
    tools["text_search"] = TextSearchTool(build_text_backend(cfg, corpus_dir), cache(cfg.search.cache), top_k)
    tools["web_visit"] = WebVisitTool(cfg.visit, cache(cfg.visit.cache))
    return tools


def run_tools(cfg: Config, mode: str, run_dir: Path) -> dict[str, Tool]:
    """A run's tools: local search over `tools.search.corpus_dir`, else the world's corpus."""
    corpus = cfg.tools.search.corpus_dir or str(Path(cfg.world.dir) / "corpus")
    return build_tools(cfg.tools, mode, corpus_dir=Path(corpus), cache_dir=run_dir / "cache" / "tools")


def tool_stats(tools: dict[str, Tool]) -> dict[str, dict]:
    """Per-tool counters (calls, cache hits and misses, API calls) for run summaries."""
    return {name: tool.stats() for name, tool in tools.items() if hasattr(tool, "stats")}


async def close_tools(tools: dict[str, Tool]) -> None:
    """Stop sandbox workers, HTTP clients and cache handles."""
    for tool in tools.values():
        await tool.aclose()
