"""Format: every turn is think + one tool call or think + answer, with a known tool and valid
arguments, and the trajectory ends with a non-empty answer.

The text itself was read once by `pipeline.format` (at import or synthesis); this check reads
what was recorded there and validates what the reader cannot know: tool names per mode and
each tool's argument shape. It tells repaired from unreadable: a step whose slips were mended
(`Step.repairs`) passes, saying what was repaired, and its training text is canonical anyway;
a trajectory with more than `filter.max_repairs` repaired turns is dropped (a teacher that slips
that often is not one to learn from); an unreadable step drops the trajectory.

An imported trajectory that declares its tools (`Trajectory.meta["tools"]`, written by
`trajforge import`) is judged against those: a call must name a declared tool and fit the JSON
schema the record declared for it (`pipeline.tool_spec.schema_errors`, the one validator), whether or not trajforge has a
tool of that name; without declared tools, calls are judged against trajforge's executor tools.
"""

from __future__ import annotations

import json
import re
from typing import Any

from filters.base import WHOLE, Check, CheckContext, bad, call_arguments, ok
from pipeline.schema import StepVerdict, Trajectory, Verdict
from pipeline.tool_spec import schema_errors

_TURN = re.compile(r"^turn \d+: ")  # the parser's position prefix; the step index says it already


def declared_tools(trajectory: Trajectory) -> dict[str, dict[str, Any]]:
    """The tools an imported record declared, by name, with their JSON schemas ({} if none)."""
    try:
        meta = json.loads(trajectory.meta or "{}")
    except ValueError:
        return {}
    tools = meta.get("tools") if isinstance(meta, dict) else None
    if not isinstance(tools, list):
        return {}
    return {
        t["name"]: t.get("parameters") if isinstance(t.get("parameters"), dict) else {}
        for t in tools
        if isinstance(t, dict) and isinstance(t.get("name"), str)
    }


class FormatCheck(Check):
    name = "format"

    def run(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        declared = declared_tools(trajectory)  # an imported record's own tools, else the run's
        table = None if declared else ctx.tool_table().for_mode(trajectory.mode)
        verdicts: list[StepVerdict] = []
        last = len(trajectory.steps) - 1
        for step in trajectory.steps:
            problems = [_TURN.sub("", e, count=1) for e in step.format_errors]
            if not step.think.strip():
                problems.append("empty <think>")
            if step.action == "invalid":
                problems.append("no readable tool_call or answer")
            elif step.action == "tool_call":
                spec = table.get(step.tool_name) if table is not None else None
                if step.tool_name not in declared and spec is None:
                    where = (
                        "among the tools the record declared" if declared else f"for {trajectory.mode} mode"
                    )
                    problems.append(f"unknown tool {step.tool_name!r} {where}")
                elif step.arguments is None or (not call_arguments(step) and step.arguments.strip() != "{}"):
                    problems.append("arguments are not a JSON object")
                elif declared:
                    problems.extend(
                        schema_errors(step.tool_name, declared[step.tool_name], call_arguments(step))
                    )
                elif spec is not None:
                    problems.extend(spec.argument_errors(call_arguments(step)))
                if step.index == last:
                    problems.append("ends with a tool call, not an answer")
            elif step.index != last:
                problems.append("<answer> before the end of the trajectory")
            elif not (step.answer or "").strip():
                problems.append("empty <answer>")
            if problems:
                verdicts.append(bad(step.index, "; ".join(dict.fromkeys(problems))))
            else:
                verdicts.append(
                    ok(step.index, f"repaired: {', '.join(step.repairs)}" if step.repairs else "")
                )
        # the synth stage also lists each step's errors on the trajectory as "step N: <error>",
        # and the importer as the bare error: report those once, under their step
        step_errors = {e for s in trajectory.steps for e in s.format_errors}
        step_errors |= {f"step {s.index}: {e}" for s in trajectory.steps for e in s.format_errors}
        whole = [e for e in trajectory.format_errors if e not in step_errors]
        if not trajectory.steps:
            whole.append("no steps")
        elif trajectory.steps[-1].action != "answer" and not any(
            "does not end with an <answer>" in e for e in whole
        ):
            whole.append(f"no final answer (status {trajectory.status})")
        repaired = sum(1 for s in trajectory.steps if s.repairs)
        limit = ctx.config.max_repairs
        if limit >= 0 and repaired > limit:
            whole.append(f"{repaired} repaired turns (more than filter.max_repairs={limit})")
        if whole:
            verdicts.append(bad(WHOLE, "; ".join(dict.fromkeys(whole))))
        return self.verdict(trajectory, verdicts)
