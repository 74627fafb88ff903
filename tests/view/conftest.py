"""Fixtures for the viewer tests: one small filtered run per module, served on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.view.data import RunData
from pipeline.view.server import serve_in_thread
from pipeline.view.site import Site
from tests.view.view_helpers import make_view_run


@pytest.fixture(scope="module")
def view_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("view") / "run"
    make_view_run(root)
    return root


@pytest.fixture(scope="module")
def served(view_run: Path) -> Iterator[tuple[Site, str]]:
    site = Site(RunData(view_run))
    server, url = serve_in_thread(site)
    yield site, url
    server.shutdown()
    server.server_close()
