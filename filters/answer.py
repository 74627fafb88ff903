"""Answer vs gold: normalised exact match, numbers with a tolerance, aliases; a judge optionally.

The tolerance (`filter.number_tolerance`, relative) applies to numbers with a fraction
(measurements: 3.14 vs 3.1416); whole numbers (years, counts, populations, ids) must be equal,
since 1% of a year is two decades and 1% of a population is thousands of people.

The rule decides whenever it can say "match"; a judge (when configured) is asked only about
rule mismatches, so a paraphrase of the gold ("NYC" vs "New York City") is not lost while
clear matches cost nothing. Without a gold answer the check keeps the trajectory (unverifiable)
unless `filter.require_gold` is set.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

from filters.base import WHOLE, Check, CheckContext, bad, ok
from pipeline.schema import Trajectory, Verdict

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_BOXED = re.compile(r"\\boxed\{(.*)\}")
_NUMBER = re.compile(r"^([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+)\s*(%|[^\W\d_]+\.?)?$")
_NUMBER_WORDS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
)
_WORDS = {w: i for i, w in enumerate(_NUMBER_WORDS.split(" "))}


@lru_cache(maxsize=65536)
def normalize_answer(text: str) -> str:
    """Casefolded, NFKC, without markdown, articles and punctuation; whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text or "").strip()
    boxed = _BOXED.search(text)
    if boxed:
        text = boxed.group(1)
    text = text.casefold().replace("*", "").replace("_", " ")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)  # 1,234 -> 1234
    text = re.sub(r"(?<!\d)\.|\.(?!\d)", "", text)  # U.S.A. -> usa, keeps 3.14
    text = re.sub(r"[^\w\s.%-]|(?<!\w)-(?!\d)|-(?!\w)", " ", text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def as_number(text: str) -> tuple[float, str] | None:
    """(value, unit) when a normalised answer is one number with an optional unit."""
    if text in _WORDS:
        return float(_WORDS[text]), ""
    match = _NUMBER.match(text)
    if not match:
        return None
    try:
        return float(match.group(1).replace(",", "")), (match.group(2) or "").rstrip(".")
    except ValueError:
        return None


def answers_match(
    predicted: str | None, gold: str | None, aliases: list[str] = (), tolerance: float = 0.01
) -> bool:
    """Whether `predicted` names the gold answer (or an alias), numbers within `tolerance`."""
    if predicted is None or gold is None:
        return False
    pred = normalize_answer(predicted)
    if not pred:
        return False
    for target in (gold, *aliases):
        want = normalize_answer(target)
        if not want:
            continue
        if pred == want:
            return True
        p, g = as_number(pred), as_number(want)
        if p is None or g is None or (p[1] and g[1] and p[1] != g[1]):
            continue
        if _whole(pred) and _whole(want):  # a year, a count, an id: 1% of 1900 is 19 years
            if p[0] == g[0]:
                return True
        elif abs(p[0] - g[0]) <= max(tolerance * abs(g[0]), 1e-9):
            return True
    return False


def _whole(text: str) -> bool:
    """Whether a normalised numeric answer is written without a fraction (tolerance is for
    measurements; whole numbers are years, counts and ids, which match exactly)."""
    return "." not in text


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
            predicted, trajectory.gold_answer, trajectory.answer_aliases, ctx.config.number_tolerance
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
