"""Round trip on a real run: synth + filter a few world tasks, export the kept set for
LLaMA-Factory and ms-swift, import each export back: the same questions, steps (tool, arguments,
answer, thinking) and observation images (by their bytes) as the kept set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.schema import Trajectory
from pipeline.store import RunStore


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{args[:2]} failed:\n{result.output}\n{result.exception!r}"
    return result.output


def fingerprint(trajectory: Trajectory, store: RunStore) -> tuple:
    """What a round trip must keep: question, task images, and per step the action with its
    images (bytes, so two image stores compare)."""

    def blobs(refs: list[str]) -> tuple[bytes, ...]:
        return tuple(store.images.read_bytes(ref) for ref in refs)

    steps = tuple(
        (
            s.action,
            s.think,
            s.tool_name,
            json.loads(s.arguments) if s.arguments else None,
            s.answer,
            s.observation_text,
            s.error,
            blobs(s.observation_images),
        )
        for s in trajectory.steps
    )
    return trajectory.question, trajectory.mode, blobs(trajectory.images), steps


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("roundtrip")
    run, world = root / "run", root / "world"
    sets = [
        "--set", f"world.dir={world}", "--set", "world.entities=16", "--set", "world.tasks=6",
        "--set", "seeds.limit=6", "--set", "synth.rollouts=1",
    ]  # fmt: skip
    invoke("synth", "--run", str(run), "--no-ray", *sets)
    invoke("filter", "--run", str(run), "--judge", "none", *sets)
    return run


@pytest.mark.parametrize(("export", "reader", "pattern"), [
    ("llamafactory", "sharegpt", "trajforge_*.jsonl"), ("ms-swift", "auto", "*.jsonl"),
])  # fmt: skip
def test_export_then_import_gives_back_the_kept_set(
    kept_run: Path, tmp_path: Path, export: str, reader: str, pattern: str
) -> None:
    store = RunStore(kept_run)
    kept = [t for t in store.read_records("kept", Trajectory) if t.mode != "plan"]
    assert kept and any(s.observation_images for t in kept for s in t.steps), "the run should have crops"
    out = tmp_path / export
    invoke("export", export, "--run", str(kept_run), "--out", str(out))
    back = tmp_path / "back"
    for path in sorted(out.glob(pattern)):
        if path.name.endswith("plan.jsonl"):
            continue  # plan samples are planner prompts, not executor trajectories
        output = invoke("import", reader, str(path), "--run", str(back))
        assert "0 malformed" in output, output
    imported = RunStore(back)
    expected = sorted(fingerprint(t, store) for t in kept)
    got = sorted(fingerprint(t, imported) for t in imported.read_records("raw", Trajectory))
    assert len(got) == len(expected)
    assert got == expected
