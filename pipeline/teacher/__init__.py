"""Talking to teacher and judge models: the one client and its parts.

- `client`: `TeacherClient` (transport, retries, accounting; the one place requests are sent);
- `reply`: decoding every reply shape (content, reasoning fields, native tool calls, refusals,
  truncation, streaming) into `TeacherReply`;
- `cache`: the replay cache keyed by the full request;
- `usage`: token estimates for replies sent without `usage` (marked estimated);
- `limits`: concurrency limit, request pacer, token budget.
Image encoding and message building live in `pipeline.chat`, the one owner of messages.
"""

from pipeline.teacher.cache import ReplayCache, request_key
from pipeline.teacher.client import PLACEHOLDER_KEY, TeacherClient, TeacherError, retry_after_s
from pipeline.teacher.limits import AdaptiveLimiter, AdaptivePacer, TokenBudget
from pipeline.teacher.reply import (
    MalformedReply,
    StreamAccumulator,
    TeacherReply,
    decode_completion,
    refusal_of,
)

__all__ = [
    "PLACEHOLDER_KEY",
    "AdaptiveLimiter",
    "AdaptivePacer",
    "MalformedReply",
    "ReplayCache",
    "StreamAccumulator",
    "TeacherClient",
    "TeacherError",
    "TeacherReply",
    "TokenBudget",
    "decode_completion",
    "refusal_of",
    "request_key",
    "retry_after_s",
]
