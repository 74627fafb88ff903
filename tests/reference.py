"""Where the real data in `../shared/reference/` lives, for tests that meet what users feed us.

The checkout's sibling `../shared` (a CI clone has it beside the checkout), or the folder
`TRAJFORGE_SHARED` names (a worktree elsewhere). Tests skip cleanly when neither exists: a user's
clone has no shared data, and the project never commits a copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def reference(*parts: str) -> Path:
    """The path of a file under shared/reference/, or skip the test when it is not there."""
    roots = [Path(os.environ["TRAJFORGE_SHARED"])] if os.environ.get("TRAJFORGE_SHARED") else []
    roots.append(ROOT.parent / "shared")
    for root in roots:
        path = root.joinpath("reference", *parts)
        if path.exists():
            return path
    pytest.skip(
        f"needs shared/reference/{'/'.join(parts)} (../shared or TRAJFORGE_SHARED; not in a user's clone)"
    )
