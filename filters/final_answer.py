"""Last thought vs answer: in long, image-heavy contexts the answer sometimes contradicts the
reasoning right before it (R1V4 dropped those).

Rule: when the last thought states an answer ("the answer is X", "final answer: X") and the
answer names something else, drop. Both are read as the answer scorer reads long-form replies
(`pipeline.answers`): "Yes, the viewer provides ..." agrees with "yes, with details on how to do
it" (the same leading yes/no), "The race is the **Epsom Derby**, won by ..." with "the Epsom
Derby"; a leading yes against a leading no contradicts, whatever follows. A judge (optional) covers contradictions that are not
stated in that form.
"""

from __future__ import annotations

import re

from filters.answer_check import answers_match, normalize_answer
from filters.base import Check, CheckContext, bad, ok
from pipeline.long_answers import STOPWORDS, leading_polarity, stems, tokens
from pipeline.schema import Trajectory, Verdict

_STATED = re.compile(
    r"\b(?:final\s+)?answer\s*(?:is|should\s+be|would\s+be|will\s+be|:)\s*:?\s*"
    r"(?P<x>[^\n;!?]{1,160}?)(?=(?<!\d)\.(?!\d)|[\n;!?]|$)",
    re.IGNORECASE,
)
# "the answer is clear / confirmed / consistent across sources": a verdict on the answer, not one
_ASSESSMENT = re.compile(
    r"(?:clear|clearly|confirmed|consistent|correct|solid|well|verified|supported|accurate|likely|"
    r"obvious|straightforward|established|definitive|certain|evident|unambiguous|settled|sound|"
    r"reliable|robust|now|still|ready|found|here|below|above|as\s+follows)\b",
    re.IGNORECASE,
)
_MARKS = " ,:*_\"“”'‘’`"


def stated_answer(thought: str) -> str | None:
    """The last answer a thought states outright, if any ("the answer is clear" states none)."""
    found = [m.group("x").strip(_MARKS) for m in _STATED.finditer(thought)]
    found = [f for f in found if f and not _ASSESSMENT.match(f)]
    return found[-1] if found else None


def agrees(answer: str, stated: str, tolerance: float) -> bool:
    """Whether the answer says what the thought stated (either may be a sentence).

    A leading yes/no decides when both have one; else the answer must carry the stated answer
    (the scorer's reading), or hold most of its words ("Jesse Woodson James" for "Jesse James";
    "298 deaths" for "298 casualties": its number and half its words).
    """
    said, thought = leading_polarity(answer), leading_polarity(stated)
    if said and thought:
        return said == thought
    if any(answers_match(a, b, tolerance=tolerance) for a, b in ((answer, stated), (stated, answer))):
        return True
    a, s = normalize_answer(answer), normalize_answer(stated)
    if a and s and (a in s or s in a):
        return True
    words = [w for w in dict.fromkeys(stems(stated)) if w not in STOPWORDS]
    held = {t.stem for t in tokens(answer)}
    numbers = [w for w in words if w[:1].isdigit()]
    if any(n not in held for n in numbers):
        return False
    share = sum(w in held for w in words) / len(words) if words else 0.0
    return share > (0.5 if numbers else 0.6)


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
        if agrees(answer, stated, ctx.config.number_tolerance):
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
