"""SingleFlight: one run of the work per key in the air, owned by no caller."""

from __future__ import annotations

import asyncio

from pipeline.singleflight import SingleFlight


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
