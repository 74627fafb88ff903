"""The walk's LLM steps: one prompt per step (`prompts/walk_<step>.v<N>.txt`, the newest), a JSON payload as
the user message, the reply read by `pipeline.lenient` (the one owner of model-written JSON).

All calls go through `pipeline.teacher.TeacherClient` (replay cache, retries, rate limits).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pipeline.images import sniff_mime, to_data_uri
from pipeline.lenient import last_object
from pipeline.teacher import TeacherClient, TeacherError
from prompts import load_prompt


@dataclass
class Answer:
    """A step's reply: the JSON object, or why there is none (`unreadable` / `teacher_error`)."""

    value: dict[str, Any] | None
    failure: str = ""
    detail: str = ""


class WalkTeacher:
    def __init__(self, client: TeacherClient) -> None:
        self.client = client

    async def ask(self, step: str, payload: dict[str, Any], image: bytes | None = None) -> Answer:
        """Ask step `step` (mine, unique, hop, visual, check) about `payload` (+ one image)."""
        system = load_prompt(f"walk_{step}").render()
        text = json.dumps({"walk": step, **payload}, ensure_ascii=False)
        content: Any = text
        if image is not None:
            uri = to_data_uri(image, sniff_mime(image))
            content = [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": text}]
        messages = [{"role": "system", "content": system}, {"role": "user", "content": content}]
        try:
            reply = await self.client.chat(messages)
        except TeacherError as exc:
            return Answer(None, "teacher_error", str(exc))
        read = last_object(reply.text)
        if not read.ok or not isinstance(read.value, dict) or "error" in read.value:
            return Answer(None, "llm_unreadable", (read.error or str(read.value))[:200])
        return Answer(read.value)
