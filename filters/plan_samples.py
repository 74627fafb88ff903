"""Plan-mode samples from kept trajectories: R1V4's planner data.

The executed tool calls become plan steps (one per query, URL or image; the planner's singular
parameters), followed by a final `none` verification step. Values that came from an earlier step
become placeholders, so the plan can be written before anything runs: a query that uses a name
first seen in an earlier observation gets `[Entity identified in Step k]` (or `[Result from
Step k]` after a text search or visit), a URL found in an earlier result `[URL found in Step k]`,
an image an earlier code step produced `[Image produced in Step k]`. The plan is rendered with
`pipeline.plan_format.render_plan` and must pass `validate_plan` (counts, tools, parameters,
placeholders pointing backwards); one that does not is not emitted.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from filters.base import call_arguments, lowered
from filters.crops import crops_in_code
from pipeline.plan_format import MAX_STEPS, render_plan, validate_plan
from pipeline.schema import PlanStep, Step, Trajectory
from pipeline.tool_spec import ToolTable

PROMPT_VERSION = "plan-from-trajectory"
_WORD = re.compile(r"\S+")
_IMAGE_NAME = re.compile(r"(?:/input/)?(image_\d+\.(?:png|jpe?g|webp))")
_OPERATIONS = (
    ("rotate", "rotate"),
    ("contrast", "enhance the contrast of"),
    ("enhance", "enhance"),
    ("sharpen", "sharpen"),
    ("denois", "denoise"),
    ("resize", "zoom into"),
    ("threshold", "binarise"),
)


@dataclass
class _Source:
    step: int  # 1-based plan step
    label: str  # what the step found, as a placeholder names it ("Result from Step {k}")
    text: str  # lowered observation text


def _span_placeholder(query: str, question: str, sources: list[_Source]) -> str:
    """Replace the longest spans of `query` first seen in an earlier observation by placeholders."""
    words = _WORD.findall(query)
    asked = lowered(question)
    i, out = 0, []
    while i < len(words):
        for j in range(len(words), i, -1):
            span = " ".join(words[i:j]).strip(".,;:!?\"'()")
            if len(span) < 3 or not any(c.isupper() or c.isdigit() for c in span) or "[" in span:
                continue
            needle = lowered(span)
            if needle in asked:
                continue
            origin = next((s for s in sources if needle in s.text), None)
            if origin is not None:
                out.append("[" + origin.label.format(k=origin.step) + "]")
                i = j
                break
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)


def _operation(code: str, image: str) -> str:
    crops = crops_in_code(code)
    lowered_code = code.casefold()
    verbs = [verb for key, verb in _OPERATIONS if key in lowered_code]
    if crops:
        box = crops[0].box
        coords = ", ".join(f"{v:g}" for v in (box.x0, box.y0, box.x1, box.y1))
        head = f"crop {image} to ({coords})"
        return head + (" and " + " and ".join(dict.fromkeys(verbs)) + " it" if verbs else " and zoom in")
    if verbs:
        return " and ".join(dict.fromkeys(verbs)) + f" {image}"
    return f"analyse {image}"


def plan_steps(trajectory: Trajectory, tools: ToolTable) -> tuple[list[PlanStep], str]:
    """The executed calls as plan steps with placeholders, or ([], why not)."""
    steps: list[PlanStep] = []
    sources: list[_Source] = []
    produced: dict[str, int] = {}  # image_<k>.png -> plan step that produced it
    n_images = len(trajectory.images)
    for call in trajectory.tool_calls:
        args = call_arguments(call)
        tool = call.tool_name or ""
        first = len(steps) + 1

        def image_ref(name: str) -> str:
            bare = _IMAGE_NAME.search(name)
            key = bare.group(1) if bare else name
            return f"[Image produced in Step {produced[key]}]" if key in produced else key

        def add(description: str, tool: str = tool, **parameters: str) -> None:
            steps.append(PlanStep(description=description, tool_name=tool, parameters=parameters))

        spec = tools.get(tool)
        if spec is None or not spec.plan_parameter:
            return [], f"tool {tool!r} has no planner form"
        values = args.get(spec.argument)
        for value in (values if isinstance(values, list) else [values]) if values else []:
            if spec.runs_code:  # the code itself is no plan parameter: say what it does
                match = _IMAGE_NAME.search(str(value))
                value = _operation(str(value), image_ref(match.group(1)) if match else "the image")
            elif spec.plan_parameter == "image_path":
                value = image_ref(str(value))
            elif spec.plan_parameter == "query":
                value = _span_placeholder(str(value), trajectory.question, sources)
            elif spec.plan_parameter == "url":
                found = next((s for s in sources if lowered(str(value)) in s.text), None)
                value = f"[URL found in Step {found.step}]" if found else str(value)
            add(spec.plan_step.format(tool=tool, value=value), **{spec.plan_parameter: str(value)})
        if len(steps) >= first:  # what this call returned may feed later steps
            sources.append(_Source(len(steps), spec.plan_label, lowered(call.observation_text or "")))
            for _ in call.observation_images:
                produced[f"image_{n_images}.png"] = len(steps)
                n_images += 1
        else:
            n_images += len(call.observation_images)
    if not steps:
        return [], "no tool calls to plan"
    if len(steps) + 1 > MAX_STEPS:
        return [], f"{len(steps)} tool steps exceed the planner's {MAX_STEPS - 1}"
    span = "step 1" if len(steps) == 1 else f"steps 1-{len(steps)}"
    steps.append(
        PlanStep(
            description=f"Verify the evidence gathered in {span} and state the final answer",
            tool_name="none",
            parameters={},
        )
    )
    return steps, ""


def plan_sample(trajectory: Trajectory, tools: ToolTable) -> tuple[Trajectory | None, str]:
    """A plan-mode Trajectory derived from a kept one, or (None, why not)."""
    if trajectory.mode == "plan":
        return None, "already a plan sample"
    steps, why = plan_steps(trajectory, tools)
    if not steps:
        return None, why
    rendered = render_plan(steps)
    _, errors = validate_plan(json.loads(rendered), tools)
    if errors:
        return None, "derived plan invalid: " + "; ".join(errors[:3])
    sample = Trajectory(
        trajectory_id=f"{trajectory.trajectory_id}-plan",
        task_id=trajectory.task_id,
        rollout=trajectory.rollout,
        teacher=trajectory.teacher,
        prompt_version=PROMPT_VERSION,
        source=trajectory.source,
        source_id=trajectory.source_id,
        category="plan",
        mode="plan",
        question=trajectory.question,
        images=list(trajectory.images),
        plan=rendered,
        plan_valid=True,
        steps=[Step(index=0, action="answer", answer=rendered, raw=rendered)],
        final_answer=rendered,
        status=trajectory.status,
        meta=json.dumps({"derived_from": trajectory.trajectory_id}),
    )
    return sample, ""
