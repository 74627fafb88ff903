"""Thyme SFT rows: code written inside the thinking, run in a sandbox, results inline.

Layout, from yfzhang114/Thyme `README.md` (sections 2 and 3.1, and its worked example): one JSON
object per row, `{"image": [original, processed, ...], "question": "<image>\\n...", "response":
"<think>... <code>```python ...```</code> <sandbox_output>...</sandbox_output> ...</think>
<answer>...</answer>"}`. The thinking stays open around each `<code>` block; each block is a call
of `code`, its `<sandbox_output>` the observation, and the text after it the next turn's thinking.
`image[0]` is the question's image; the processed images follow in order: each `<image>` in a
sandbox output takes the next, and a code step whose output names no image takes the next one left
(Thyme prints the saved path, and the image list holds what was saved).
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.format import IMAGE_MARKER
from stages.synth.imports.base import (
    Context,
    ImportRecord,
    ImportTurn,
    LineError,
    code_turn,
    gold_of,
    read_turn,
    rollout_of,
    take_placeholders,
)

NAME = "thyme"
TOOLS: dict[str, tuple[str, dict[str, str]]] = {}
_OUTPUT = re.compile(r"<sandbox_output>(.*?)(?:</sandbox_output>|$)", re.DOTALL)


def read(record: dict[str, Any], ctx: Context) -> ImportRecord:
    question = record.get("question")
    response = record.get("response")
    if isinstance(response, dict):
        response = response.get("full_response") or response.get("content")
    if not isinstance(question, str) or not question.strip():
        raise LineError("missing 'question'")
    if not isinstance(response, str) or not response.strip():
        raise LineError("missing 'response'")
    images = record.get("image", record.get("images")) or []
    queue = list(images if isinstance(images, list) else [images])
    _, task_images = take_placeholders(question, queue, ctx.images, "question")
    if not task_images and queue:
        task_images = [ctx.images.ref(queue.pop(0))]
    turns: list[ImportTurn] = []
    pos = 0
    for match in _OUTPUT.finditer(response):
        segment = response[pos : match.start()]
        pos = match.end()
        turn = code_turn(segment)
        if turn is None:
            raise LineError(f"a <sandbox_output> at char {match.start()} follows no <code> block")
        text, refs = take_placeholders(match.group(1).strip(), queue, ctx.images, "sandbox output")
        obs = ctx.images.observation(text)
        obs.images = refs + obs.images
        turns.append(ImportTurn(turn=turn, observation=obs))
    tail = response[pos:]
    final = code_turn(tail) or read_turn(tail if "<think>" in tail or not turns else "<think>" + tail)
    turns.append(ImportTurn(turn=final))
    for item in turns:  # code steps that showed no image take the processed images left, in order
        if queue and item.observation is not None and not item.observation.images:
            item.observation.images.append(ctx.images.ref(queue.pop(0)))
            item.observation.text += IMAGE_MARKER
    if queue:
        raise LineError(f"{len(queue)} images left over after every code step took its own")
    for item in turns:
        ctx.tools.apply(item.turn)
    gold, aliases = gold_of(record)
    return ImportRecord(
        question=question.replace(IMAGE_MARKER, "").strip(),
        turns=turns,
        images=task_images,
        gold=gold,
        aliases=aliases,
        source_id=str(record.get("id", "")),
        rollout=rollout_of(record),
        mode="general",
        category="perception",
    )
