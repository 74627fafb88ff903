"""Thread work its caller waits out, even when cancelled.

A thread cannot be stopped: work handed to one (a shard being written, files being moved into
a sandbox worker's folders) goes on after the coroutine that awaited it is cancelled. Where the
caller holds something the work uses (a write lock, a worker), releasing it then would let the
next holder meet the thread still at work; so the caller waits for the thread to finish, then
lets the cancellation through.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

T = TypeVar("T")


async def wait_through_cancel(work: asyncio.Future[T]) -> T:
    """`work`'s result; if the caller is cancelled meanwhile, once `work` is done, re-raised."""
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise
