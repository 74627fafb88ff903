"""The planner over real HTTP: a reply that thinks aloud and fences its array (with a trailing
comma) is read; a numbered list (R1V4's Figure 4) is re-asked with the format it must use."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pipeline.config import TeacherConfig
from pipeline.schema import Task
from pipeline.teacher import TeacherClient
from stages.synth.plan import make_plan

try:  # the teacher client rewrite moves the encoder next to the messages
    from pipeline.chat import ImageEncoder
except ImportError:
    from pipeline.teacher import ImageEncoder

ARRAY = (
    '[{"description": "Search the lighthouse", "tool_name": "text_search", "parameters": {"query": "Velmora lighthouse"}},\n'
    ' {"description": "Read [URL found in Step 1]", "tool_name": "web_visit", "parameters": {"url": "[URL found in Step 1]"}},\n'
    ' {"description": "Verify the keeper", "tool_name": "none", "parameters": {}},\n]'
)
NUMBERED = (
    "Let me format this properly as a JSON array.\n"
    '1. Search the lighthouse: text_search, query = "Velmora lighthouse"\n'
    "2. Verify the keeper: none"
)


def plan_with(fake_teacher, tmp_path: Path, replies: list[str]):
    server = fake_teacher(lambda body: replies[min(len(server.requests), len(replies)) - 1])
    task = Task(question="Who kept the Velmora lighthouse in 1900?", source="test")

    async def go():
        teacher = TeacherClient(TeacherConfig(base_url=server.base_url, max_retries=0), cache_dir=None)
        try:
            return await make_plan(task, teacher, ImageEncoder(None, 1 << 20), retries=2)
        finally:
            await teacher.aclose()

    return server, asyncio.run(go())


def test_prose_and_fenced_array_with_trailing_comma_is_read(fake_teacher, tmp_path: Path) -> None:
    reply = "The question needs the keeper's name, so search first.\n```json\n" + ARRAY + "\n```"
    server, plan = plan_with(fake_teacher, tmp_path, [reply])
    assert plan.valid and plan.attempts == 1 and len(server.requests) == 1
    assert [s.tool_name for s in plan.steps] == ["text_search", "web_visit", "none"]


def test_numbered_list_is_reasked_with_the_expected_format(fake_teacher, tmp_path: Path) -> None:
    server, plan = plan_with(fake_teacher, tmp_path, [NUMBERED, ARRAY])
    assert plan.valid and plan.attempts == 2 and len(server.requests) == 2
    reask = server.requests[1]["messages"][-1]["content"]
    reask = reask if isinstance(reask, str) else json.dumps(reask)
    assert "numbered list" in reask and "JSON array of step objects" in reask


def test_numbered_list_every_time_ends_invalid_with_the_error(fake_teacher, tmp_path: Path) -> None:
    server, plan = plan_with(fake_teacher, tmp_path, [NUMBERED])
    assert not plan.valid and plan.attempts == 3 and len(server.requests) == 3
    assert any("numbered list" in e for e in plan.errors)
