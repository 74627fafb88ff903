"""Single flight: concurrent requests for one key share one run of the work.

The K rollouts of a task ask for the same search, the same encoded image and the same staged
copy at once (coroutines on one event loop: `SingleFlight`), and the world's oracle is asked the
same image check by several server threads at once (`ThreadSingleFlight`); each of those places
keeps a table of work in the air and lets latecomers join it. Both share one table: when a flight
lands the owner's `settle` callback sees it first (to remember a result, count it, or let a
failure be tried again), then it leaves the table, so a caller that misses the table finds what
`settle` remembered instead of starting the work again.

An async flight belongs to no caller: one cancelled while waiting (it awaits through
`asyncio.shield`) leaves it running for the others. A thread flight runs in the thread that
started it; the others block until it lands and get its result or its exception.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
F = TypeVar("F", bound="asyncio.Future[Any] | Future[Any]")


class _Table(Generic[K, F]):
    """Flights in the air by key, and how one lands (thread-safe, as threads need)."""

    def __init__(self, settle: Callable[[K, F], None] | None = None) -> None:
        self._settle = settle
        self._flights: dict[K, F] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._flights)

    def _enter(self, key: K, new: Callable[[], F]) -> tuple[F, bool]:
        """The flight in the air for `key`, else a new one from `new()`; and whether it is new."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = new()
        flight.add_done_callback(lambda done, key=key: self._land(key, done))
        return flight, True

    def _land(self, key: K, done: F) -> None:
        try:
            if not done.cancelled():
                done.exception()  # retrieved: a failure nobody waits for any more is not "never retrieved"
            if self._settle is not None:
                self._settle(key, done)
        finally:
            with self._lock:
                if self._flights.get(key) is done:
                    del self._flights[key]


class SingleFlight(_Table[K, asyncio.Future[V]]):
    """A table of coroutine work in the air, by key (one event loop)."""

    def join(self, key: K, start: Callable[[], Awaitable[V]]) -> tuple[asyncio.Future[V], bool]:
        """The flight for `key`: the one in the air, else a new one from `start()`; and whether
        this call started it."""
        return self._enter(key, lambda: asyncio.ensure_future(start()))

    async def run(self, key: K, start: Callable[[], Awaitable[V]]) -> V:
        """Join (or start) the flight for `key` and wait for it without owning it."""
        flight, _ = self.join(key, start)
        return await asyncio.shield(flight)

    async def wait_all(self) -> None:
        """Wait for every flight in the air (failures included, not raised)."""
        await asyncio.gather(*self._flights.values(), return_exceptions=True)


class ThreadSingleFlight(_Table[K, Future[V]]):
    """A table of blocking work in the air, by key, shared by threads."""

    def run(self, key: K, work: Callable[[], V]) -> V:
        """`work()` run once for the callers that ask for `key` while it runs; each gets its
        result (or its exception)."""
        flight, mine = self._enter(key, Future)
        if mine:
            try:
                flight.set_result(work())
            except BaseException as exc:  # every waiter sees it, the caller too (below)
                flight.set_exception(exc)
        return flight.result()
