"""Image vs following thought: a produced image that cannot support what the next thought claims.

The typical hallucination: a blank or wrong crop, then "found it". Rules look at each image a
code step produced (guarded reads, stats cached by content reference) and at the crop boxes in
its code: degenerate size, near-uniform pixels, a box mostly outside its source image, or (when
the task has a gold region) a crop of the input image that misses it. Such a step is dropped only
when the next thought reads as success; a thought that admits the miss is honest. A VLM judge
(optional) looks at each produced image with the next thought.
"""

from __future__ import annotations

import asyncio

from filters.base import Check, CheckContext, acknowledges_setback, bad, judge_step, ok
from filters.crops import Box, crops_in_code, named_images
from pipeline.schema import StepVerdict, Trajectory, Verdict


def image_problems(trajectory: Trajectory, index: int, ctx: CheckContext, names: list[str]) -> list[str]:
    """What is wrong with the images step `index` produced (empty when nothing is)."""
    cfg = ctx.config
    step = trajectory.steps[index]
    problems: list[str] = []
    for ref in step.observation_images:
        stats = ctx.image_stats(ref)
        if stats is None:
            continue
        if min(stats.width, stats.height) < cfg.min_crop_side:
            problems.append(f"degenerate image {stats.width}x{stats.height}")
        elif stats.std < cfg.uniform_std or stats.dominant > cfg.uniform_share:
            problems.append(f"near-uniform image (std {stats.std:.1f}, {stats.dominant:.0%} one tone)")
    code = ctx.code_of(step)
    for crop in crops_in_code(code) if code is not None else ():
        box = crop.box
        if box.width <= 0 or box.height <= 0:
            problems.append(f"empty crop box {_fmt(box)}")
            continue
        if crop.source is None or crop.source >= len(names):
            continue
        source = ctx.image_stats(names[crop.source])
        if source is not None:
            frame = Box(0, 0, source.width, source.height)
            if frame.coverage_of(box) < cfg.min_inside:
                problems.append(
                    f"crop {_fmt(box)} lies mostly outside image_{crop.source} ({source.width}x{source.height})"
                )
                continue
        gold = trajectory.gold_region if cfg.use_gold_region else None
        if crop.source == 0 and gold and len(gold) == 4:
            covered = box.coverage_of(Box(*gold))
            if covered < cfg.gold_coverage:
                problems.append(f"crop {_fmt(box)} misses the gold region ({covered:.0%} of it covered)")
    return list(dict.fromkeys(problems))


def _fmt(box: Box) -> str:
    return "(" + ", ".join(f"{v:g}" for v in (box.x0, box.y0, box.x1, box.y1)) + ")"


class ImageThoughtCheck(Check):
    name = "image"
    judged = True

    def _pairs(self, trajectory: Trajectory, ctx: CheckContext) -> list[int]:
        steps = trajectory.steps
        return [
            i
            for i, s in enumerate(steps[:-1])
            if s.action == "tool_call" and (s.observation_images or ctx.code_argument(s) is not None)
        ]

    def run(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        names = named_images(trajectory)
        verdicts: list[StepVerdict] = []
        for i in self._pairs(trajectory, ctx):
            problems = image_problems(trajectory, i, ctx, names)
            following = trajectory.steps[i + 1]
            if problems and not acknowledges_setback(following.think):
                verdicts.append(bad(following.index, f"claims success after {'; '.join(problems)}"))
            else:
                verdicts.append(
                    ok(following.index, "; ".join(problems) + (" (admitted)" if problems else ""))
                )
        return self.verdict(trajectory, verdicts)

    async def arun(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        verdict = self.run(trajectory, ctx)
        if (judge := self.judge_after(verdict, ctx)) is None:
            return verdict
        asks = [
            (i, ref)
            for i in self._pairs(trajectory, ctx)
            if trajectory.steps[i + 1].think.strip()
            for ref in trajectory.steps[i].observation_images[: ctx.config.judge_images_per_step]
        ]

        async def ask(i: int, ref: str) -> StepVerdict:
            following = trajectory.steps[i + 1]
            payload = {"question": trajectory.question, "next_thought": following.think}
            result = await judge.ask("image", payload, image_ref=ref)
            return judge_step(following.index, result, "produced image does not support the thought")

        merged = {v.step: v for v in verdict.steps}
        for judged in await asyncio.gather(*(ask(i, ref) for i, ref in asks)):
            if not judged.ok or (judged.reason and merged.get(judged.step, judged).ok):
                merged[judged.step] = judged  # a drop, or a kept unknown's reason on a passing step
        return self.verdict(trajectory, merged.values())
