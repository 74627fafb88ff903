"""Hand-written R1V4-format trajectories, imported with `trajforge import r1v4`, filtered with
`--judge none`: each defect is flagged by the check that owns it, clean ones are kept (with a plan
sample), and two runs give byte-identical outputs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.images import to_data_uri
from pipeline.plan_format import validate_plan
from pipeline.schema import Trajectory
from pipeline.store import RunStore
from stages.tools.registry import tool_table

TOOLS = tool_table()  # what the checks judge calls against

SCENE = 320


def _scene() -> Image.Image:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 255, size=(SCENE, SCENE, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return to_data_uri(buffer.getvalue())


def _crop_code(box: tuple[int, int, int, int]) -> str:
    return (
        "from PIL import Image\n"
        "img = Image.open('/input/image_0.png')\n"
        f"img.crop(({box[0]}, {box[1]}, {box[2]}, {box[3]})).save('/output/crop.png')\n"
        "print('saved')"
    )


def _call(think: str, name: str, arguments: dict) -> str:
    return (
        f"<think>{think}</think><tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"
    )


def _obs(text: str, kind: str = "code") -> str:
    return "<observation>" + json.dumps({"result": text, "type": kind}) + "</observation>"


def _crop_round(box: tuple[int, int, int, int], think: str = "Zoom into the sign.") -> str:
    crop = _scene().crop(box)
    return _call(think, "code", {"code": _crop_code(box)}) + _obs(f"saved <sub-image 1> {_uri(crop)}")


def _search_round(query: str, result: str) -> str:
    return _call(f"Search for {query}.", "text_search", {"queries": [query]}) + _obs(result, "text_search")


def _line(case: str, response: str, answer: str = "Velmora Dynamics") -> dict:
    return {
        "id": case,
        "image": "scene.png",
        "question": f"Which company makes the product on the sign? ({case})",
        "answer": answer,
        "response": {"full_response": response},
    }


RESULT = "1. Velmora Dynamics - official site\nhttps://example.org/velmora\nVelmora Dynamics builds the Quill drone."
CLEAN = (
    _crop_round((40, 40, 200, 200))
    + _call(
        "The crop shows a drone logo with the word Quill; search for it.",
        "text_search",
        {"queries": ["Quill drone maker"]},
    )
    + _obs(RESULT, "text_search")
    + "<think>The result says Velmora Dynamics builds the Quill drone, so the answer is Velmora Dynamics.</think>"
    + "<answer>Velmora Dynamics</answer>"
)


def cases() -> dict[str, tuple[str, str | None]]:
    """case id -> (R1V4 full_response, check expected to drop it; None = kept)."""
    final = "<think>The answer is Velmora Dynamics.</think><answer>Velmora Dynamics</answer>"
    return {
        "clean": (CLEAN, None),
        "clean-navigation": (
            _crop_round((0, 0, 100, 100), "Look at the top-left sign.")
            + _crop_round((200, 200, 310, 310), "The top-left shows the drone; now the bottom-right label.")
            + _search_round("Quill drone maker", RESULT)
            + final,
            None,
        ),
        "format-missing-think": (
            '<tool_call>{"name": "text_search", "arguments": {"queries": ["Quill"]}}</tool_call>'
            + _obs(RESULT, "text_search")
            + final,
            "format",
        ),
        "format-bad-json": (
            # unrepairable: no JSON at all (a missing brace is repaired and kept, see test_foundation_lenient)
            "<think>Search.</think><tool_call>text_search for Quill</tool_call>"
            + _obs(RESULT, "text_search")
            + final,
            "format",
        ),
        "format-unknown-tool": (
            _call("Use a calculator.", "calculator", {"expr": "1+1"}) + _obs("2", "calculator") + final,
            "format",
        ),
        "sandbox-error": (
            _call(
                "Crop the sign.", "code", {"code": "img = Image.open('/input/image_0.png')\nimg.crop((1, 2))"}
            )
            + _obs('Traceback (most recent call last):\n  File "<stdin>", line 2\nValueError: bad crop box')
            + _search_round("Quill drone maker", RESULT)
            + final,
            "execution",
        ),
        "wrong-answer": (
            CLEAN.replace("<answer>Velmora Dynamics</answer>", "<answer>Arlo Quen</answer>"),
            "answer",
        ),
        "recrop-loop": (
            _crop_round((40, 40, 200, 200))
            + _crop_round((50, 45, 210, 205), "Slightly off; shift right.")
            + _crop_round((60, 50, 220, 210), "Still off; shift again.")
            + _crop_round((65, 55, 225, 215), "Almost; shift once more.")
            + _search_round("Quill drone maker", RESULT)
            + final,
            "redundancy",
        ),
        "repeated-call": (
            _search_round("Quill drone maker", RESULT) + _search_round("Quill drone maker", RESULT) + final,
            "redundancy",
        ),
    }


def write_cases(folder: Path) -> Path:
    _scene().save(folder / "scene.png")
    path = folder / "cases.jsonl"
    path.write_text("\n".join(json.dumps(_line(k, v[0])) for k, v in cases().items()) + "\n")
    return path


def import_and_filter(folder: Path, run: Path) -> dict:
    runner = CliRunner()
    imported = runner.invoke(app, ["import", "r1v4", str(write_cases(folder)), "--run", str(run)])
    assert imported.exit_code == 0, imported.output
    result = runner.invoke(app, ["filter", "--run", str(run), "--judge", "none", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "pass rate per check" in result.output
    return json.loads(result.output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def filtered(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("r1v4")
    run = folder / "run"
    summary = import_and_filter(folder, run)
    return run, summary


def _verdicts(run: Path) -> dict[str, dict]:
    table = RunStore(run).read_table("verdicts")
    assert table is not None
    raw = {t.trajectory_id: t.source_id for t in RunStore(run).read_records("raw", Trajectory)}
    return {raw[row["trajectory_id"]]: row for row in table.to_pylist()}


def test_each_defect_is_flagged_by_its_check_and_clean_ones_are_kept(filtered: tuple[Path, dict]) -> None:
    run, _ = filtered
    rows = _verdicts(run)
    assert set(rows) == set(cases())
    for case, (_, expected) in cases().items():
        row = rows[case]
        if expected is None:
            assert row["keep"] and row["reasons"] == [], (case, row["reasons"])
            continue
        assert not row["keep"], case
        assert not row[expected]["keep"], (case, expected, row[expected])
        assert any(r.startswith(f"{expected}:") for r in row["reasons"]), (case, row["reasons"])


def test_reasons_name_the_defect(filtered: tuple[Path, dict]) -> None:
    rows = _verdicts(filtered[0])
    assert "sandbox error" in rows["sandbox-error"]["execution"]["reason"]
    assert "re-cropping" in rows["recrop-loop"]["redundancy"]["reason"]
    assert "repeats the text_search call" in rows["repeated-call"]["redundancy"]["reason"]
    assert "wrong answer" in rows["wrong-answer"]["answer"]["reason"]
    assert "calculator" in rows["format-unknown-tool"]["format"]["reason"]
    # per-step verdicts point at the offending step
    steps = rows["repeated-call"]["redundancy"]["steps"]
    assert [s["step"] for s in steps if not s["ok"]] == [1]


def test_navigation_to_other_regions_is_not_recropping(filtered: tuple[Path, dict]) -> None:
    row = _verdicts(filtered[0])["clean-navigation"]
    assert row["redundancy"]["keep"] and row["image"]["keep"]


def test_kept_set_holds_clean_trajectories_and_valid_plan_samples(filtered: tuple[Path, dict]) -> None:
    run, summary = filtered
    kept = RunStore(run).read_records("kept", Trajectory)
    executors = [t for t in kept if t.mode != "plan"]
    plans = [t for t in kept if t.mode == "plan"]
    assert sorted(t.source_id for t in executors) == ["clean", "clean-navigation"]
    assert summary["kept"] == len(kept) == 4
    assert {p.trajectory_id for p in plans}.isdisjoint({t.trajectory_id for t in executors})
    for plan in plans:
        assert plan.category == "plan" and len(plan.steps) == 1 and plan.steps[0].action == "answer"
        steps, errors = validate_plan(json.loads(plan.steps[0].answer or ""), TOOLS)
        assert errors == []
        assert steps[-1].tool_name == "none"
        assert [s.tool_name for s in steps[:-1]] in (["code", "text_search"], ["code", "code", "text_search"])


def test_report_and_log(filtered: tuple[Path, dict]) -> None:
    run, _ = filtered
    report = RunStore(run).read_report()["filter"]
    assert report["raw"] == len(cases())
    assert report["pass_rate"]["format"]["all"] == pytest.approx(6 / 9, abs=1e-3)
    assert sum(report["tool_calls_histogram"].values()) == len(cases())
    log = (run / "logs" / "filter.log").read_text()
    assert log.count("drop ") == 7


def test_two_runs_give_identical_outputs(tmp_path: Path) -> None:
    digests = []
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        run = folder / "run"
        import_and_filter(folder, run)
        # filter again in place: outputs are rewritten, not appended
        import_and_filter(folder, run)
        files = {}
        for stage in ("verdicts", "kept"):
            for path in sorted((run / stage).glob("*.parquet")):
                files[f"{stage}/{path.name}"] = path.read_bytes()
        digests.append(files)
        assert pq.read_table(run / "kept" / "kept-00000.parquet").num_rows == 4
    assert digests[0].keys() == digests[1].keys()
    assert digests[0] == digests[1]
