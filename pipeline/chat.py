"""Trajectory -> chat messages: the one place that lays a trajectory out as a conversation.

SFT formatting, the teacher's executor context and the exports all start from these messages
(HF multimodal style: `{"role", "content": [{"type": "image" | "text", ...}]}`), so the student
trains on exactly the layout it later sees at inference. Assistant turns carry the R1V4 text
(`pipeline.format` renders it); tool results are either R1V4's `<observation>` inside a user turn
(`observation_role="user"`, the default) or the chat template's native tool role
(`observation_role="tool"`): one config choice, the same at training and at inference.
"""

from __future__ import annotations

import asyncio
import collections
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pipeline.format import IMAGE_MARKER, render_observation, render_turn
from pipeline.images import encode_png, fit_pixels, read_image, to_data_uri
from pipeline.schema import Step, Trajectory
from pipeline.singleflight import SingleFlight
from pipeline.store import ImageStore

ObservationRole = Literal["user", "tool"]
#: How tool calls travel to the teacher: R1V4 text in the content, or native function calls.
ToolProtocol = Literal["text", "native"]
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


def assistant_message(step: Step, protocol: ToolProtocol = "text") -> Message:
    """A step as the teacher sees it in the history: always rendered from its parsed parts.

    `text`: the canonical R1V4 turn. `native`: a tool call goes back as the server's own
    `tool_calls` entry (with its id, so the tool result can name it) and the think as content.
    Unreadable steps keep their raw text (the re-ask that follows says what was wrong).
    """
    if protocol == "native" and step.action == "tool_call" and step.tool_name:
        call = {
            "id": step.call_id or f"call_{step.index}",
            "type": "function",
            "function": {"name": step.tool_name, "arguments": step.arguments or "{}"},
        }
        text = step.think or ""
        return {
            "role": "assistant",
            "content": [{"type": "text", "text": text}] if text else [],
            "tool_calls": [call],
        }
    return {"role": "assistant", "content": [{"type": "text", "text": step_text(step)}]}


def observation_message(step: Step, role: ObservationRole = "user") -> Message:
    """The message that carries a step's tool result (text with its images in place).

    With a native call id on the step, the tool message names it (`tool_call_id`), as OpenAI
    requires of every tool result.
    """
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
    message: Message = {"role": "tool", "content": _merge_text(_interleave(text, step.observation_images))}
    if step.call_id:
        message["tool_call_id"] = step.call_id
    return message


def _merge_text(content: list[dict[str, Any]]) -> list[dict[str, Any]]:
    merged: list[dict[str, Any]] = []
    for item in content:
        if item["type"] == "text" and merged and merged[-1]["type"] == "text":
            merged[-1] = {"type": "text", "text": merged[-1]["text"] + item["text"]}
        elif item["type"] != "text" or item["text"]:
            merged.append(item)
    return merged


def image_names(count: int) -> list[str]:
    """Names the model uses for the task's input images (the tools resolve the same names)."""
    return [f"image_{i}.png" for i in range(count)]


def question_text(question: str, image_count: int) -> str:
    """The first user turn's text: the question verbatim, then the names of its images.

    One owner for training text and inference prompts (executor, planner, eval): thinking and
    tool calls name `image_0.png`, so the student must see those names where it saw them in SFT.
    """
    if not image_count:
        return question
    return f"{question}\n\nImages: {', '.join(image_names(image_count))}"


_IMAGE_NAMES_TAIL = re.compile(r"\n\nImages: image_\d+\.png(?:, image_\d+\.png)*\s*$")


def question_from_text(text: str) -> str:
    """The question in a first user turn that `question_text` wrote (its image names dropped)."""
    return _IMAGE_NAMES_TAIL.sub("", text)


def prompt_messages(
    system_prompt: str, question: str, images: list[str], plan: str | None = None
) -> list[Message]:
    """System + the first user turn, built here and only here: the task images, then the
    question verbatim with the images' names and, for an executor that was given one, the plan."""
    text = question_text(question, len(images))
    if plan:
        text = f"{text}\n\nPlan:\n{plan}"
    user = [{"type": "image", "image": ref} for ref in images] + [{"type": "text", "text": text}]
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


# ------------------------------------------------------------------ teacher wire format and images


class UriCache:
    """Data URIs shared by every trajectory of one worker, bounded by size (least recently used out).

    The rollouts of a task send the same input images (and often the same crops), so a worker
    encodes each image once, not once per rollout. Keys are content-addressed image-store refs
    (plus the encoding settings), so an entry can never go stale. Concurrent first uses of one
    image wait for a single encoding instead of each doing it.
    """

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = max_bytes
        self.bytes = 0
        # every encoding by an encoder sharing this cache (the planner's too), from any thread
        self.encoded = 0
        self.encode_cpu_s = 0.0
        self._count_lock = threading.Lock()
        self._uris: collections.OrderedDict[tuple[Any, ...], str] = collections.OrderedDict()
        self._flights: SingleFlight[tuple[Any, ...], str] = SingleFlight(self._settle)

    def get(self, key: tuple[Any, ...]) -> str | None:
        uri = self._uris.get(key)
        if uri is not None:
            self._uris.move_to_end(key)
        return uri

    def count(self, cpu_s: float) -> None:
        """One encoding done (by whichever encoder), for the run's CPU accounting."""
        with self._count_lock:
            self.encoded += 1
            self.encode_cpu_s += cpu_s

    def put(self, key: tuple[Any, ...], uri: str) -> None:
        if key in self._uris or len(uri) > self.max_bytes:
            return
        self._uris[key] = uri
        self.bytes += len(uri)
        while self.bytes > self.max_bytes:
            _, old = self._uris.popitem(last=False)
            self.bytes -= len(old)

    async def get_or_encode(self, key: tuple[Any, ...], encode: Callable[[], str]) -> str:
        """The cached URI, or `encode()` run once in a worker thread (concurrent callers share it).

        The encoding is not tied to the first caller: if that caller is cancelled, the others
        still get the result.
        """
        if (uri := self.get(key)) is not None:
            return uri
        return await self._flights.run(key, lambda: asyncio.get_running_loop().run_in_executor(None, encode))

    def _settle(self, key: tuple[Any, ...], future: asyncio.Future[str]) -> None:
        if not future.cancelled() and future.exception() is None:
            self.put(key, future.result())


class ImageEncoder:
    """Image ref -> `data:` URI for the teacher: downscaled to the pixel budget, encoded once.

    One encoder per trajectory memoises every image it sent, so a long trajectory re-sends the
    same string instead of re-encoding; with a worker's `UriCache` (`shared`), image-store refs
    are encoded once per worker across trajectories. RGB images go as JPEG (quality 90), others
    as PNG. Refs are run image-store refs (sha256 hex) or file paths.
    """

    def __init__(
        self,
        store: ImageStore | None,
        max_pixels: int,
        *,
        jpeg_quality: int = 90,
        shared: UriCache | None = None,
    ):
        self.store, self.max_pixels, self.jpeg_quality = store, max_pixels, jpeg_quality
        self.shared = shared
        self._memo: dict[str, str] = {}
        self.encoded = 0  # by this encoder; the shared cache counts the worker's (and their CPU)

    def _in_store(self, ref: str) -> bool:
        path = Path(ref)
        return self.store is not None and not path.is_absolute() and not path.exists()

    def _open(self, ref: str):
        return self.store.open(ref) if self._in_store(ref) else read_image(Path(ref))  # type: ignore[union-attr]

    def _encode(self, ref: str) -> str:
        start = time.thread_time()
        image = self._open(ref)
        # Box-reduce by whole factors first (cheap), so the Lanczos pass in fit_pixels works on
        # at most ~4x the budget: same quality as Pillow's reducing_gap=2, far less CPU.
        factor = int((image.width * image.height / self.max_pixels) ** 0.5 / 2)
        if factor >= 2:
            image = image.reduce(factor)
        image = fit_pixels(image, self.max_pixels)
        if image.mode in ("RGB", "L"):
            import io

            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=self.jpeg_quality)
            uri = to_data_uri(buffer.getvalue(), "image/jpeg")
        else:
            uri = to_data_uri(encode_png(image), "image/png")
        self.encoded += 1
        if self.shared is not None:
            self.shared.count(time.thread_time() - start)
        return uri

    def data_uri(self, ref: str) -> str:
        """The (memoised) data URI of one image; CPU work, call it off the event loop."""
        if (uri := self._memo.get(ref)) is not None:
            return uri
        key = self._key(ref)
        if key is not None and self.shared is not None and (uri := self.shared.get(key)) is not None:
            self._memo[ref] = uri
            return uri
        uri = self._memo[ref] = self._encode(ref)
        if key is not None and self.shared is not None:
            self.shared.put(key, uri)
        return uri

    def _key(self, ref: str) -> tuple[Any, ...] | None:
        """Shared-cache key: only content-addressed store refs (a file path's bytes may change)."""
        return (ref, self.max_pixels, self.jpeg_quality) if self._in_store(ref) else None

    async def prepare(self, messages: list[Message]) -> None:
        """Encode (in worker threads) every image of `messages` this trajectory has not sent yet."""
        todo = [ref for ref in dict.fromkeys(image_refs(messages)) if ref not in self._memo]
        if not todo:
            return
        if self.shared is None:
            await asyncio.to_thread(lambda: [self.data_uri(ref) for ref in todo])
            return
        for ref in todo:
            key = self._key(ref)
            if key is None:
                await asyncio.to_thread(self.data_uri, ref)
            else:
                self._memo[ref] = await self.shared.get_or_encode(key, lambda ref=ref: self._encode(ref))


def image_refs(messages: list[Message]) -> list[str]:
    """Every image ref in `pipeline.chat` messages, in order."""
    refs: list[str] = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            refs.extend(item["image"] for item in content if item.get("type") == "image")
    return refs


def to_openai_messages(messages: list[Message], encode: Callable[[str], str]) -> list[dict[str, Any]]:
    """`pipeline.chat` messages -> OpenAI chat messages (images as `image_url` data URIs).

    Text-only content collapses to a plain string, the most widely accepted form. Native tool
    calls pass through (`tool_calls`, `tool_call_id`); a tool result's images follow it in a user
    message, since OpenAI accepts only text in `role: tool`.
    """
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message["role"]
        content = message.get("content")
        parts: list[dict[str, Any]] = []
        if isinstance(content, str):
            parts.append({"type": "text", "text": content})
        for item in content if isinstance(content, list) else []:
            if item.get("type") == "image":
                parts.append({"type": "image_url", "image_url": {"url": encode(item["image"])}})
            elif item.get("type") == "text":
                parts.append({"type": "text", "text": item["text"]})
        texts = "".join(part["text"] for part in parts if part["type"] == "text")
        images = [part for part in parts if part["type"] == "image_url"]
        if role == "tool":
            out.append({"role": "tool", "content": texts, **_pick(message, "tool_call_id")})
            if images:
                out.append({"role": "user", "content": images})
            continue
        wire: dict[str, Any] = {"role": role}
        if images:
            wire["content"] = parts
        elif message.get("tool_calls"):
            wire["content"] = texts or None
        else:
            wire["content"] = texts
        wire.update(_pick(message, "tool_calls"))
        out.append(wire)
    return out


def _pick(message: Message, key: str) -> dict[str, Any]:
    return {key: message[key]} if message.get(key) else {}
