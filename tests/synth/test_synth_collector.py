"""The synth worker's collector policy against the real interpreter's collector: recent
survivors are frozen out of full collections, young cycles are never frozen, cycles that die
frozen are freed by a thaw once the frozen count passes the ceiling, and close hands
everything back."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from stages.synth.collector import FULL_COLLECTION_EVERY, WorkerCollector


class Node:
    """A container the collector tracks, and which a weak reference can watch."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> tuple[Node, weakref.ref[Node]]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a, weakref.ref(a)


def is_frozen(obj: object) -> bool:
    return not any(o is obj for o in gc.get_objects())


@pytest.fixture
def collector():
    gc.unfreeze()
    thresholds = gc.get_threshold()
    made: list[WorkerCollector] = []

    def make(**kw) -> WorkerCollector:
        made.append(WorkerCollector(**{"freeze_s": 0.01, "slots": 4, **kw}))
        return made[-1]

    try:
        yield make
    finally:
        for c in made:
            c.close()
        gc.unfreeze()
        gc.set_threshold(*thresholds)


def test_recent_survivors_are_frozen_and_young_cycles_are_freed_first(collector):
    policy = collector()
    policy.freeze_start_up(first=True)
    assert gc.get_threshold()[2] >= FULL_COLLECTION_EVERY
    survivor = Node()
    dead, watch = cycle()
    del dead
    assert watch() is not None  # a cycle: reference counting cannot free it
    policy.freeze_recent()
    assert watch() is None  # the young collection before the freeze found it
    assert is_frozen(survivor)  # out of every collection's reach, full ones included
    assert policy.stats.freezes == 1 and policy.stats.thaws == 0


def test_cycles_that_die_frozen_are_freed_by_a_thaw_past_the_ceiling(collector):
    policy = collector(slots=1, check_every=1)
    policy.freeze_start_up(first=True)
    kept, watch = cycle()
    policy.freeze_recent()  # frozen while alive
    del kept
    gc.collect()
    assert watch() is not None  # dead, but frozen: no collection reaches it
    ballast = [Node() for _ in range(gc.get_freeze_count() + 1_000)]  # past the ceiling
    policy.freeze_recent()
    assert watch() is None
    assert policy.stats.thaws == 1 and policy.stats.thawed_cycles >= 2
    assert is_frozen(ballast[0])  # the survivors are frozen again
    policy.freeze_recent()
    assert policy.stats.thaws == 1  # the ceiling moved up with them


def test_the_frozen_list_is_walked_only_every_check_every_freezes(collector, monkeypatch):
    """Counting the frozen objects walks all of them (tens of ms at a thousand in flight)."""
    policy = collector(check_every=3)
    policy.freeze_start_up(first=True)
    walks = []
    real = gc.get_freeze_count
    monkeypatch.setattr(gc, "get_freeze_count", lambda: walks.append(1) or real())
    for _ in range(7):
        policy.freeze_recent()
    assert len(walks) == 2 and policy.stats.freezes == 7


def test_close_hands_everything_back(collector):
    before = gc.get_threshold()
    policy = collector()
    policy.freeze_start_up(first=True)
    kept, watch = cycle()
    policy.freeze_recent()
    del kept
    policy.close()
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert watch() is None  # the process's next full collection frees what died frozen
    assert gc.get_threshold() == before


def test_the_freezer_runs_every_freeze_s_and_not_at_all_at_zero(collector):
    async def run(policy: WorkerCollector) -> None:
        task = asyncio.create_task(policy.run())
        for _ in range(500):  # each freeze walks this whole process: slow on a loaded machine
            await asyncio.sleep(0.01)
            if policy.stats.freezes >= 3 or task.done():
                break
        task.cancel()

    periodic = collector(freeze_s=0.01)
    periodic.freeze_start_up(first=True)
    asyncio.run(run(periodic))
    assert periodic.stats.freezes >= 3
    off = collector(freeze_s=0)
    asyncio.run(run(off))
    assert off.stats.freezes == 0
