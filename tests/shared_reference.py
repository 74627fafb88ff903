"""Where the real reference data lives (`../shared/reference` beside the checkout, or
`$TRAJFORGE_SHARED/reference`): tests that read it skip cleanly where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def reference_file(*parts: str) -> Path:
    """The file under the shared reference folder, or a skip saying how to provide it."""
    bases = [Path(os.environ["TRAJFORGE_SHARED"])] if os.environ.get("TRAJFORGE_SHARED") else []
    bases.append(ROOT / ".." / "shared")
    for base in bases:
        path = base / "reference" / Path(*parts)
        if path.exists():
            return path
    pytest.skip(
        f"reference data {'/'.join(parts)} absent (set TRAJFORGE_SHARED or put ../shared beside the checkout)"
    )
