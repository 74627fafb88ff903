"""`make test-interop` only: real LLaMA-Factory and ms-swift in throwaway venvs (tests/interop/setup_envs.sh).

Every test here is marked `interop`, which the normal run deselects (pyproject addopts).
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/interop/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.interop)
