"""Synth test helpers: the loopback OpenAI server (`tests.fake_openai`), fake tools, a scripted agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pipeline.schema import Observation
from stages.tools.base import Tool, ToolContext
from tests.fake_openai import FakeTeacher, Fault, completion, serve_fake_teachers

__all__ = ["FakeTeacher", "Fault", "completion"]


@pytest.fixture
def fake_teacher():
    yield from serve_fake_teachers()


# ------------------------------------------------------------------- fake tools and teacher


class FakeCrop(Tool):
    """A real (tiny) image tool: crops the left half of the first image and registers it."""

    name = "code"

    async def _run(self, arguments, ctx: ToolContext) -> Observation:
        source = next(iter(ctx.images.values()))
        with Image.open(source) as image:
            crop = image.crop((0, 0, max(1, image.width // 2), image.height))
            out = ctx.workdir / f"crop_{len(ctx.images)}.png"
            crop.save(out)
        name = ctx.register_image(out)
        return Observation(text=f"Saved {name}: <image>", images=[str(out)])


class FakeSearch(Tool):
    name = "text_search"

    async def _run(self, arguments, ctx: ToolContext) -> Observation:
        queries = arguments.get("queries") or []
        if not queries:
            return Observation(error="queries must be a non-empty list")
        return Observation(text="\n".join(f"{i + 1}. Result for {q}" for i, q in enumerate(queries)))


def fake_tools(cfg, mode: str, run_dir: Path) -> dict[str, Tool]:
    """A tools factory for the runner (module level so Ray and subprocesses can import it)."""
    tools: dict[str, Tool] = {"code": FakeCrop()}
    if mode == "deepresearch":
        tools["text_search"] = FakeSearch()
    return tools


REPO = Path(__file__).resolve().parents[2]


def run_on_ray(cfg, store, base_url: str, env_vars: dict[str, str] | None = None) -> dict[str, Any]:
    """`run_synth` over a local Ray of 2 CPUs with the fake tools; its workers import this
    checkout (PYTHONPATH) and get `env_vars` (a node's own scratch folder, bucket credentials)."""
    from stages.synth.runner import run_synth

    env = {"PYTHONPATH": str(REPO), **(env_vars or {})}
    return run_synth(
        cfg,
        store,
        teacher_base_url=base_url,
        use_ray=True,
        tools_factory=fake_tools,
        progress=False,
        ray_init={"num_cpus": 2, "runtime_env": {"env_vars": env}},
    )


PLAN = (
    '[{"description": "Crop the region", "tool_name": "code", "parameters": {"operation": "crop"}},'
    ' {"description": "Search [Text read in Step 1]", "tool_name": "text_search",'
    ' "parameters": {"query": "[Text read in Step 1]"}},'
    ' {"description": "Verify", "tool_name": "none", "parameters": {}}]'
)


def scripted_agent(body: dict[str, Any]) -> Any:
    """Planner -> PLAN; executor -> crop, search, answer (by the number of assistant turns)."""
    messages = body["messages"]
    system = messages[0]["content"] if isinstance(messages[0]["content"], str) else ""
    if system.startswith("You are a planning agent"):
        return PLAN
    turns = sum(1 for m in messages if m["role"] == "assistant")
    seed = body.get("seed", 0)
    extra = {"trajforge": {"defects": ["wrong_answer"] if seed == 1 else [], "task_id": None}}
    if turns == 0:
        text = (
            '<think>Crop first.</think><tool_call>{"name": "code", "arguments": {"code": "crop"}}</tool_call>'
        )
    elif turns == 1:
        text = '<think>Search it.</think><tool_call>{"name": "text_search", "arguments": {"queries": ["x"]}}</tool_call>'
    else:
        text = f"<think>Done.</think><answer>answer-{seed}</answer>"
    return completion(text, extra=extra)
