"""Tools declared once: a toy tool added in one module and one config line is offered to the
teacher (prompt list, native schema), runs, is recorded, and passes the filter's format check."""

from __future__ import annotations

import pytest

import prompts
from filters.run_checks import run_filter
from pipeline.schema import Trajectory
from pipeline.store import RunStore
from pipeline.tool_spec import ToolSpec, ToolTable
from stages.publish.trainer_exports import system_prompt
from stages.synth import executor_prompt
from stages.synth.runner import run_synth
from stages.tools.registry import tool_table
from tests.synth.conftest import completion
from tests.synth.test_synth_runner import make_run

#: the one line that adds the tool (as `--set`, or `tools: {extra: [...]}` in a config file)
EXTRA = {"tools.extra": '["tests.synth.toy_tool:ImageSizeTool"]'}


def toy_agent(body: dict) -> dict:
    """Plans nothing useful; as executor: measure the image, then answer with what it read."""
    system = body["messages"][0]["content"]
    if system.startswith("You are a planning agent"):
        return completion('[{"description": "Measure", "tool_name": "image_size", "parameters": '
                          '{"image_path": "image_0.png"}}, {"description": "Answer", "tool_name": "none", '
                          '"parameters": {}}]')  # fmt: skip
    if any(m["role"] == "assistant" for m in body["messages"]):
        return completion("<think>The tool says 64x48.</think><answer>64x48</answer>")
    return completion(
        '<think>Measure it.</think><tool_call>{"name": "image_size", "arguments": {"image_paths": '
        '["image_0.png"]}}</tool_call>'
    )


def test_a_tool_added_in_one_module_and_one_line_is_offered_run_and_judged(fake_teacher, tmp_path):
    server = fake_teacher(toy_agent)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    cfg, store, _ = make_run(
        tmp_path, n_tasks=1, **{"synth.rollouts": 1, "tools.search.corpus_dir": corpus, **EXTRA}
    )
    run_synth(cfg, store, teacher_base_url=server.base_url, use_ray=False, progress=False)

    executor = next(
        r for r in server.requests if r["messages"][0]["content"].startswith("You are a multimodal")
    )
    listed = executor["messages"][0]["content"]
    assert '- image_size: {"image_paths": ["image_0.png"]}. Reports the width and height' in listed
    assert "- web_visit:" in listed  # the built-in tools are still there
    planner = next(r for r in server.requests if r["messages"][0]["content"].startswith("You are a planning"))
    assert '- "image_size" with {"image_path": "..."}: measure an image;' in planner["messages"][0]["content"]

    (trajectory,) = store.read_records("raw", Trajectory)
    assert trajectory.plan_valid  # the plan format knows the new tool's parameter
    assert (
        trajectory.steps[0].tool_name == "image_size"
        and trajectory.steps[0].observation_text == "image_0.png: 64x48"
    )
    assert trajectory.final_answer == "64x48"
    # another tool set is another prompt: its id hashes the text, and the run keeps the text
    assert trajectory.prompt_version.startswith("executor_deepresearch.h")
    assert (store.root / "prompts" / f"{trajectory.prompt_version}.txt").is_file()
    assert [spec.name for spec in store.tool_table()] == [
        "code",
        "image_search",
        "text_search",
        "web_visit",
        "image_size",
    ]

    # the filter judges calls against the run's recorded tools: the toy call is well formed
    outcome = run_filter(store, cfg.filter, progress=False)
    row = next(r for r in outcome.rows if r["trajectory_id"] == trajectory.trajectory_id)
    assert row["format"]["keep"] and row["format"]["steps"][0]["ok"], row["format"]

    # exports and SFT read the prompt the teacher saw, by its version, in a later process
    prompts._rendered.clear()
    prompts.add_dir(store.root / "prompts")
    assert "- image_size:" in system_prompt(trajectory)


def test_native_protocol_sends_the_declared_schema(fake_teacher, tmp_path):
    server = fake_teacher(lambda body: completion("<think>Nothing to do.</think><answer>x</answer>"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    native = {"synth.rollouts": 1, "synth.plan": False, "teacher.tool_protocol": "native"}
    cfg, store, _ = make_run(tmp_path, n_tasks=1, **native, **{"tools.search.corpus_dir": corpus, **EXTRA})
    run_synth(cfg, store, teacher_base_url=server.base_url, use_ray=False, progress=False)
    (request,) = server.requests
    functions = {t["function"]["name"]: t["function"] for t in request["tools"]}
    assert list(functions) == ["code", "image_search", "text_search", "web_visit", "image_size"]
    assert functions["image_size"]["parameters"]["required"] == ["image_paths"]
    assert "- image_size (image_paths). Reports" in request["messages"][0]["content"]


def test_built_in_tools_render_the_shipped_prompts_unchanged() -> None:
    """With the built-in tools the filled templates keep their versions (ids stay stable)."""
    assert executor_prompt("deepresearch").id == "executor_deepresearch.v2"
    assert executor_prompt("deepresearch", "native").id == "executor_deepresearch_native.v1"
    text = executor_prompt("deepresearch").text
    assert "$tools" not in text and text.count("\n- ") >= 4


def test_bad_tool_references_and_clashing_names_are_clear_errors() -> None:
    from pipeline.config import ToolsConfig

    with pytest.raises(ValueError, match=r"package\.module:Class"):
        tool_table(ToolsConfig(extra=["tests.synth.toy_tool.ImageSizeTool"]))
    with pytest.raises(ValueError, match="not a trajforge Tool"):
        tool_table(ToolsConfig(extra=["pathlib:Path"]))
    with pytest.raises(ValueError, match="unique"):
        ToolTable.of([ToolSpec("code"), ToolSpec("code")])


def test_a_recorded_table_round_trips_and_a_broken_one_says_what_to_do(tmp_path) -> None:
    store = RunStore(tmp_path / "run")
    table = tool_table()
    assert store.tool_table() is None
    store.save_tool_table(table)
    assert store.tool_table() == table
    (tmp_path / "run" / "tools.json").write_text('[{"name": "code", "modes": 3}]')
    with pytest.raises(ValueError, match=r"tools\.json is not a tool table.*delete it"):
        store.tool_table()


def test_synth_refuses_a_bad_tool_reference_before_starting_anything(tmp_path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(
        app, ["synth", "--run", str(tmp_path / "r"), "--set", 'tools.extra=["pathlib:Path"]']
    )
    assert result.exit_code != 0
    assert "is not a trajforge Tool subclass" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r" / "raw").exists()
