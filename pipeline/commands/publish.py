"""`trajforge publish` commands (wired by pipeline.cli)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Not built yet: see the open issue for this stage."""
