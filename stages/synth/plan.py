"""Plan: the teacher writes an R1V4 plan for a task; invalid plans are retried with the errors.

The planner sees the task's images and question under the planner prompt and must answer with
the planner format (`pipeline.plan_format`). A reply that fails validation is shown back to the
teacher with every error, up to `synth.plan_retries` more times; after that the plan is recorded
as invalid (with its errors) and the rollouts run without one.
"""

from __future__ import annotations

from typing import Any

from pipeline.chat import ImageEncoder, Message, prompt_messages, to_openai_messages
from pipeline.plan_format import parse_plan, read_plan
from pipeline.schema import Plan, Task
from pipeline.teacher import TeacherClient, TeacherError
from pipeline.tool_spec import ToolTable
from stages.synth.system_prompts import planner_prompt
from stages.tools.registry import tool_table


def planner_messages(task: Task, tools: ToolTable | None = None) -> list[Message]:
    """System (planner prompt) + the task's images and question, verbatim."""
    prompt = planner_prompt(tools)
    return prompt_messages(prompt.text, task.question, list(task.images))


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
    tools: ToolTable | None = None,
) -> Plan:
    """Ask the teacher for a plan, validating and retrying (against the plannable tools of the
    task's mode); always returns a Plan record."""
    prompt = planner_prompt(tools)
    table = tools or tool_table()
    messages = planner_messages(task, tools)
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
        steps, errors = parse_plan(text, table, mode=task.mode)
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
