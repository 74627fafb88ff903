"""Execution: tool and sandbox errors.

R1V4 dropped every trajectory with a sandbox execution error from SFT (they taught error-fixing
loops); that is the default here (`filter.drop_sandbox_errors`). Errors of other tools (a search
backend down, a page that would not load) are recorded per step and drop the trajectory only
with `filter.drop_tool_errors`.
"""

from __future__ import annotations

from filters.base import Check, CheckContext, bad, ok
from pipeline.schema import Step, StepVerdict, Trajectory, Verdict

_TRACEBACK = "Traceback (most recent call last)"


def sandbox_error(step: Step, ctx: CheckContext) -> str | None:
    """The error of a code step: recorded by the tool, or a traceback printed in its output."""
    if ctx.code_of(step) is None:
        return None
    if step.error:
        return step.error
    text = step.observation_text or ""
    if _TRACEBACK in text:
        lines = [line for line in text[text.index(_TRACEBACK) :].splitlines() if line.strip()]
        return lines[-1].strip()[:300] if lines else "traceback in output"
    return None


class ExecutionCheck(Check):
    name = "execution"

    def run(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        cfg = ctx.config
        verdicts: list[StepVerdict] = []
        fatal = False
        for step in trajectory.tool_calls:
            error = sandbox_error(step, ctx)
            if error is not None:
                verdicts.append(bad(step.index, f"sandbox error: {error[:200]}"))
                fatal |= cfg.drop_sandbox_errors
            elif step.error:
                verdicts.append(bad(step.index, f"{step.tool_name} error: {step.error[:200]}"))
                fatal |= cfg.drop_tool_errors
            else:
                verdicts.append(ok(step.index))
        return self.verdict(trajectory, verdicts, keep=not fatal)
