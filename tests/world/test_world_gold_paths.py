"""Every gold path, executed for real: the oracle (over HTTP) drives the real tools to the answer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import openai
import pytest
from world_agent import run_task

from pipeline.config import ToolsConfig
from stages.tools.code.isolation import bwrap_works
from stages.tools.registry import build_tools, close_tools
from world import WorldServer, load_tasks
from world.oracle_judges import answer_matches

pytestmark = pytest.mark.skipif(not bwrap_works(), reason="code sandbox needs bubblewrap")


def _tools_config(port: int) -> ToolsConfig:
    return ToolsConfig.model_validate(
        {
            "code": {"workers": 1},
            "visit": {"host_overrides": {"world.trajforge.local": f"127.0.0.1:{port}"}, "cache": False},
            "search": {"cache": False},
        }
    )


def test_every_gold_path_reaches_the_gold_answer(small_world: Path, tmp_path: Path) -> None:
    tasks = load_tasks(small_world)
    assert {t.category for t in tasks} == {"perception", "search", "interleaved", "multihop"}

    async def main() -> list[tuple]:
        with WorldServer(small_world) as server:
            cfg = _tools_config(server.port)
            tools = build_tools(
                cfg, "deepresearch", corpus_dir=small_world / "corpus", cache_dir=tmp_path / "cache"
            )
            client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="unused", max_retries=0)
            try:
                out = []
                for task in tasks:
                    result = await run_task(client, tools, task, tmp_path / task.task_id)
                    gold_steps = len(json.loads(task.gold_path))
                    out.append((task, result, gold_steps))
                return out
            finally:
                await client.close()
                await close_tools(tools)

    results = asyncio.run(main())
    failures = [
        (t.category, t.question, t.gold_answer, r["answer"], r["texts"][-1][:300])
        for t, r, _ in results
        if not answer_matches(r["answer"] or "", t.gold_answer, t.answer_aliases)
    ]
    assert not failures, failures
    # honest runs follow the gold path exactly: one turn per gold step, no retries
    assert all(r["turns"] == steps for _, r, steps in results), [
        (t.category, r["turns"], s) for t, r, s in results
    ]


@pytest.mark.slow
def test_default_world_gold_paths_all_reach_the_answer(tmp_path: Path) -> None:
    """The full default world (300 entities, 200 tasks): search ranking and image matching at scale."""
    from world import build_world

    world = build_world(tmp_path / "w", seed=0, progress=False)
    tasks = load_tasks(world)

    async def main() -> list[tuple]:
        with WorldServer(world) as server:
            tools = build_tools(
                _tools_config(server.port),
                "deepresearch",
                corpus_dir=world / "corpus",
                cache_dir=tmp_path / "cache",
            )
            client = openai.AsyncOpenAI(base_url=server.openai_base_url, api_key="unused", max_retries=0)
            try:
                return [(t, await run_task(client, tools, t, tmp_path / t.task_id)) for t in tasks]
            finally:
                await client.close()
                await close_tools(tools)

    results = asyncio.run(main())
    failures = [
        (t.category, t.question, t.gold_answer, r["answer"])
        for t, r in results
        if not answer_matches(r["answer"] or "", t.gold_answer, t.answer_aliases)
    ]
    assert not failures, failures
