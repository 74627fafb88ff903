"""`trajforge import r1v4`: good lines land in raw/, broken lines are counted and reported."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.format import IMAGE_MARKER
from pipeline.images import to_data_uri
from pipeline.schema import Trajectory
from pipeline.store import RunStore


def _png_uri(color: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 24), color).save(buffer, format="PNG")
    return to_data_uri(buffer.getvalue())


def _good(idx: int, image: str) -> dict:
    crop = _png_uri((0, 200, 0))
    full = (
        "<think>Zoom into the sign.</think>"
        '<tool_call>{"name": "code", "arguments": {"code": "img.crop((0, 0, 10, 10))"}}</tool_call>'
        f'<observation>{{"result": "Saved crop: {crop}", "type": "code"}}</observation>'
        "<think>The sign reads 42.</think><answer>42</answer>"
    )
    return {
        "id": f"q{idx}",
        "image": image,
        "question": f"What number is on sign {idx}?",
        "answer": "42",
        "response": {"full_response": full},
    }


def write_jsonl(folder: Path) -> Path:
    Image.new("RGB", (40, 30), (10, 20, 30)).save(folder / "scene.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    lines = [
        json.dumps(_good(1, "scene.png")),
        json.dumps(_good(2, _png_uri((255, 0, 0)))),
        "{this is not json",
        json.dumps({"id": "q3", "image": "scene.png", "question": "no response"}),
        json.dumps({**_good(4, "missing.png")}),
        json.dumps({**_good(5, "broken.jpg")}),
        json.dumps({**_good(6, "scene.png"), "response": {"full_response": "<think>unclosed"}}),
        "",
    ]
    path = folder / "out.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_import_mixed_file_writes_good_lines_and_reports_the_rest(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path)
    run = tmp_path / "run"
    result = CliRunner().invoke(app, ["import", "r1v4", str(path), "--run", str(run)])
    assert result.exit_code == 0, result.output
    assert "3 imported" in result.output and "4 malformed" in result.output
    assert "line 3: not valid JSON" in result.output
    assert "missing 'response.full_response'" in result.output
    assert "missing.png" in result.output and "not found" in result.output
    assert "broken.jpg" in result.output

    store = RunStore(run)
    table = store.read_table("raw")
    for column in (
        "trajectory_id",
        "task_id",
        "source_id",
        "question",
        "gold_answer",
        "final_answer",
        "format_errors",
        "steps",
    ):
        assert column in table.column_names
    rows = {r.source_id: r for r in store.read_records("raw", Trajectory)}
    assert set(rows) == {"q1", "q2", "q6"}
    good = rows["q1"]
    assert good.final_answer == "42" and good.format_errors == []
    first = good.steps[0]
    assert first.tool_name == "code" and json.loads(first.arguments) == {"code": "img.crop((0, 0, 10, 10))"}
    assert first.observation_text == f"Saved crop: {IMAGE_MARKER}"
    assert store.images.open(first.observation_images[0]).getpixel((1, 1)) == (0, 200, 0)
    assert store.images.open(good.images[0]).size == (40, 30)
    assert rows["q6"].format_errors and rows["q6"].final_answer is None

    again = CliRunner().invoke(app, ["import", "r1v4", str(path), "--run", str(run)])
    assert "0 imported, 3 already present" in again.output
    assert len(store.read_table("raw")) == 3
    assert (run / "config.yaml").exists() and "import" in store.read_report()


def test_sandbox_error_in_observation_is_recorded_as_step_error(tmp_path: Path) -> None:
    record = _good(9, _png_uri((1, 2, 3)))
    record["response"]["full_response"] = (
        '<think>crop</think><tool_call>{"name": "code", "arguments": {"code": "1/0"}}</tool_call>'
        "<observation>Traceback (most recent call last):\n  File x\nZeroDivisionError: division by zero"
        "</observation><think>oops</think><answer>42</answer>"
    )
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(record) + "\n")
    from stages.synth.imports.r1v4 import import_r1v4

    store = RunStore(tmp_path / "run")
    report = import_r1v4(path, store, progress=False)
    assert report.imported == 1
    (trajectory,) = store.read_records("raw", Trajectory)
    assert trajectory.steps[0].error == "ZeroDivisionError: division by zero"
