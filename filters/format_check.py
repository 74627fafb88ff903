"""Format: every turn is think + one tool call or think + answer, with a known tool and valid
arguments, and the trajectory ends with a non-empty answer.

The text itself was read once by `pipeline.format` (at import or synthesis); this check reads
what was recorded there and validates what the reader cannot know: tool names per mode and
each tool's argument shape. It tells repaired from unreadable: a step whose slips were mended
(`Step.repairs`) passes, saying what was repaired, and its training text is canonical anyway;
a trajectory with more than `filter.max_repairs` repaired turns is dropped (a teacher that slips
that often is not one to learn from); an unreadable step drops the trajectory.
"""

from __future__ import annotations

import re

from filters.base import WHOLE, Check, CheckContext, bad, call_arguments, ok
from pipeline.schema import StepVerdict, Trajectory, Verdict

_TURN = re.compile(r"^turn \d+: ")  # the parser's position prefix; the step index says it already


class FormatCheck(Check):
    name = "format"

    def run(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        allowed = ctx.tool_table().for_mode(trajectory.mode)
        verdicts: list[StepVerdict] = []
        last = len(trajectory.steps) - 1
        for step in trajectory.steps:
            problems = [_TURN.sub("", e, count=1) for e in step.format_errors]
            if not step.think.strip():
                problems.append("empty <think>")
            if step.action == "invalid":
                problems.append("no readable tool_call or answer")
            elif step.action == "tool_call":
                spec = allowed.get(step.tool_name)
                if spec is None:
                    problems.append(f"unknown tool {step.tool_name!r} for {trajectory.mode} mode")
                elif step.arguments is None or (not call_arguments(step) and step.arguments.strip() != "{}"):
                    problems.append("arguments are not a JSON object")
                else:
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
