"""Prompts a user swaps in (`prompts.<name>: PATH`) drive a whole offline run.

The rewritten prompts share no line with the shipped ones: the oracle must recognise planner and
executor requests by their structure, and the run must record and keep the texts it used.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import prompts
from pipeline.cli import app
from pipeline.config import ConfigError, load_config
from pipeline.schema import Plan, Trajectory
from pipeline.store import RunStore

PLANNER = """Role: planner. Read the picture and the question, then lay out how a research agent should find the answer; never answer it yourself.
Write a JSON array (2-10 entries). Each entry: {"description": "...", "tool_name": "image_search" | "text_search" | "web_visit" | "code" | "none", "parameters": {...}}.
End with a "none" entry that checks the evidence. Refer to earlier results as "[... in Step N]".
"""
EXECUTOR = """Role: research agent with tools (R1V4 DeepResearch style).
Think inside <think> </think> first. Then either call a tool with <tool_call>{"name": ..., "arguments": {...}}</tool_call>
or finish with <answer> </answer>. Results arrive as <observation> </observation>.
Tools: code {"code"}, image_search {"image_paths"}, text_search {"queries"}, web_visit {"urls"}.
"""


@pytest.fixture
def prompt_files(tmp_path: Path):
    (tmp_path / "planner.txt").write_text(PLANNER)
    (tmp_path / "executor.txt").write_text(EXECUTOR)
    yield tmp_path
    prompts.use_files({})  # the registry is process-wide: leave the shipped prompts in force


def test_a_run_with_rewritten_prompts_works_offline(tmp_path: Path, prompt_files: Path) -> None:
    run, world = tmp_path / "run", tmp_path / "world"
    sets = [
        f"world.dir={world}", "world.entities=24", "world.tasks=8", "seeds.limit=6",
        "synth.rollouts=1", "seeds.category=search", "world.knobs={defects: {}}",
        f"prompts.planner={prompt_files / 'planner.txt'}",
        f"prompts.executor_deepresearch={prompt_files / 'executor.txt'}",
    ]  # fmt: skip
    args = ["synth", "--run", str(run), "--no-ray"] + [x for s in sets for x in ("--set", s)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    store = RunStore(run)
    raw = [t for t in store.read_records("raw", Trajectory) if t.mode == "deepresearch"]
    plans = store.read_records("plans", Plan)
    assert raw and all(t.status == "answered" for t in raw), [t.failure_reason for t in raw]
    version = prompts.content_version(EXECUTOR.strip() + "\n")
    assert {t.prompt_version for t in raw} == {f"executor_deepresearch.{version}"}
    assert plans and all(p.valid for p in plans) and plans[0].prompt_version.startswith("planner.h")
    # the run keeps the texts, so a later command finds them without the config
    saved = run / "prompts" / f"executor_deepresearch.{version}.txt"
    assert saved.read_text() == EXECUTOR.strip() + "\n"
    prompts.use_files({})
    prompts.add_dir(run / "prompts")
    assert prompts.load_prompt("executor_deepresearch", version).text == saved.read_text()


def test_a_prompt_file_that_is_missing_or_unknown_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(None, [f"prompts.planner={tmp_path / 'nope.txt'}"])
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(ConfigError, match="no prompt named 'plannr'"):
        load_config(None, [f"prompts.plannr={tmp_path / 'p.txt'}"])
