"""Reasoning vs tool output: the thought after an observation must agree with it.

Rules, where a claim can be checked mechanically against what the trajectory has seen so far
(question, plan, every earlier observation and call): a cited URL must have appeared; a quoted
title, name or label the thought says it read must appear, word for word (unless read off an image
the step just produced: rules cannot see pixels; what counts as a quotation, and what as a guess,
is `filters.quotations`'); a number of three or more digits the thought says an
observation, page or result shows must appear; a failed or empty call must not be followed by a
thought that reads as success. With `filter.strict_entities`, multi-word proper
names must also have appeared (good for closed worlds, noisy for open-web data). A step judge
(optional) checks the rest, one call per tool step, only for steps the rules passed.
"""

from __future__ import annotations

import asyncio
import re
from functools import lru_cache

from filters.base import Check, CheckContext, acknowledges_setback, bad, judge_step, lowered, ok
from filters.judges import clip
from filters.quotations import read_claims, was_read
from pipeline.schema import Step, StepVerdict, Trajectory, Verdict

_URL = re.compile(r"https?://[^\s\"'<>\])}]+")
# "the observation/page/results ... confirms/shows/states ... <claim>": a claim the thought
# attributes to a text the agent read (not to an image, whose content rules cannot see)
_ATTRIBUTED = re.compile(
    r"\b(?:observation|result|output|page|article|entry|table|snippet|listing|infobox|search)s?\b"
    r"[^.;!?\n]{0,40}?\b(?:confirm|show|say|state|list|mention|report|give|indicate|note|record)s?\b"
    r"(?P<claim>(?:[^.;!?\n]|(?<=\d)\.(?=\d))*)",
    re.IGNORECASE,
)
# a number worth checking: three or more digits (years, counts, populations), or 1,234 style
_FIGURE = re.compile(r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+|\d{3,})(?:\.\d+)?(?![\w]|,\d)")
_PROPER = re.compile(r"\b[A-Z][a-z]+(?:\s+(?:of|de|von|van|the)?\s*[A-Z][a-z]+)+\b")


def _seen_text(trajectory: Trajectory, upto: int) -> str:
    """Everything the agent could have read before the thought of step `upto`."""
    parts = [trajectory.question, trajectory.plan or ""]
    for step in trajectory.steps[:upto]:
        parts += [step.arguments or "", step.observation_text or "", step.error or "", step.think]
    return lowered("\n".join(parts))


def _digits(text: str) -> str:
    """Text with digit-group commas dropped, so 2,362 and 2362 compare equal."""
    return re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)


@lru_cache(maxsize=8192)
def _figure_pattern(figure: str) -> re.Pattern[str]:
    """The figure as a whole number (compiled once: `re`'s own cache holds only 512)."""
    return re.compile(rf"(?<![\d.]){re.escape(figure)}(?!\d)")


def unseen_figures(thought: str, seen: str) -> list[str]:
    """Numbers a thought says a text observation showed, which nothing seen contains."""
    out = []
    plain = _digits(seen)
    for match in _ATTRIBUTED.finditer(thought):
        for figure in _FIGURE.findall(match.group("claim")):
            if not _figure_pattern(_digits(figure)).search(plain):
                out.append(figure)
    return list(dict.fromkeys(out))


def _failed(step: Step) -> bool:
    return bool(step.error) or (not (step.observation_text or "").strip() and not step.observation_images)


def rule_problems(trajectory: Trajectory, index: int, strict_entities: bool) -> list[str]:
    """Unsupported claims in the thought of step `index + 1` about the observation of step `index`."""
    step, following = trajectory.steps[index], trajectory.steps[index + 1]
    thought = following.think
    if not thought.strip():
        return []
    problems: list[str] = []
    if _failed(step) and not acknowledges_setback(thought):
        problems.append(f"thought reads as success after a failed or empty {step.tool_name} call")
    seen = None
    for url in _URL.findall(thought):
        seen = seen or _seen_text(trajectory, index + 1)
        if lowered(url.rstrip(".,;:")) not in seen:
            problems.append(f"cites a URL no observation showed: {url[:80]}")
    # text read off an image produced just before is the image checks' business, not the rules'
    for quote in () if step.observation_images else read_claims(thought):
        seen = seen or _seen_text(trajectory, index + 1)
        if not was_read(quote, seen):
            problems.append(f"claims to read {quote[:60]!r}, which no observation contains")
    if _ATTRIBUTED.search(thought):
        seen = seen or _seen_text(trajectory, index + 1)
        for figure in unseen_figures(thought, seen):
            problems.append(f"says an observation shows {figure}, which none contains")
    if strict_entities:
        for name in dict.fromkeys(_PROPER.findall(thought)):
            seen = seen or _seen_text(trajectory, index + 1)
            if lowered(name) not in seen:
                problems.append(f"names {name!r}, which no observation contains")
    return problems


class GroundingCheck(Check):
    name = "grounding"
    judged = True

    def _pairs(self, trajectory: Trajectory) -> list[int]:
        steps = trajectory.steps
        return [i for i, s in enumerate(steps[:-1]) if s.action == "tool_call"]

    def run(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        verdicts: list[StepVerdict] = []
        for i in self._pairs(trajectory):
            problems = rule_problems(trajectory, i, ctx.config.strict_entities)
            index = trajectory.steps[i + 1].index
            verdicts.append(bad(index, "; ".join(problems)) if problems else ok(index))
        return self.verdict(trajectory, verdicts)

    async def arun(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        verdict = self.run(trajectory, ctx)
        if (judge := self.judge_after(verdict, ctx)) is None:
            return verdict
        pairs = [i for i in self._pairs(trajectory) if trajectory.steps[i + 1].think.strip()]

        async def ask(i: int) -> StepVerdict:
            step, following = trajectory.steps[i], trajectory.steps[i + 1]
            observation = step.observation_text or ""
            if step.error:
                observation = f"{observation}\nError: {step.error}".strip()
            payload = {
                "question": trajectory.question,
                "tool_name": step.tool_name,
                "arguments": step.arguments_dict(),
                "observation_text": clip(observation),
                "next_thought": following.think,
            }
            result = await judge.ask("step", payload)
            return judge_step(
                following.index, result, f"thought not supported by the {step.tool_name} output"
            )

        judged = {v.step: v for v in await asyncio.gather(*(ask(i) for i in pairs))}
        return self.verdict(trajectory, [judged.get(v.step, v) for v in verdict.steps])
