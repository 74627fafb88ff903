"""Plan vs execution: align executed tool calls with plan steps; score skipped, extra and
out-of-order steps.

Synthesised steps record the plan step they serve (`Step.plan_step`), so the alignment is read
directly; trajectories without that annotation are aligned by tool name (longest common
subsequence). A skipped plan step drops the trajectory (up to `filter.plan_max_skipped`); extra
steps are adaptation and only lower the score; `filter.plan_min_score` sets a floor.
"""

from __future__ import annotations

import json

from filters.base import WHOLE, Check, CheckContext, bad, ok
from pipeline.schema import StepVerdict, Trajectory, Verdict


def plan_tools(plan_json: str) -> list[tuple[int, str]] | None:
    """(1-based plan step, tool) for every tool step of a plan; None when it cannot be read."""
    try:
        data = json.loads(plan_json)
    except ValueError:
        return None
    if not isinstance(data, list):
        return None
    steps = [(k, str(item.get("tool_name", ""))) for k, item in enumerate(data, 1) if isinstance(item, dict)]
    return [(k, tool) for k, tool in steps if tool and tool != "none"]


def _lcs(a: list[str], b: list[str]) -> list[tuple[int, int]]:
    """Index pairs of a longest common subsequence (plans have at most 10 steps: O(n*m) is fine)."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) - 1, -1, -1):
        for j in range(len(b) - 1, -1, -1):
            table[i][j] = table[i + 1][j + 1] + 1 if a[i] == b[j] else max(table[i + 1][j], table[i][j + 1])
    pairs, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif table[i + 1][j] >= table[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


class PlanAlignmentCheck(Check):
    name = "plan"

    def run(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        if not trajectory.plan or trajectory.mode == "plan":
            return self.verdict(trajectory, [], note="no plan")
        planned = plan_tools(trajectory.plan)
        if planned is None:
            return self.verdict(trajectory, [], score=0.5, note="plan unreadable; not aligned")
        calls = trajectory.tool_calls
        tool_of = dict(planned)
        verdicts: list[StepVerdict] = []
        served: set[int] = set()
        extra = disorder = 0
        if any(s.plan_step is not None for s in calls):
            high = 0
            for step in calls:
                k = step.plan_step
                if k is None or tool_of.get(k) != step.tool_name:
                    extra += 1
                    why = (
                        "not in the plan"
                        if k is None or k not in tool_of
                        else f"plan step {k} wants {tool_of[k]}"
                    )
                    verdicts.append(ok(step.index, f"extra step ({why})"))
                    continue
                if k < high:
                    disorder += 1
                    verdicts.append(ok(step.index, f"serves plan step {k} after step {high} (out of order)"))
                else:
                    verdicts.append(ok(step.index))
                served.add(k)
                high = max(high, k)
        else:
            pairs = _lcs([t for _, t in planned], [s.tool_name or "" for s in calls])
            matched_calls = {j for _, j in pairs}
            served = {planned[i][0] for i, _ in pairs}
            for j, step in enumerate(calls):
                extra += j not in matched_calls
                verdicts.append(
                    ok(step.index) if j in matched_calls else ok(step.index, "extra step (not in the plan)")
                )
        skipped = [(k, tool) for k, tool in planned if k not in served]
        verdicts += [bad(WHOLE, f"skipped plan step {k} ({tool})") for k, tool in skipped]
        score = len(served) / max(len(planned) + extra + disorder, 1) if planned else 1.0
        keep = len(skipped) <= ctx.config.plan_max_skipped and score >= ctx.config.plan_min_score
        note = "" if keep or skipped else f"plan alignment {score:.2f} below {ctx.config.plan_min_score}"
        return self.verdict(trajectory, verdicts, score=score, keep=keep, note=note)
