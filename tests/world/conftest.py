"""A small world shared by the world tests (built once per session: a few seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from world import build_world


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_world(tmp_path_factory.mktemp("world") / "w", seed=7, entities=40, tasks=16, progress=False)
