"""Leak: a trajectory that holds the host's paths or a secret never reaches the kept set.

The guard (`pipeline.leaks`) is the one that `publish`, the exports and SFT formatting use; here
it drops at the source, so a thought that repeats a key or an observation that shows a host file
is dropped with the reason (secrets named by their variable, never their value). Per step: the
thought, the tool call's arguments, the observation and its error, the answer; for the whole
trajectory: the question, the plan and the final answer.
"""

from __future__ import annotations

from filters.base import WHOLE, Check, CheckContext, bad, ok
from pipeline.leaks import Match
from pipeline.schema import StepVerdict, Trajectory, Verdict

STEP_FIELDS = ("think", "arguments", "observation_text", "error", "answer")
WHOLE_FIELDS = ("question", "plan", "final_answer")


def _reason(matches: list[Match]) -> str:
    parts = [f"{m.field} holds {'secret' if m.secret else m.kind} {m.label}" for m in matches[:3]]
    return "leak: " + "; ".join(parts) + (f"; +{len(matches) - 3} more" if len(matches) > 3 else "")


class LeakCheck(Check):
    name = "leak"

    def run(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        fields = [(name, getattr(trajectory, name) or "") for name in WHOLE_FIELDS]
        for step in trajectory.steps:
            fields += [(name, getattr(step, name) or "") for name in STEP_FIELDS]
        found = ctx.leak_guard().scan_many(fields, row=trajectory.trajectory_id)
        per = len(STEP_FIELDS)
        verdicts: list[StepVerdict] = []
        whole = [m for matches in found[: len(WHOLE_FIELDS)] for m in matches]
        if whole:
            verdicts.append(bad(WHOLE, _reason(whole)))
        for k, step in enumerate(trajectory.steps):
            start = len(WHOLE_FIELDS) + k * per
            matches = [m for ms in found[start : start + per] for m in ms]
            verdicts.append(bad(step.index, _reason(matches)) if matches else ok(step.index))
        return self.verdict(trajectory, verdicts)
