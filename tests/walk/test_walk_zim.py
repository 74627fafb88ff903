"""`tasks walk` over the real Ray Charles ZIM (a slice of English Wikipedia) with a scripted
teacher on loopback: the corpus is indexed and served, every hop is verified there (a search
for its clue finds the page, or the next page names it), the evidence URLs are the corpus's
local URLs and web_visit reads them. Skipped without ../shared."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.schema import Task, Trajectory
from pipeline.store import RunStore
from stages.tools.search.corpus_web import origin_for
from tests.fake_openai import FakeTeacher
from tests.reference import reference

YEAR = re.compile(r"\b(19[4-9]\d|20[0-2]\d)\b")


def _text(message: dict) -> str:
    content = message["content"]
    if isinstance(content, list):
        content = "".join(part.get("text", "") for part in content if part.get("type") == "text")
    return content or ""


def _payload(body: dict) -> dict:
    try:
        return json.loads(_text(body["messages"][-1]))
    except (json.JSONDecodeError, KeyError):
        return {}


def _agent(body: dict) -> str:
    """An executor that searches the corpus, reads the first hit, then answers."""
    messages = body["messages"]
    turns = sum(1 for m in messages if m["role"] == "assistant")
    if turns == 0:
        call = {"name": "text_search", "arguments": {"queries": ["Ray Charles pianist Albany Georgia"]}}
        return f"<think>Search first.</think><tool_call>{json.dumps(call)}</tool_call>"
    if turns == 1:
        url = re.search(r"Link: (\S+)", _text(messages[-1])).group(1)
        call = {"name": "web_visit", "arguments": {"urls": [url]}}
        return f"<think>Read it.</think><tool_call>{json.dumps(call)}</tool_call>"
    return "<think>Done.</think><answer>1930</answer>"


def scripted(body: dict) -> str:
    """A teacher that follows the walk prompts literally, from the page text it is shown, and
    then solves tasks as an agent would (search, visit, answer)."""
    p = _payload(body)
    step = p.get("walk")
    if step is None:
        return _agent(body)
    if step == "mine":
        year = YEAR.search(p["lead"])
        if year is None:
            return json.dumps({"error": "no year in the lead"})
        return json.dumps({"question": f"Which year does the article on {p['title']} mention first?",
                           "answer": year.group(1)})  # fmt: skip
    if step == "unique":
        return json.dumps({"verdict": "ok", "reason": "a year stated in the lead"})
    if step == "hop":
        current, nxt = p["current"]["title"], p["next"]["title"]
        question = p["question"].replace(current, f"an entry that {nxt} mentions")
        return json.dumps({"relation": "mentioned by", "property": "an entry of the encyclopedia",
                           "question": question, "disambiguates": True})  # fmt: skip
    if step == "visual":
        title = p["entity"]["title"]
        return json.dumps(
            {"depicts": True, "question": p["question"].replace(title, "the subject of this picture")}
        )
    return json.dumps({"unique": True, "second_answer": None, "reason": "each clue singles out one entry"})


@pytest.fixture
def fake_teacher():
    servers: list[FakeTeacher] = []
    yield lambda handler: servers.append(FakeTeacher(handler)) or servers[-1]
    for server in servers:
        server.close()


def test_walk_over_the_ray_charles_zim_verifies_every_hop(fake_teacher, tmp_path: Path) -> None:
    zim = reference("ray_charles.zim")
    teacher = fake_teacher(scripted)
    run = tmp_path / "run"
    sets = [f"teacher.base_url={teacher.base_url}", f"tools.search.corpus_cache={tmp_path / 'cache'}",
            "teacher.cache=false"]  # fmt: skip
    args = [
        "tasks",
        "walk",
        "--corpus",
        str(zim),
        "--run",
        str(run),
        "--n",
        "3",
        "--hops",
        "1..2",
        "--max-walks",
        "40",
    ]
    result = CliRunner().invoke(app, [*args, *(a for s in sets for a in ("--set", s))])
    assert result.exit_code == 0, result.output
    report = json.loads((run / "report.json").read_text())["walk"]
    tasks = RunStore(run).read_records("tasks", Task)
    assert report["tasks_accepted"] == len(tasks) >= 1, result.output
    origin = origin_for(zim)
    for task in tasks:
        meta = json.loads(task.meta)
        assert all(url.startswith(origin) for url in meta["evidence_urls"]), meta["evidence_urls"]
        assert meta["hop_steps"] and all(h["verified"] for h in meta["hop_steps"]), meta["hop_steps"]
        assert task.images, "the final entity's picture from the archive"
    # the first task's evidence pages are served by web_visit from the archive itself
    page = meta["evidence_urls"][0]
    out = CliRunner().invoke(app, ["tools", "visit", page, "--set", f"tools.search.corpus={zim}",
                                   "--set", f"tools.search.corpus_cache={tmp_path / 'cache'}",
                                   "--set", f"run.root={tmp_path / 'runs'}"])  # fmt: skip
    assert out.exit_code == 0 and tasks[-1].gold_answer in out.output, out.output
    # synth on the walked tasks, offline against the same archive, with this teacher
    synth = ["synth", "--run", str(run), "--no-ray", "--set", f"tools.search.corpus={zim}",
             "--set", "synth.rollouts=1", "--set", "synth.plan=false", "--set", "world.enabled=false"]  # fmt: skip
    done = CliRunner().invoke(app, [*synth, *(a for s in sets for a in ("--set", s))])
    assert done.exit_code == 0, done.output
    raw = RunStore(run).read_records("raw", Trajectory)
    assert len(raw) == len(tasks)
    for trajectory in raw:
        seen = {s.tool_name: s.observation_text or "" for s in trajectory.steps if s.tool_name}
        assert f"Link: {origin}A/Ray_Charles.html" in seen["text_search"], seen
        assert "Albany, Georgia" in seen["web_visit"], seen
