"""A minimal agent loop for the world tests: oracle over HTTP, real tools, R1V4 text format.

Deliberately independent of the synth stage: it checks the world's gold paths and oracle
against the tools' real behaviour, nothing else.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from pipeline.format import parse_turn, render_observation
from pipeline.schema import Task
from prompts import load_prompt
from stages.tools.base import ToolContext


def data_uri(path: str | Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()


async def run_task(
    client: Any, tools: dict, task: Task, workdir: Path, *, seed: int = 0, max_turns: int = 12
) -> dict:
    """Drive one task to an answer; returns {answer, turns, texts, trajforge}."""
    system = load_prompt("executor_general" if task.mode == "general" else "executor_deepresearch").text
    ctx = ToolContext(trajectory_id=f"{task.task_id}-{seed}", workdir=workdir, question=task.question)
    workdir.mkdir(parents=True, exist_ok=True)
    user: list[dict] = []
    for i, path in enumerate(task.images):
        ctx.images[f"image_{i}.png"] = Path(path)
        user.append({"type": "image_url", "image_url": {"url": data_uri(path)}})
    user.append({"type": "text", "text": task.question})
    messages: list[dict] = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    texts, records = [], []
    for _ in range(max_turns):
        reply = await client.chat.completions.create(model="oracle", messages=messages, seed=seed)
        text = reply.choices[0].message.content
        texts.append(text)
        records.append((reply.model_extra or {}).get("trajforge"))
        messages.append({"role": "assistant", "content": text})
        parsed = parse_turn(text)
        turn = parsed.turns[0] if parsed.turns else None
        if turn is not None and turn.answer is not None and not parsed.errors:
            return {"answer": turn.answer, "texts": texts, "trajforge": records, "turns": len(texts)}
        if turn is None or parsed.errors or turn.tool_name not in tools:
            obs_text, images = f"Error: could not parse the tool call ({parsed.errors})", []
        else:
            obs = await tools[turn.tool_name].run(turn.arguments or {}, ctx)
            obs_text = obs.text + (f"\nError: {obs.error}" if obs.error else "")
            images = obs.images
        content = [{"type": "text", "text": render_observation(obs_text)}]
        content += [{"type": "image_url", "image_url": {"url": data_uri(p)}} for p in images]
        messages.append({"role": "user", "content": content})
    return {"answer": None, "texts": texts, "trajforge": records, "turns": len(texts)}
