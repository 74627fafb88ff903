"""Plan: the teacher writes an R1V4 plan for a task; invalid plans are retried with the errors.

The planner sees the task's images and question under the planner prompt and must answer with
the planner format (`pipeline.plan_format`). A reply that fails validation is shown back to the
teacher with every error, up to `synth.plan_retries` more times; after that the plan is recorded
as invalid (with its errors) and the rollouts run without one.
"""

from __future__ import annotations

from typing import Any

from pipeline.chat import ImageEncoder, Message, prompt_messages, question_text, to_openai_messages
from pipeline.plan_format import parse_plan, read_plan
from pipeline.schema import EXECUTOR_TOOLS, Plan, Task
from pipeline.teacher import TeacherClient, TeacherError
from prompts import load_prompt

PLANNER = "planner"


def plan_tools(task: Task) -> tuple[str, ...]:
    """Planner tool names allowed for a task's mode (General mode has only code)."""
    if task.mode == "general":
        return ("code", "none")
    return (*EXECUTOR_TOOLS, "none")


def planner_messages(task: Task) -> list[Message]:
    """System (planner prompt) + the task's images and question, verbatim."""
    prompt = load_prompt(PLANNER)
    return prompt_messages(prompt.text, question_text(task.question, len(task.images)), list(task.images))


def _retry_message(errors: list[str]) -> Message:
    listed = "\n".join(f"- {e}" for e in errors)
    text = (
        f"The plan is invalid:\n{listed}\n"
        "Fix every error and output only the corrected JSON array of steps, nothing else."
    )
    return {"role": "user", "content": [{"type": "text", "text": text}]}


async def make_plan(
    task: Task,
    teacher: TeacherClient,
    encoder: ImageEncoder,
    *,
    retries: int,
    request: dict[str, Any] | None = None,
) -> Plan:
    """Ask the teacher for a plan, validating and retrying; always returns a Plan record."""
    prompt = load_prompt(PLANNER)
    messages = planner_messages(task)
    await encoder.prepare(messages)
    errors: list[str] = []
    text = ""
    attempts = 0
    for attempts in range(1, retries + 2):
        try:
            reply = await teacher.chat(to_openai_messages(messages, encoder.data_uri), **(request or {}))
        except TeacherError as exc:
            errors = [f"teacher: {exc}"]
            break
        # a reasoning planner may leave the array in its reasoning when the content is empty
        text = reply.text if reply.text.strip() else reply.reasoning
        steps, errors = parse_plan(text, tools=plan_tools(task))
        if not errors:
            return Plan(
                task_id=task.task_id,
                steps=steps,
                raw_text=text,
                repairs=read_plan(text).repairs,
                valid=True,
                attempts=attempts,
                teacher=teacher.cfg.model,
                prompt_version=prompt.id,
            )
        messages = [*messages, {"role": "assistant", "content": [{"type": "text", "text": text}]}]
        messages.append(_retry_message(errors))
    return Plan(
        task_id=task.task_id,
        raw_text=text,
        valid=False,
        errors=errors,
        attempts=attempts,
        teacher=teacher.cfg.model,
        prompt_version=prompt.id,
    )
