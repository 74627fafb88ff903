"""Last thought vs answer: in long, image-heavy contexts the answer sometimes contradicts the
reasoning right before it (R1V4 dropped those).

Rule: when the last thought states an answer ("the answer is X", "final answer: X") and the
answer names something else, drop. A judge (optional) covers contradictions that are not
stated in that form.
"""

from __future__ import annotations

import re

from filters.answer_check import answers_match, normalize_answer
from filters.base import Check, CheckContext, bad, ok
from pipeline.schema import Trajectory, Verdict

_STATED = re.compile(
    r"\b(?:final\s+)?answer\s*(?:is|should\s+be|would\s+be|will\s+be|:)\s*:?\s*[\"“'*]*(?P<x>[^\n.;!?\"”*]{1,120})",
    re.IGNORECASE,
)


def stated_answer(thought: str) -> str | None:
    """The last answer a thought states outright, if any."""
    found = [m.group("x").strip(" ,") for m in _STATED.finditer(thought)]
    found = [f for f in found if f]
    return found[-1] if found else None


def last_thought(trajectory: Trajectory) -> str:
    for step in reversed(trajectory.steps):
        if step.think.strip():
            return step.think
    return ""


class FinalAnswerCheck(Check):
    name = "final"
    judged = True

    def run(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        if not trajectory.steps or trajectory.final_answer is None:
            return self.verdict(trajectory, [], note="no final answer (format check drops it)")
        where = trajectory.steps[-1].index
        stated = stated_answer(last_thought(trajectory))
        if stated is None:
            return self.verdict(trajectory, [ok(where, "last thought states no answer")])
        answer = trajectory.final_answer
        a, s = normalize_answer(answer), normalize_answer(stated)
        agrees = answers_match(answer, stated, tolerance=ctx.config.number_tolerance) or (
            bool(a) and bool(s) and (a in s or s in a)
        )
        if agrees:
            return self.verdict(trajectory, [ok(where)])
        return self.verdict(
            trajectory,
            [bad(where, f"answer {answer.strip()[:60]!r} contradicts last thought ({stated[:60]!r})")],
        )

    async def arun(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        verdict = self.run(trajectory, ctx)
        if not verdict.keep or ctx.judge is None or trajectory.final_answer is None or not trajectory.steps:
            return verdict
        payload = {
            "question": trajectory.question,
            "last_thought": last_thought(trajectory),
            "answer": trajectory.final_answer,
        }
        result = await ctx.judge.ask("final", payload)
        where = trajectory.steps[-1].index
        if result.unknown:  # a kept unknown leaves its reason on the step; a dropped one drops
            if result.passed:
                return self.verdict(trajectory, [*verdict.steps, ok(where, result.reason)])
            return self.verdict(trajectory, [bad(where, result.reason)])
        if result.passed:
            return verdict
        return self.verdict(
            trajectory, [bad(where, f"answer contradicts last thought (judge: {result.reason})")]
        )
