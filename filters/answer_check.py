"""Answer vs gold: normalised exact match, numbers with a tolerance, aliases; a judge optionally.

The rules live in `pipeline.answers` (shared with eval and the world's judge).

The tolerance (`filter.number_tolerance`, relative) applies to numbers with a fraction
(measurements: 3.14 vs 3.1416); whole numbers (years, counts, populations, ids) must be equal,
since 1% of a year is two decades and 1% of a population is thousands of people.

The rule decides whenever it can say "match"; a judge (when configured) is asked only about
rule mismatches, so a paraphrase of the gold ("NYC" vs "New York City") is not lost while
clear matches cost nothing. Without a gold answer the check keeps the trajectory (unverifiable)
unless `filter.require_gold` is set.
"""

from __future__ import annotations

from filters.base import WHOLE, Check, CheckContext, bad, ok
from pipeline.answers import answers_match, as_number, normalize_answer
from pipeline.schema import Trajectory, Verdict

__all__ = ["AnswerCheck", "answers_match", "as_number", "normalize_answer"]


class AnswerCheck(Check):
    name = "answer"
    judged = True
    rescuable = True

    def _answer_step(self, trajectory: Trajectory) -> int:
        return trajectory.steps[-1].index if trajectory.steps else WHOLE

    def run(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        where = self._answer_step(trajectory)
        predicted = trajectory.final_answer
        if trajectory.gold_answer is None:
            if ctx.config.require_gold:
                return self.verdict(trajectory, [bad(where, "no gold answer to check against")])
            return self.verdict(trajectory, [ok(where, "no gold answer (unchecked)")], score=0.5)
        if predicted is None or not predicted.strip():
            return self.verdict(trajectory, [bad(where, "no final answer")], score=0.0)
        if answers_match(
            predicted,
            trajectory.gold_answer,
            trajectory.answer_aliases,
            ctx.config.number_tolerance,
            question=trajectory.question,
        ):
            return self.verdict(trajectory, [ok(where, "matches gold")])
        return self.verdict(
            trajectory,
            [bad(where, f"wrong answer: {predicted.strip()[:80]!r} vs gold {trajectory.gold_answer[:80]!r}")],
            score=0.0,
        )

    async def arun(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        verdict = self.run(trajectory, ctx)
        if (
            verdict.keep
            or ctx.judge is None
            or trajectory.gold_answer is None
            or not (trajectory.final_answer or "").strip()
        ):
            return verdict
        payload = {
            "question": trajectory.question,
            "gold_answer": trajectory.gold_answer,
            "aliases": list(trajectory.answer_aliases),
            "predicted": trajectory.final_answer,
        }
        result = await ctx.judge.ask("answer", payload)
        where = self._answer_step(trajectory)
        if result.unknown:  # the rules said mismatch; the judge could not say otherwise
            step = (
                ok(where, result.reason)
                if result.passed
                else bad(where, f"wrong answer by the rules; {result.reason}")
            )
            return self.verdict(trajectory, [step], score=0.5 if result.passed else 0.0)
        if result.passed:
            return self.verdict(trajectory, [ok(where, f"judge: equivalent ({result.reason})")], score=0.9)
        return self.verdict(trajectory, [bad(where, f"wrong answer (judge: {result.reason})")], score=0.0)
