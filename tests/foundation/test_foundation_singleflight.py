"""SingleFlight (coroutines) and ThreadSingleFlight: one run of the work per key in the air."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from pipeline.singleflight import SingleFlight, ThreadSingleFlight


def test_concurrent_callers_share_one_run_and_a_cancelled_one_leaves_it_running():
    runs, settled = [], []

    async def work(key: str) -> str:
        runs.append(key)
        await asyncio.sleep(0.05)
        return key.upper()

    async def main():
        flights = SingleFlight(lambda key, done: settled.append((key, done.result())))
        quitter = asyncio.ensure_future(flights.run("a", lambda: work("a")))
        others = [flights.run("a", lambda: work("a")) for _ in range(3)]
        await asyncio.sleep(0.01)
        quitter.cancel()
        results = await asyncio.gather(*others)
        assert len(flights) == 0
        return results

    assert asyncio.run(main()) == ["A", "A", "A"]
    assert runs == ["a"] and settled == [("a", "A")]


def test_a_failure_reaches_every_waiter_and_the_next_call_tries_again():
    attempts = []

    async def flaky() -> int:
        attempts.append(1)
        await asyncio.sleep(0.01)
        if len(attempts) == 1:
            raise RuntimeError("first try fails")
        return 7

    async def main():
        flights: SingleFlight[str, int] = SingleFlight()
        first = await asyncio.gather(*(flights.run("k", flaky) for _ in range(2)), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in first)
        return await flights.run("k", flaky)

    assert asyncio.run(main()) == 7 and len(attempts) == 2


def test_wait_all_returns_when_every_flight_landed():
    async def main():
        flights: SingleFlight[int, int] = SingleFlight()
        for i in range(3):
            flights.join(i, lambda i=i: asyncio.sleep(0.01 * i, result=i))
        await flights.wait_all()
        return len(flights)

    assert asyncio.run(main()) == 0


def test_join_says_who_started():
    async def main():
        flights: SingleFlight[str, None] = SingleFlight()
        _, first = flights.join("x", lambda: asyncio.sleep(0.01))
        _, second = flights.join("x", lambda: asyncio.sleep(0.01))
        await flights.wait_all()
        return first, second

    assert asyncio.run(main()) == (True, False)


def test_threads_share_one_run_and_settle_sees_it_before_it_leaves_the_table():
    """The world's oracle checks one image for K server threads at once: one run, one result,
    and the owner remembers it while the flight is still in the table (no gap for a rerun)."""
    runs, seen_in_table = [], []
    started = threading.Event()
    release = threading.Event()

    def work() -> str:
        runs.append(1)
        started.set()
        release.wait(5)
        return "checked"

    flights: ThreadSingleFlight[str, str] = ThreadSingleFlight(
        lambda key, done: seen_in_table.append((key, done.result(), len(flights)))
    )
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(flights.run, "img", work)
        started.wait(5)
        others = [pool.submit(flights.run, "img", work) for _ in range(3)]
        time.sleep(0.3)  # they join the flight in the air
        release.set()
        results = [first.result(5)] + [f.result(5) for f in others]
    assert results == ["checked"] * 4 and len(runs) == 1
    assert seen_in_table == [("img", "checked", 1)] and len(flights) == 0


def test_threads_all_see_a_failure_and_the_next_call_tries_again():
    attempts = []
    release = threading.Event()

    def flaky() -> int:
        attempts.append(1)
        if len(attempts) == 1:
            release.wait(5)
            raise RuntimeError("first try fails")
        return 7

    flights: ThreadSingleFlight[str, int] = ThreadSingleFlight()
    with ThreadPoolExecutor(3) as pool:
        calls = [pool.submit(flights.run, "k", flaky) for _ in range(3)]
        while len(attempts) < 1:
            time.sleep(0.001)
        time.sleep(0.3)  # the two others join the flight in the air
        release.set()
        failures = [c.exception(5) for c in calls]
    assert all(isinstance(f, RuntimeError) for f in failures) and len(attempts) == 1
    assert flights.run("k", flaky) == 7 and len(attempts) == 2
