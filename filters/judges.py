"""LLM/VLM judges behind the checks: one protocol, four prompts, replies parsed tolerantly.

Protocol (the offline world's oracle answers the same): the system message is
`prompts/judge_<kind>.v1.txt`; the user message carries one JSON object in a ```json fence
(answer: question, gold_answer, aliases, predicted; step: question, tool_name, arguments,
observation_text, next_thought; image: question, next_thought, plus the image as an `image_url`
data URI item; final: question, last_thought, answer). The judge replies
`{"verdict": "pass"|"fail", "reason": "..."}`. A reply that cannot be read, or a call that fails
for good, is a *fail* with the reason said (fail closed). Calls go through
`pipeline.teacher.TeacherClient`, whose replay cache makes a re-filter cost nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from prompts import load_prompt

JudgeKind = Literal["answer", "step", "image", "final"]
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_LOOSE = re.compile(r"""["']?verdict["']?\s*[:=]\s*["']?(pass|fail)""", re.IGNORECASE)
_MAX_TEXT = 6000  # characters of an observation sent to a judge


class ChatClient(Protocol):
    async def chat(self, messages: list[dict[str, Any]], **overrides: Any) -> Any: ...


@dataclass(frozen=True)
class JudgeResult:
    passed: bool
    reason: str


def parse_reply(text: str) -> JudgeResult:
    """Read a judge's verdict from JSON (bare, fenced, or inside prose); fail closed otherwise."""
    start, end = text.find("{"), text.rfind("}")
    candidates = [text.strip(), *(m.strip() for m in _FENCE.findall(text))]
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            verdict = str(data.get("verdict", "")).strip().lower()
            if verdict in ("pass", "fail"):
                return JudgeResult(verdict == "pass", str(data.get("reason", "")).strip()[:300])
    match = _LOOSE.search(text)
    if match:
        return JudgeResult(match.group(1).lower() == "pass", "verdict read from a malformed reply")
    return JudgeResult(False, f"judge reply unreadable: {text.strip()[:80]!r}")


def clip(text: str | None, limit: int = _MAX_TEXT) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + " [...]"


class Judge:
    """Asks one judge model; counts what it did (calls, fails, unreadable replies, errors)."""

    def __init__(self, client: ChatClient, *, image_uri: Any = None, version: str | None = None):
        self.client = client
        self.image_uri = image_uri  # ref -> data URI (CPU work; run in a thread)
        self.version = version
        self.stats: Counter[str] = Counter()

    async def aclose(self) -> None:
        close = getattr(self.client, "aclose", None)
        if close is not None:
            await close()

    def system(self, kind: JudgeKind) -> str:
        return load_prompt(f"judge_{kind}", self.version).text

    def messages(
        self, kind: JudgeKind, payload: dict[str, Any], image_uri: str | None = None
    ) -> list[dict[str, Any]]:
        text = "```json\n" + json.dumps(payload, ensure_ascii=False, sort_keys=True) + "\n```"
        user: Any = text
        if image_uri is not None:
            user = [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": image_uri}}]
        return [{"role": "system", "content": self.system(kind)}, {"role": "user", "content": user}]

    async def ask(
        self, kind: JudgeKind, payload: dict[str, Any], image_ref: str | None = None
    ) -> JudgeResult:
        self.stats[f"{kind}_calls"] += 1
        uri = None
        if image_ref is not None:
            if self.image_uri is None:
                return JudgeResult(False, "image judge has no image store to read from")
            try:
                uri = await asyncio.to_thread(self.image_uri, image_ref)
            except Exception as exc:  # an unreadable image is that step's problem, not the run's
                self.stats["errors"] += 1
                return JudgeResult(False, f"image unreadable for the judge: {exc}")
        try:
            reply = await self.client.chat(self.messages(kind, payload, uri), temperature=0.0)
        except Exception as exc:  # TeacherError after retries, or a refused request
            self.stats["errors"] += 1
            return JudgeResult(False, f"judge call failed: {type(exc).__name__}: {str(exc)[:120]}")
        result = parse_reply(getattr(reply, "text", str(reply)))
        if result.reason.startswith("judge reply unreadable"):
            self.stats["unreadable"] += 1
        self.stats[f"{kind}_{'pass' if result.passed else 'fail'}"] += 1
        return result


def build_judge(
    mode: Literal["teacher", "custom"],
    teacher_cfg: Any,
    filter_cfg: Any,
    *,
    cache_dir: Path,
    store: Any = None,
    base_url: str | None = None,
) -> Judge:
    """A Judge over `pipeline.teacher.TeacherClient`: the run's teacher or a custom endpoint."""
    from pipeline.chat import ImageEncoder
    from pipeline.teacher import TeacherClient

    if mode == "custom":
        if not filter_cfg.judge_base_url:
            raise ValueError("--judge custom needs filter.judge_base_url (an OpenAI-compatible /v1 URL)")
        cfg = teacher_cfg.model_copy(
            update={
                "base_url": filter_cfg.judge_base_url,
                "model": filter_cfg.judge_model or teacher_cfg.model,
                "api_key_env": filter_cfg.judge_key_env,
            }
        )
    else:
        cfg = teacher_cfg
    cfg = cfg.model_copy(update={"temperature": 0.0, "max_tokens": min(cfg.max_tokens, 512)})
    client = TeacherClient(cfg, cache_dir=cache_dir, base_url=base_url or cfg.base_url)
    encoder = ImageEncoder(store.images if store is not None else None, cfg.image_max_pixels)
    return Judge(client, image_uri=encoder.data_uri)
