"""Image vs following thought: a produced image that cannot support what the next thought claims.

The typical hallucination: a blank or wrong crop, then "found it". Rules look at each image a
code step produced (guarded reads, stats cached by content reference) and at the crop boxes in
its code: degenerate size, near-uniform pixels, a box mostly outside its source image, or (when
the task has a gold region) a crop of the input image that misses it. Such a step is dropped only
when the next thought reads as success; a thought that admits the miss is honest.

Without gold regions a crop that misses shows other text or texture, and the thought after it
"reads HE-9535" all the same. So the text the next thought claims to read there (quoted strings,
code-like tokens, numbers after a reading word: `filters.image_claims`) must be in what OCR reads
in the images the step produced (or in earlier produced images, or the tool's printout), and a
colour it claims ("the red sign") among the image's colours; otherwise the step is dropped with
the claim and what OCR read. A sentence that says it cannot read the text claims nothing. Where
tesseract is missing the text claims go unchecked (said once, counted in the report's `ocr`).
A VLM judge (optional) looks at each produced image with the next thought.
"""

from __future__ import annotations

import asyncio

from filters.base import Check, CheckContext, acknowledges_setback, bad, judge_step, ok
from filters.crops import Box, crops_in_code, named_images
from filters.image_claims import claims_in, shows_colour, supported
from filters.ocr import VARIANTS
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


def unsupported_claims(trajectory: Trajectory, index: int, ctx: CheckContext) -> list[str]:
    """Text and colours the thought after step `index` claims to see in its images, unborne out."""
    step = trajectory.steps[index]
    refs = step.observation_images
    claims = claims_in(trajectory.steps[index + 1].think) if refs else None
    if not claims:
        return []
    reader = ctx.image_text()
    problems: list[str] = []
    texts = [c for c in claims.texts if not supported(c, step.observation_text or "")]
    if texts and not reader.available:
        reader.stats["claims_unchecked"] += len(texts)
        texts = []
    # a thought may also recall text an earlier produced image showed (read the two cheap ways)
    earlier = [r for s in trajectory.steps[:index] for r in s.observation_images if r not in refs]
    for claim in texts:
        reader.stats["claims_checked"] += 1
        if not any(reader.bears(ref, claim) for ref in refs) and not any(
            reader.bears(ref, claim, VARIANTS[:2]) for ref in dict.fromkeys(earlier)
        ):
            reader.stats["claims_unsupported"] += 1
            read = " | ".join(reader.reading(ref) for ref in refs)
            problems.append(f"claims to read {claim[:60]!r} but OCR of the image read {_clip(read)!r}")
    for colour in claims.colours:
        shares = [c for c in map(reader.colours, refs) if c is not None]
        reader.stats["colours_checked"] += 1
        if shares and not any(shows_colour(c, colour, ctx.config.colour_min_share) for c in shares):
            reader.stats["colours_unsupported"] += 1
            top = sorted(shares[0].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
            seen = ", ".join(f"{name} {share:.0%}" for name, share in top)
            problems.append(f"claims a {colour} object but the image's main colours are {seen}")
    return problems


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
            elif unsupported := unsupported_claims(trajectory, i, ctx):
                verdicts.append(bad(following.index, "; ".join(unsupported)))
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
