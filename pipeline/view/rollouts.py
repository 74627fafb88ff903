"""A task's rollouts side by side: what each did, turn by turn, and how each ended."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment

from pipeline.view.data import RunData


def render(env: Environment, data: RunData, task_id: str, base: dict[str, Any]) -> str | None:
    entries = data.task_entries(task_id)
    columns = []
    for entry in entries:
        trajectory = data.trajectory(entry.id)
        if trajectory is not None:
            columns.append({"t": trajectory, "entry": entry})
    if not columns:
        return None
    return env.get_template("rollouts.html").render(
        **base, task_id=task_id, columns=columns, first=columns[0]["t"]
    )
