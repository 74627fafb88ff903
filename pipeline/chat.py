"""Trajectory -> chat messages: the one place that lays a trajectory out as a conversation.

SFT formatting, the teacher's executor context and the exports all start from these messages
(HF multimodal style: `{"role", "content": [{"type": "image" | "text", ...}]}`), so the student
trains on exactly the layout it later sees at inference. Assistant turns carry the R1V4 text
(`pipeline.format` renders it); tool results are either R1V4's `<observation>` inside a user turn
(`observation_role="user"`, the default) or the chat template's native tool role
(`observation_role="tool"`): one config choice, the same at training and at inference.
"""

from __future__ import annotations

from typing import Any, Literal

from pipeline.format import IMAGE_MARKER, render_observation, render_turn
from pipeline.schema import Step, Trajectory

ObservationRole = Literal["user", "tool"]
Message = dict[str, Any]


def step_text(step: Step) -> str:
    """The canonical R1V4 text of one assistant step."""
    if step.action == "answer":
        return render_turn(step.think, answer=step.answer or "")
    if step.action == "tool_call" and step.tool_name:
        return render_turn(step.think, tool_name=step.tool_name, arguments=step.arguments_dict())
    return step.raw


def _interleave(text: str, images: list[str]) -> list[dict[str, Any]]:
    """Split text at IMAGE_MARKERs into text and image items; unplaced images go at the end."""
    pieces = text.split(IMAGE_MARKER)
    content: list[dict[str, Any]] = []
    remaining = list(images)
    for index, piece in enumerate(pieces):
        if index > 0 and remaining:
            content.append({"type": "image", "image": remaining.pop(0)})
        elif index > 0:
            piece = IMAGE_MARKER + piece  # more markers than images: keep the text as written
        if piece:
            content.append({"type": "text", "text": piece})
    content.extend({"type": "image", "image": ref} for ref in remaining)
    return content


def observation_message(step: Step, role: ObservationRole = "user") -> Message:
    """The message that carries a step's tool result (text with its images in place)."""
    text = step.observation_text or ""
    if step.error:
        text = f"{text}\nError: {step.error}" if text else f"Error: {step.error}"
    if role == "user":
        wrapped = render_observation(text)
        head, tail = "<observation>", "</observation>"
        inner = wrapped[len(head) : -len(tail)]
        content = [{"type": "text", "text": head}, *_interleave(inner, step.observation_images)]
        content.append({"type": "text", "text": tail})
        return {"role": "user", "content": _merge_text(content)}
    return {"role": "tool", "content": _merge_text(_interleave(text, step.observation_images))}


def _merge_text(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for item in content:
        if item["type"] == "text" and merged and merged[-1]["type"] == "text":
            merged[-1] = {"type": "text", "text": merged[-1]["text"] + item["text"]}
        elif item["type"] != "text" or item["text"]:
            merged.append(item)
    return merged


def prompt_messages(system_prompt: str, question: str, images: list[str]) -> list[Message]:
    """System + first user turn (task images, then the question)."""
    user = [{"type": "image", "image": ref} for ref in images] + [{"type": "text", "text": question}]
    return [
        {"role": "system", "content": [{"type": "text", "text": system_prompt}]},
        {"role": "user", "content": user},
    ]


def trajectory_messages(
    trajectory: Trajectory, system_prompt: str, *, observation_role: ObservationRole = "user"
) -> list[Message]:
    """The whole conversation: prompt, then each assistant step and its observation."""
    messages = prompt_messages(system_prompt, trajectory.question, trajectory.images)
    for step in trajectory.steps:
        messages.append({"role": "assistant", "content": [{"type": "text", "text": step_text(step)}]})
        if step.action == "tool_call":
            messages.append(observation_message(step, observation_role))
    return messages
