"""The README's layout table matches the tree: every path it names exists, every folder is named."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_CODE = re.compile(r"`([^`]+)`")
_PATH = re.compile(r"^[\w.-]+(/[\w.-]+)*/?$")


def layout_rows() -> list[tuple[list[str], list[str]]]:
    """(folders of the first column, path-like names of the second) for each table row."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        folders = _CODE.findall(cells[0])
        names = [n for n in _CODE.findall(cells[1]) if _PATH.match(n) and ("/" in n or "." in n)]
        rows.append((folders, names))
    return rows


def test_every_path_in_the_layout_table_exists() -> None:
    rows = layout_rows()
    assert rows, "no layout table under '## Layout'"
    missing = [f for folders, _ in rows for f in folders if not (ROOT / f).exists()]
    for folders, names in rows:
        for name in names:
            if not any((base / name).exists() for base in [ROOT, *(ROOT / f for f in folders)]):
                missing.append(f"{name} (row {folders})")
    assert missing == []


def test_every_top_level_folder_is_in_the_layout_table() -> None:
    try:
        tracked = subprocess.run(
            ["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    folders = {path.split("/", 1)[0] + "/" for path in tracked if "/" in path}
    listed = {f.rstrip("/") + "/" for row, _ in layout_rows() for f in row}
    assert sorted(folders - listed) == []
