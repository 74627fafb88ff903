"""Re-cropping loops and identical repeated tool calls.

R1V4 removed trajectories that fixed an offset crop over many rounds: they teach error-fixing
loops. A *correction* is a crop of the same image that overlaps the previous crop of that image
(IoU at least `filter.recrop_iou`), or has the same box size while the thought says the previous
crop missed ("shift the box and crop again"); a chain of more than `filter.max_recrops`
corrections is a loop. Navigating to a different region without a miss, or zooming into a small
part of an earlier crop, is not. Separately, a call identical to an earlier one (same tool, same
arguments; code compared without blank lines and comments) is redundant.
"""

from __future__ import annotations

from filters.base import Check, CheckContext, acknowledges_setback, bad, call_arguments, ok
from filters.crops import Box, crops_in_code
from pipeline.schema import Step, StepVerdict, Trajectory, Verdict, canonical_json


def _same_size(a: Box, b: Box, tolerance: float = 0.1) -> bool:
    return abs(a.width - b.width) <= tolerance * max(a.width, 1.0) and abs(
        a.height - b.height
    ) <= tolerance * max(a.height, 1.0)


def call_key(step: Step, code_argument: str | None = None) -> str:
    """What makes two calls the same call (code compared without blank lines and comments)."""
    args = dict(call_arguments(step))
    if code_argument and isinstance(args.get(code_argument), str):
        lines = (line.strip() for line in args[code_argument].splitlines())
        args[code_argument] = "\n".join(line for line in lines if line and not line.startswith("#"))
    return f"{step.tool_name}\x00{canonical_json(args)}"


class RedundancyCheck(Check):
    name = "redundancy"

    def run(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        cfg = ctx.config
        first_seen: dict[str, int] = {}
        last_box: dict[int | None, Box] = {}
        chain: dict[int | None, int] = {}
        repeats = loops = 0
        verdicts: list[StepVerdict] = []
        for step in trajectory.tool_calls:
            problems: list[str] = []
            key = call_key(step, ctx.code_argument(step))
            if key in first_seen:
                repeats += 1
                if repeats > cfg.max_repeated_calls:
                    problems.append(f"repeats the {step.tool_name} call of step {first_seen[key]}")
            else:
                first_seen[key] = step.index
            code = ctx.code_of(step)
            if code is not None:
                for crop in crops_in_code(code):
                    previous = last_box.get(crop.source)
                    overlap = previous.iou(crop.box) if previous is not None else 0.0
                    retry = (
                        previous is not None
                        and _same_size(previous, crop.box)
                        and acknowledges_setback(step.think)
                    )
                    fixing = overlap >= cfg.recrop_iou or retry
                    chain[crop.source] = chain.get(crop.source, 0) + 1 if fixing else 0
                    last_box[crop.source] = crop.box
                    if chain[crop.source] > cfg.max_recrops:
                        loops += 1
                        where = "the image" if crop.source is None else f"image_{crop.source}"
                        problems.append(
                            f"re-cropping: correction {chain[crop.source]} of the crop of {where} (IoU {overlap:.2f})"
                        )
            verdicts.append(bad(step.index, "; ".join(problems)) if problems else ok(step.index))
        calls = max(len(trajectory.tool_calls), 1)
        score = 1.0 - min(1.0, (repeats + loops) / calls)
        return self.verdict(trajectory, verdicts, score=score)
