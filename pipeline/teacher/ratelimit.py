"""What an endpoint says of its request limit in its response headers, read robustly.

Endpoints that limit requests mostly say so on every response, so the pacer can start at the
limit instead of finding it by 429s. The shapes met in practice:

- OpenAI (and servers copying it: Together, Fireworks, LiteLLM, gateways in front of vLLM):
  `x-ratelimit-limit-requests: 5000`, `x-ratelimit-remaining-requests: 4999`,
  `x-ratelimit-reset-requests: 12ms` -- the reset is a Go-style duration (`1s`, `6m0s`,
  `8.64s`, `12ms`) until the limit is back to its initial state, i.e. a token bucket refilling
  continuously, so the refill rate is (limit - remaining) / reset (5000 per minute: 1 / 12 ms);
- the common `x-ratelimit-limit` / `-remaining` / `-reset` (OpenRouter, many REST APIs) and the
  IETF draft's `ratelimit-limit` / `-remaining` / `-reset`, whose reset may be seconds to wait,
  a Unix time in seconds or milliseconds, an HTTP date or an ISO-8601 time; a limit may name its
  window (`100;window=60`, `100;w=60`, the draft's policy form), which gives the rate outright.

Anything unreadable counts as absent: a header a server gets wrong never stops a run.
"""

from __future__ import annotations

import email.utils
import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

_PREFIXES = ("x-ratelimit-{}-requests", "x-ratelimit-{}", "ratelimit-{}")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|us|µs|ns|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_WINDOW = re.compile(r";\s*(?:window|w)\s*=\s*(\d+(?:\.\d+)?)")


@dataclass(frozen=True)
class RequestLimit:
    """One response's view of the request limit; any field the endpoint did not say is None."""

    limit: float | None = None
    remaining: float | None = None
    reset_s: float | None = None  # seconds until the limit is back to full
    window_s: float | None = None  # the limit's window, where the endpoint names it

    def rate(self) -> float | None:
        """Requests per second the endpoint admits, where these headers say it.

        A named window gives limit / window; otherwise a token bucket's refill rate, (limit -
        remaining) / reset, as OpenAI's headers mean it. None while nothing has been used (a
        full bucket says nothing of its refill) or a field is missing.
        """
        if self.limit and self.window_s:
            return self.limit / self.window_s
        if self.limit is None or self.remaining is None or not self.reset_s:
            return None
        used = self.limit - self.remaining
        return used / self.reset_s if used >= 1 else None

    def spare(self) -> float | None:
        """The share of the limit still unused (remaining / limit), where both are stated."""
        if not self.limit or self.remaining is None:
            return None
        return min(1.0, self.remaining / self.limit)


def request_limit(headers: Any, now: float | None = None) -> RequestLimit | None:
    """The request limit these headers state (any mapping with case-insensitive `get`), or None."""
    for prefix in _PREFIXES:
        raw_limit = headers.get(prefix.format("limit"))
        raw_remaining = headers.get(prefix.format("remaining"))
        if raw_limit is None and raw_remaining is None:
            continue
        limit, window = _limit(raw_limit)
        found = RequestLimit(
            limit=limit,
            remaining=_number(raw_remaining),
            reset_s=reset_seconds(headers.get(prefix.format("reset")), now),
            window_s=window,
        )
        return found if found.limit is not None or found.remaining is not None else None
    return None


def _limit(value: str | None) -> tuple[float | None, float | None]:
    """`100`, `100;window=60` or `100, 100;window=60, 10000;window=86400` (the first number is
    the binding limit; its window is that of the policy with the same quota)."""
    if value is None:
        return None, None
    parts = [part.split(";")[0] for part in value.split(",")]
    windows = [_WINDOW.search(part) for part in value.split(",")]
    limit = _number(parts[0])
    named = [(_number(q), float(w.group(1))) for q, w in zip(parts, windows, strict=True) if w]
    window = next((w for q, w in named if q == limit), named[0][1] if named else None)
    return limit, window or None


def _number(value: str | None) -> float | None:
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        return None
    return number if number >= 0 and number == number and number != float("inf") else None


def reset_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds until a reset: a duration (`1s`, `6m0s`, `12ms`), seconds to wait, a Unix time
    (seconds or milliseconds), an HTTP date or an ISO-8601 time; None if unreadable."""
    if value is None:
        return None
    text, now = str(value).strip(), time.time() if now is None else now
    if (number := _number(text)) is not None:
        if number > 1e12:  # Unix time in milliseconds
            return max(0.0, number / 1000.0 - now)
        if number > 1e9:  # Unix time in seconds
            return max(0.0, number - now)
        return number
    parts = _DURATION.findall(text)
    if parts and "".join(f"{n}{u}" for n, u in parts) == text:
        return sum(float(n) * _UNITS[u] for n, u in parts)
    return _date_seconds(text, now)


def _date_seconds(text: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if when.tzinfo is None:
        return None  # a local time of unknown zone: no honest reading
    return max(0.0, when.timestamp() - now)
