"""Single flight: concurrent requests for one key share one run of the work.

The K rollouts of a task ask for the same search, the same encoded image and the same staged
copy at once; each of those places keeps a table of work in the air and lets latecomers join it.
The work belongs to no caller: one cancelled while waiting (it awaits through `asyncio.shield`)
leaves it running for the others. When a flight lands it leaves the table, then the owner's
`settle` callback sees it (to remember a result, count it, or let a failure be tried again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """A table of work in the air, by key."""

    def __init__(self, settle: Callable[[K, asyncio.Future[V]], None] | None = None) -> None:
        self._settle = settle
        self._flights: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._flights)

    def join(self, key: K, start: Callable[[], Awaitable[V]]) -> tuple[asyncio.Future[V], bool]:
        """The flight for `key`: the one in the air, else a new one from `start()`; and whether
        this call started it."""
        flight = self._flights.get(key)
        if flight is not None:
            return flight, False
        flight = asyncio.ensure_future(start())
        self._flights[key] = flight
        flight.add_done_callback(lambda done, key=key: self._land(key, done))
        return flight, True

    async def run(self, key: K, start: Callable[[], Awaitable[V]]) -> V:
        """Join (or start) the flight for `key` and wait for it without owning it."""
        flight, _ = self.join(key, start)
        return await asyncio.shield(flight)

    async def wait_all(self) -> None:
        """Wait for every flight in the air (failures included, not raised)."""
        await asyncio.gather(*self._flights.values(), return_exceptions=True)

    def _land(self, key: K, done: asyncio.Future[V]) -> None:
        if self._flights.get(key) is done:
            del self._flights[key]
        if not done.cancelled():
            done.exception()  # retrieved: a failure nobody waits for any more is not "never retrieved"
        if self._settle is not None:
            self._settle(key, done)
