"""The offline world's held-out tasks: what eval scores a student trained on the first N with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import stages.evaluate.benchmarks
from pipeline.cli import app
from pipeline.schema import Task
from pipeline.store import RunStore
from stages.evaluate.benchmarks import world_items
from stages.readers.task_files import world_task_order


def fake_tasks(n: int) -> list[Task]:
    return [
        Task(question=f"q{i}", images=[f"/x/{i}.png"], gold_answer=str(i), category="search", source="world")
        for i in range(n)
    ]


def test_held_out_excludes_the_training_runs_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = fake_tasks(6)
    monkeypatch.setattr(stages.evaluate.benchmarks, "world_task_order", lambda _dir: tasks)
    used = {tasks[0].task_id, tasks[3].task_id}
    assert [i.question for i in world_items(Path("w"), used)] == ["q1", "q2", "q4", "q5"]
    # without a training run: all but the first `seeds.limit` in seed order
    held = list(world_items(Path("w"), None, first=4))
    assert [i.question for i in held] == ["q4", "q5"]
    assert held[0].answer == "4" and held[0].split == "search" and held[0].images == [Path("/x/4.png")]


@pytest.mark.slow
def test_oracle_on_held_out_world_tasks(tmp_path: Path) -> None:
    """The oracle through the real tools on a small world's held-out tasks: every answer right."""
    from world import build_world

    world = build_world(tmp_path / "w", seed=7, entities=40, tasks=16, progress=False)
    train = RunStore(tmp_path / "train")
    order = world_task_order(world)
    train.write_records("tasks", order[:10], Task, prefix="tasks")
    run = tmp_path / "eval"
    result = CliRunner().invoke(
        app,
        ["eval", "--run", str(run), "--train-run", str(train.root), "--set", f"world.dir={world}",
         "--set", "world.entities=40", "--set", "world.tasks=16", "--set", "world.seed=7",
         "--set", "world.knobs.defects={}", "--set", "tools.code.workers=1"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((run / "report.json").read_text())["eval"]
    assert report["questions"] == 6 and report["accuracy"] == 1.0
    assert report["mean_tool_calls"] > 1 and report["valid_tool_calls"] == 1.0
