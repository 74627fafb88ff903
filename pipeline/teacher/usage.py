"""Token estimates for replies that came without `usage` (some proxies, some streamed servers).

A reply without usage used to count as 0 tokens, silently: token totals, the token budget and
the context limit were all wrong. Such a reply is now counted and estimated, tokenizer-free,
and marked (`TeacherReply.tokens_estimated`, `Step.tokens_estimated`) so no figure passes an
estimate off as a measurement:
- text: 4 characters a token (the common rule of thumb for English BPE vocabularies; CJK text
  runs nearer 1-2 characters a token, so it is underestimated there);
- an image: what a Qwen-VL-style vision encoder spends on the largest image the client sends
  (`teacher.image_max_pixels` / (28 x 28) tokens), an upper bound for smaller images.
"""

from __future__ import annotations

from typing import Any

CHARS_PER_TOKEN = 4
PIXELS_PER_IMAGE_TOKEN = 28 * 28


def text_tokens(text: str) -> int:
    return (len(text) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def prompt_tokens(request: dict[str, Any], image_max_pixels: int) -> int:
    """Estimated prompt tokens of a chat request: its texts, images and tool schemas."""
    chars, images = 0, 0
    for message in request.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        for part in content if isinstance(content, list) else []:
            if isinstance(part, dict) and part.get("type") == "image_url":
                images += 1
            elif isinstance(part, dict):
                chars += len(str(part.get("text") or ""))
        for call in (message.get("tool_calls") or []) if isinstance(message, dict) else []:
            chars += len(str(call))
    chars += len(str(request.get("tools") or ""))
    per_image = max(1, image_max_pixels // PIXELS_PER_IMAGE_TOKEN)
    return text_tokens(" " * chars) + images * per_image


def completion_tokens(text: str, reasoning: str, tool_calls: list[dict[str, Any]]) -> int:
    """Estimated completion tokens of a reply: content, reasoning and call arguments."""
    calls = "".join(str(c.get("name", "")) + str(c.get("arguments", "")) for c in tool_calls)
    return text_tokens(text + reasoning + calls)
