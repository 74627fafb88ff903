"""Worlds for the walk tests: a small one (faults, seconds) and a default-sized one walked once
by the real command (`trajforge tasks walk --n 50`), shared by the slow acceptance tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from world import build_world


@pytest.fixture(scope="session")
def walk_small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_world(
        tmp_path_factory.mktemp("walkworld") / "w", seed=3, entities=120, tasks=8, progress=False
    )


@pytest.fixture(scope="session")
def walked_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(world, run, the command's output): 50 tasks walked over a 300-entity world."""
    from typer.testing import CliRunner

    from pipeline.cli import app

    root = tmp_path_factory.mktemp("walked")
    world = build_world(root / "world", seed=0, entities=300, tasks=8, progress=False)
    run = root / "run"
    result = CliRunner().invoke(
        app,
        ["tasks", "walk", "--run", str(run), "--n", "50", "--set", f"world.dir={world}",
         "--set", "world.tasks=8"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return world, run, result.output
