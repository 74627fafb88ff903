"""The trajectory page: question and input images, the plan and which turn served each step,
then every turn (think, highlighted call, observation, produced images, that turn's verdicts,
repairs, latency, tokens), and the final answer against the gold."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment

from pipeline.view.data import RunData
from pipeline.view.render import code_block


def _steps(trajectory: Any, verdicts: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    per_step: dict[int, list[dict[str, Any]]] = {}
    for check, v in verdicts.items():
        for sv in v.get("steps") or []:
            per_step.setdefault(sv["step"], []).append(
                {"check": check, "ok": sv["ok"], "reason": sv["reason"]}
            )
    out = []
    for step in trajectory.steps:
        item = step.model_dump()
        if step.action == "tool_call":
            item["code"] = code_block(step.tool_name, step.arguments_dict(), step.arguments)
        item["verdicts"] = sorted(per_step.get(step.index, []), key=lambda v: (v["ok"], v["check"]))
        out.append(item)
    return out


def render(env: Environment, data: RunData, trajectory_id: str, base: dict[str, Any]) -> str | None:
    trajectory = data.trajectory(trajectory_id)
    entry = data.entry(trajectory_id)
    if trajectory is None or entry is None:
        return None
    verdicts = data.verdicts(trajectory_id)
    served: dict[int, list[int]] = {}
    for step in trajectory.steps:
        if step.plan_step:
            served.setdefault(step.plan_step, []).append(step.index)
    return env.get_template("trajectory.html").render(
        **base,
        t=trajectory,
        entry=entry,
        checks=verdicts,
        answer_check=verdicts.get("answer"),
        plan=data.plan_steps(trajectory),
        served=served,
        steps=_steps(trajectory, verdicts),
        rollouts=len(data.task_entries(trajectory.task_id)),
    )
