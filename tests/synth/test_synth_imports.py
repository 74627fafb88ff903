"""`trajforge import FORMAT`: each published layout, written small by hand, imports whole.

Each file below follows the layout its docstring in `stages/synth/imports/` cites (WebDancer's
ChatML, DeepEyesV2's and Mini-o3's ShareGPT, ms-swift's agent rows, DataDesigner's OpenAI traces,
Thyme's code-in-thinking rows, R1V4's API outputs), with real PNG images wherever the format
carries them; the tests check every turn is a step, every observation keeps its images (by their
pixels in the run's image store), gold answers and declared tools are kept, and `auto` names the
format it chose. The three causes of issue 31 that belong to import each have a test here.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from filters.base import CheckContext
from filters.format_check import FormatCheck
from pipeline.cli import app
from pipeline.images import to_data_uri
from pipeline.schema import Trajectory
from pipeline.store import RunStore
from stages.tools.registry import tool_table

RED, GREEN, BLUE, GREY = (200, 10, 10), (10, 200, 10), (10, 10, 200), (90, 90, 90)


def png(color: tuple[int, int, int], size: tuple[int, int] = (24, 16)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def uri(color: tuple[int, int, int]) -> str:
    return to_data_uri(png(color))


def save(folder: Path, name: str, color: tuple[int, int, int]) -> str:
    (folder / name).write_bytes(png(color))
    return name


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_import(fmt: str, path: Path, run: Path, *extra: str) -> tuple[str, list[Trajectory], RunStore]:
    result = CliRunner().invoke(app, ["import", fmt, str(path), "--run", str(run), *extra])
    assert result.exit_code == 0, result.output
    store = RunStore(run)
    return (
        result.output,
        sorted(store.read_records("raw", Trajectory), key=lambda t: (t.source_id, t.rollout)),
        store,
    )


def colors(store: RunStore, refs: list[str]) -> list[tuple[int, int, int]]:
    return [store.images.open(ref).convert("RGB").getpixel((1, 1)) for ref in refs]


def format_verdict(trajectory: Trajectory):
    return FormatCheck().run(trajectory, CheckContext(tools=tool_table()))


# ------------------------------------------------------------------------------------- r1v4


def r1v4_record(rid: str, question: str, observation: str, image: str, **extra) -> dict:
    full = (
        "<think>Crop the sign.</think>"
        '<tool_call>{"name": "code", "arguments": {"code": "img.crop((0, 0, 8, 8)).save(\'/tmp/out/crop.png\')"}}'
        f"</tool_call><observation>{observation}</observation>"
        "<think>The crop reads 42.</think><answer>42</answer>"
    )
    return {
        "id": rid,
        "image": image,
        "question": question,
        "answer": "42",
        "response": {"full_response": full},
        **extra,
    }


def test_r1v4_observation_images_anywhere_in_the_json_are_kept(tmp_path: Path) -> None:
    """Cause 2: `{"result", "type", "images": [data URI]}` kept only `result`; the crop was lost."""
    observation = json.dumps({"result": "/tmp/out/crop.png", "type": "code", "images": [uri(GREEN)]})
    path = write_jsonl(
        tmp_path / "r1v4.jsonl",
        [r1v4_record("a", "Which number?", observation, save(tmp_path, "s.png", GREY))],
    )
    _, (trajectory,), store = run_import("r1v4", path, tmp_path / "run")
    step = trajectory.steps[0]
    assert colors(store, step.observation_images) == [GREEN]
    assert (
        step.observation_text.startswith("/tmp/out/crop.png") and step.observation_text.count("<image>") == 1
    )
    assert colors(store, trajectory.images) == [GREY] and trajectory.gold_answer == "42"


def test_rollouts_of_one_question_are_separate_trajectories(tmp_path: Path) -> None:
    """Cause 4: two rollouts of one question (different ids) got one id: 'already present'."""
    image = save(tmp_path, "s.png", GREY)
    observation = json.dumps({"result": "ok", "type": "code"})
    rows = [
        r1v4_record("q1-a", "Which number?", observation, image),
        r1v4_record("q1-b", "Which number?", observation, image),
        r1v4_record("q2", "Which other number?", observation, image, rollout=3),
    ]
    path = write_jsonl(tmp_path / "r1v4.jsonl", rows)
    output, trajectories, _ = run_import("r1v4", path, tmp_path / "run")
    assert "3 imported, 0 already present" in output
    assert sorted((t.source_id, t.rollout) for t in trajectories) == [("q1-a", 0), ("q1-b", 1), ("q2", 3)]
    assert len({t.trajectory_id for t in trajectories}) == 3
    again, _, _ = run_import("r1v4", path, tmp_path / "run")  # a rerun resumes: nothing new
    assert "0 imported, 3 already present" in again


def test_a_turn_that_calls_and_answers_is_dropped_by_the_format_check(tmp_path: Path) -> None:
    """Cause 3: the answer written before the observation came back was read leniently and kept."""
    full = (
        '<think>Crop it; it must be 42.</think><tool_call>{"name": "code", "arguments": {"code": "crop()"}}'
        '</tool_call><answer>42</answer><observation>{"result": "done", "type": "code"}</observation>'
        "<think>As I said.</think><answer>42</answer>"
    )
    row = {
        "id": "x",
        "image": uri(GREY),
        "question": "Which number?",
        "answer": "42",
        "response": {"full_response": full},
    }
    _, (trajectory,), _ = run_import("r1v4", write_jsonl(tmp_path / "r.jsonl", [row]), tmp_path / "run")
    verdict = format_verdict(trajectory)
    assert not verdict.keep
    assert any("calls a tool and answers" in s.reason for s in verdict.steps if s.step == 0 and not s.ok)


# ----------------------------------------------------------------------------------- chatml

TOOLS_PROMPT = (
    "A conversation between User and Assistant. The assistant may call these tools.\n<tools>\n"
    '{"name": "search", "description": "web search", "parameters": {"type": "object", "properties": '
    '{"query": {"type": "array", "items": {"type": "string"}}}, "required": ["query"]}},\n'
    '{"name": "visit", "description": "visit pages", "parameters": {"type": "object", "properties": '
    '{"url": {"type": "array", "items": {"type": "string"}}, "goal": {"type": "string"}}, "required": ["url", "goal"]}},\n'
    '{"name": "zoom", "description": "zoom into the photo", "parameters": {"type": "object", "properties": '
    '{"box": {"type": "array"}}, "required": ["box"]}}\n'
    "</tools>\n\nExample: <think> ... </think><tool_call>...</tool_call><tool_response>...</tool_response>\n\n"
)


def chatml_row(question: str, answer: list[str]) -> dict:
    return {
        "type": "chatml",
        "messages": [
            {"role": "system", "content": "You are a Web Information Seeking Master."},
            {"role": "user", "content": TOOLS_PROMPT + "User: " + question},
            {
                "role": "assistant",
                "content": '<think>\nSearch first.\n</think>\n<tool_call>\n{"name": "search", "arguments": {"query": ["tallest tower 1930"]}}\n</tool_call>',
            },
            {
                "role": "user",
                "content": "<tool_response>\n1. [Chrysler Building](https://example.org/c)\n</tool_response>",
            },
            {
                "role": "assistant",
                "content": '<think>Look at the photo.</think>\n<tool_call>\n{"name": "zoom", "arguments": {"box": [0, 0, 5, 5]}}\n</tool_call>',
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<tool_response>\nzoomed: "},
                    {"type": "image_url", "image_url": {"url": uri(BLUE)}},
                    {"type": "text", "text": "\n</tool_response>"},
                ],
            },
            {
                "role": "assistant",
                "content": '<think>Open it.</think>\n<tool_call>\n{"name": "visit", "arguments": {"url": ["https://example.org/c"], "goal": "height"}}\n</tool_call>',
            },
            {
                "role": "user",
                "content": "<tool_response>\nThe Chrysler Building is 319 m tall.\n</tool_response>",
            },
            {
                "role": "assistant",
                "content": "<think>\nFound it.\n</think>\n<answer>\nIt is the **Chrysler Building**.\n</answer>",
            },
        ],
        "functions": [],
        "answer": answer,
        "tag": "e2hqa",
    }


def test_chatml_webdancer_layout_imports_with_declared_tools_and_golds(tmp_path: Path) -> None:
    rows = [
        chatml_row("Which tower was tallest in 1930?", [["Chrysler Building", "The Chrysler"]]),
        chatml_row("Which tower was tallest in 1930?", [["Chrysler Building", "The Chrysler"]]),
    ]
    output, trajectories, store = run_import(
        "auto", write_jsonl(tmp_path / "wd.jsonl", rows), tmp_path / "run"
    )
    assert "read wd.jsonl as chatml" in output and "2 imported" in output
    assert [t.rollout for t in trajectories] == [0, 1]
    t = trajectories[0]
    assert t.question == "Which tower was tallest in 1930?"
    assert (t.gold_answer, t.answer_aliases) == ("Chrysler Building", ["The Chrysler"])
    assert [(s.action, s.tool_name) for s in t.steps] == [
        ("tool_call", "text_search"), ("tool_call", "zoom"), ("tool_call", "web_visit"), ("answer", None)
    ]  # fmt: skip
    assert json.loads(t.steps[0].arguments) == {"queries": ["tallest tower 1930"]}
    assert json.loads(t.steps[2].arguments) == {"urls": ["https://example.org/c"], "goal": "height"}
    assert "Chrysler Building](https://example.org/c)" in t.steps[0].observation_text
    assert colors(store, t.steps[1].observation_images) == [BLUE]
    assert t.final_answer == "It is the **Chrysler Building**."
    declared = {d["name"]: d for d in json.loads(t.meta)["tools"]}
    assert declared["text_search"]["declared_as"] == "search" and declared["zoom"]["declared_as"] == "zoom"
    assert declared["web_visit"]["parameters"]["required"] == ["urls", "goal"]
    assert format_verdict(t).keep, format_verdict(t).reason  # zoom is judged against its declared schema


def test_declared_schema_judges_calls_and_tool_map_overrides(tmp_path: Path) -> None:
    row = chatml_row("Which tower?", [["Chrysler Building"]])
    row["messages"][4]["content"] = (
        '<think>Zoom.</think><tool_call>{"name": "zoom", "arguments": {"scale": 2}}</tool_call>'
    )
    row["messages"][6]["content"] = (
        '<think>Open.</think><tool_call>{"name": "browse_page", "arguments": {"url": "x"}}</tool_call>'
    )
    _, (t,), _ = run_import(
        "chatml",
        write_jsonl(tmp_path / "wd.jsonl", [row]),
        tmp_path / "run",
        "--tool-map",
        "search=web_lookup",
    )
    assert t.steps[0].tool_name == "web_lookup" and json.loads(t.steps[0].arguments) == {
        "query": ["tallest tower 1930"]
    }
    reasons = {s.step: s.reason for s in format_verdict(t).steps if not s.ok}
    assert "'box' is a required property" in reasons[1]
    assert "unknown tool 'browse_page' among the tools the record declared" in reasons[2]
    assert 0 not in reasons  # the renamed tool is declared under its new name with its own schema
    bad = CliRunner().invoke(
        app,
        [
            "import",
            "chatml",
            str(tmp_path / "wd.jsonl"),
            "--run",
            str(tmp_path / "r2"),
            "--tool-map",
            "search",
        ],
    )
    assert bad.exit_code != 0 and "PEER_NAME=TRAJFORGE_NAME" in bad.output


# --------------------------------------------------------------------------------- sharegpt


def test_sharegpt_deepeyes_layout_code_blocks_and_placeholder_images(tmp_path: Path) -> None:
    """DeepEyesV2's cold-start rows: `messages` + `images`, `<code>` actions, results as user turns."""
    images = [
        save(tmp_path, "q.png", GREY),
        save(tmp_path, "crop1.png", RED),
        save(tmp_path, "crop2.png", GREEN),
    ]
    row = {
        "messages": [
            {"role": "system", "content": "You are an agent."},
            {"role": "user", "content": "<image>\nWhat colour is the sign?"},
            {
                "role": "assistant",
                "content": "<think>Zoom in.</think>\n<code>\n```python\nimage_1.crop((0, 0, 9, 9)).show()\n```\n</code>",
            },
            {
                "role": "user",
                "content": "Code execution result:\nstdout:\n```\n\n```\n\nImages:\n<image><image>",
            },
            {
                "role": "assistant",
                "content": "<think>Both crops are red and green.</think>\n<answer>red</answer>",
            },
        ],
        "images": images,
        "answer": "red",
    }
    output, (t,), store = run_import("auto", write_jsonl(tmp_path / "de.jsonl", [row]), tmp_path / "run")
    assert "as sharegpt" in output
    assert t.question == "What colour is the sign?" and colors(store, t.images) == [GREY]
    assert t.steps[0].tool_name == "code" and json.loads(t.steps[0].arguments) == {
        "code": "image_1.crop((0, 0, 9, 9)).show()"
    }
    assert colors(store, t.steps[0].observation_images) == [RED, GREEN]
    assert t.final_answer == "red" and t.gold_answer == "red" and t.mode == "general"
    assert format_verdict(t).keep, format_verdict(t).reason


def test_sharegpt_minio3_layout_grounding_tool_and_rollout_index(tmp_path: Path) -> None:
    """Mini-o3 cold start: `conversations` of {from, value}, `<grounding>` actions, `rollout_index`."""
    images = [save(tmp_path, "root.png", GREY), save(tmp_path, "zoom.png", BLUE)]
    row = {
        "conversations": [
            {"from": "system", "value": "legacy system"},
            {"from": "human", "value": "<image>\nWhat color is the coat?"},
            {
                "from": "gpt",
                "value": '<think>Need a closer look.</think><grounding>{"bbox_2d": [0.1, 0.2, 0.3, 0.4], "source": "original_image"}</grounding>',
            },
            {
                "from": "human",
                "value": "After the above Action 0, here is the the zoom-in image (Observation 1):\n<image>.\nContinue your reasoning process inside <think> and </think>.",
            },
            {"from": "gpt", "value": "<think>The crop is enough.</think><answer> Orange. </answer>"},
        ],
        "images": images,
        "data_source": "unit",
        "sample_index": 3,
        "rollout_index": 4,
    }
    _, (t,), store = run_import("sharegpt", write_jsonl(tmp_path / "m.jsonl", [row]), tmp_path / "run")
    assert t.rollout == 4 and t.question == "What color is the coat?"
    assert (
        t.steps[0].tool_name == "grounding" and json.loads(t.steps[0].arguments)["source"] == "original_image"
    )
    assert colors(store, t.steps[0].observation_images) == [BLUE]
    assert t.final_answer == "Orange."
    assert format_verdict(t).keep, format_verdict(t).reason  # `grounding` keeps its name and schema


def test_sharegpt_function_call_and_observation_roles(tmp_path: Path) -> None:
    """LLaMA-Factory's tool roles: `function_call` and `observation` turns, `tools` as a JSON string."""
    tools = json.dumps(
        [
            {
                "name": "python",
                "description": "run code",
                "parameters": {
                    "type": "object",
                    "properties": {"code": {"type": "string"}},
                    "required": ["code"],
                },
            }
        ]
    )
    row = {
        "conversations": [
            {"from": "human", "value": "<image>Read the digit."},
            {"from": "gpt", "value": "<think>Run code.</think>"},
            {
                "from": "function_call",
                "value": json.dumps({"name": "python", "arguments": {"code": "print(7)"}}),
            },
            {"from": "observation", "value": "7"},
            {"from": "gpt", "value": "<think>It printed 7.</think><answer>7</answer>"},
        ],
        "tools": tools,
        "images": [uri(RED)],
    }
    _, (t,), store = run_import("sharegpt", write_jsonl(tmp_path / "lf.jsonl", [row]), tmp_path / "run")
    assert [(s.think, s.tool_name) for s in t.steps] == [("Run code.", "code"), ("It printed 7.", None)]
    assert t.steps[0].observation_text == "7" and colors(store, t.images) == [RED]
    assert json.loads(t.meta)["tools"][0] == {
        "name": "code", "declared_as": "python",
        "parameters": {"type": "object", "properties": {"code": {"type": "string"}}, "required": ["code"]},
    }  # fmt: skip


def test_sharegpt_dataset_info_beside_the_file_renames_columns_and_tags(tmp_path: Path) -> None:
    """LLaMA-Factory's `dataset_info.json` entry for this file names its columns and role tags."""
    info = {
        "other": {"file_name": "other.json", "formatting": "sharegpt", "columns": {"messages": "nope"}},
        "mine": {
            "file_name": "lf.jsonl",
            "formatting": "sharegpt",
            "columns": {"messages": "dialog", "images": "pictures"},
            "tags": {"role_tag": "speaker", "content_tag": "text", "user_tag": "asker", "assistant_tag": "bot",
                     "observation_tag": "result", "function_tag": "act"},
        },
    }  # fmt: skip
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    row = {
        "dialog": [
            {"speaker": "asker", "text": "<image>How many?"},
            {"speaker": "bot", "text": "<think>Count them.</think>"},
            {"speaker": "act", "text": json.dumps({"name": "python", "arguments": {"code": "count()"}})},
            {"speaker": "result", "text": "3 <image>"},
            {"speaker": "bot", "text": "<think>Three.</think><answer>3</answer>"},
        ],
        "pictures": [uri(GREY), uri(RED)],
    }
    _, (t,), store = run_import("sharegpt", write_jsonl(tmp_path / "lf.jsonl", [row]), tmp_path / "run")
    assert t.question == "How many?" and colors(store, t.images) == [GREY]
    assert (t.steps[0].tool_name, t.steps[0].observation_text) == ("code", "3 <image>")
    assert colors(store, t.steps[0].observation_images) == [RED] and t.final_answer == "3"


def test_placeholders_and_images_that_do_not_pair_cost_that_record_only(tmp_path: Path) -> None:
    good = {
        "messages": [
            {"role": "user", "content": "<image>Q?"},
            {"role": "assistant", "content": "<think>t</think><answer>a</answer>"},
        ],
        "images": [uri(RED)],
    }
    short = {**good, "images": []}
    extra = {**good, "images": [uri(RED), uri(BLUE)]}
    missing = {**good, "images": ["nowhere.png"]}
    output, trajectories, _ = run_import(
        "sharegpt", write_jsonl(tmp_path / "s.jsonl", [good, short, extra, missing]), tmp_path / "run"
    )
    assert len(trajectories) == 1 and "3 malformed" in output
    assert "placeholders but only 0 images left" in output and "1 images left over" in output
    assert "nowhere.png" in output and "not found" in output


# --------------------------------------------------------------------------------- ms-swift


def test_ms_swift_agent_rows_tool_call_and_tool_response_roles(tmp_path: Path) -> None:
    tools = json.dumps(
        [
            {
                "type": "function",
                "function": {
                    "name": "web_search",
                    "description": "search",
                    "parameters": {
                        "type": "object",
                        "properties": {"query": {"type": "string"}},
                        "required": ["query"],
                    },
                },
            }
        ]
    )
    row = {
        "tools": tools,
        "messages": [
            {"role": "user", "content": "<image>Who is on this stamp?"},
            {"role": "assistant", "content": "<think>\nSearch the stamp.\n</think>\n"},
            {
                "role": "tool_call",
                "content": json.dumps({"name": "web_search", "arguments": {"query": "blue stamp"}}),
            },
            {
                "role": "tool_response",
                "content": json.dumps({"result": "A stamp of Ada Lovelace", "images": [uri(GREEN)]}),
            },
            {"role": "assistant", "content": "<think>It is Ada.</think><answer>Ada Lovelace</answer>"},
        ],
        "images": [save(tmp_path, "stamp.png", BLUE)],
    }
    output, (t,), store = run_import("auto", write_jsonl(tmp_path / "sw.jsonl", [row]), tmp_path / "run")
    assert "as ms-swift" in output
    assert t.steps[0].think == "Search the stamp." and t.steps[0].tool_name == "text_search"
    assert json.loads(t.steps[0].arguments) == {"queries": "blue stamp"}
    assert t.steps[0].observation_text == "A stamp of Ada Lovelace<image>"
    assert colors(store, t.steps[0].observation_images) == [GREEN] and colors(store, t.images) == [BLUE]
    verdict = format_verdict(t)  # the record declared `query` as a string: judged by its own schema
    assert verdict.keep, verdict.reason


# ----------------------------------------------------------------------------------- openai


def test_openai_trace_native_tool_calls_and_image_parts(tmp_path: Path) -> None:
    trace = [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri(GREY)}}, {"type": "text", "text": "What is written?"}]},
        {"role": "assistant", "content": None, "reasoning_content": "Crop the text.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "code_interpreter", "arguments": json.dumps({"code": "crop()"})}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "cropped:"}, {"type": "image_url", "image_url": {"url": uri(RED)}}]},
        {"role": "assistant", "content": "<answer>EXIT</answer>", "reasoning_content": "It says EXIT."},
    ]  # fmt: skip
    row = {
        "question": "q",
        "answer__trace": json.dumps(trace),
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "code_interpreter",
                    "parameters": {"type": "object", "properties": {"code": {"type": "string"}}},
                },
            }
        ],
        "answer": "EXIT",
    }
    output, (t,), store = run_import("openai", write_jsonl(tmp_path / "dd.jsonl", [row]), tmp_path / "run")
    assert "1 imported" in output
    assert t.question == "What is written?" and colors(store, t.images) == [GREY]
    first = t.steps[0]
    assert (first.think, first.tool_name, first.call_id) == ("Crop the text.", "code", "call_1")
    assert first.observation_text == "cropped:<image>" and colors(store, first.observation_images) == [RED]
    assert (t.steps[1].think, t.final_answer, t.gold_answer) == ("It says EXIT.", "EXIT", "EXIT")


# ------------------------------------------------------------------------------------ thyme


def test_thyme_code_inside_thinking_and_sandbox_outputs(tmp_path: Path) -> None:
    response = (
        "<think>The plate is small; crop it.\n<code>\n```python\nimport cv2\nimg = cv2.imread('/eval/1.jpg')\n"
        "cv2.imwrite('/mnt/data/temp_processed_images/1_ab.jpg', img[10:20, 10:30])\nprint('/mnt/data/temp_processed_images/1_ab.jpg')\n```\n</code>\n"
        "<sandbox_output>/mnt/data/temp_processed_images/1_ab.jpg</sandbox_output>\n"
        "The crop reads S QT 911, option C.</think><answer> **C. S QT 911** </answer>"
    )
    row = {
        "image": [save(tmp_path, "1.jpg.png", GREY), save(tmp_path, "1_ab.png", GREEN)],
        "question": "<image>\nWhat is the plate?",
        "response": response,
    }
    output, (t,), store = run_import("auto", write_jsonl(tmp_path / "th.jsonl", [row]), tmp_path / "run")
    assert "as thyme" in output
    assert t.question == "What is the plate?" and colors(store, t.images) == [GREY] and t.mode == "general"
    code, answer = t.steps
    assert code.think == "The plate is small; crop it." and code.tool_name == "code"
    assert json.loads(code.arguments)["code"].startswith("import cv2\n")
    assert code.observation_text == "/mnt/data/temp_processed_images/1_ab.jpg<image>"
    assert colors(store, code.observation_images) == [GREEN]
    assert answer.think == "The crop reads S QT 911, option C." and answer.answer == "**C. S QT 911**"
    assert format_verdict(t).keep, format_verdict(t).reason


# ------------------------------------------------------------------------------------- auto


def test_auto_says_what_it_cannot_recognise(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"prompt": "hi", "completion": "there"}])
    result = CliRunner().invoke(app, ["import", "auto", str(path), "--run", str(tmp_path / "run")])
    assert result.exit_code != 0 and "no record looks like a known trajectory format" in result.output
    unknown = CliRunner().invoke(app, ["import", "parquetish", str(path), "--run", str(tmp_path / "run")])
    assert unknown.exit_code != 0 and "choose one of" in unknown.output


@pytest.mark.parametrize("suffix", ["json", "parquet"])
def test_json_arrays_and_parquet_files_read_like_jsonl(tmp_path: Path, suffix: str) -> None:
    row = chatml_row("Which tower?", [["Chrysler Building"]])
    path = tmp_path / f"rows.{suffix}"
    if suffix == "json":
        path.write_text(json.dumps([row, row]))
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        flat = [{**row, "messages": json.dumps(row["messages"]), "answer": json.dumps(row["answer"])}]
        pq.write_table(pa.Table.from_pylist(flat * 2), path)
    output, trajectories, _ = run_import("auto", path, tmp_path / "run")
    assert len(trajectories) == 2, output
