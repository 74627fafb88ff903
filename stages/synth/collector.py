"""The synth worker's garbage-collector policy: what keeps full collections from stopping every
trajectory in flight.

A worker at a thousand trajectories in flight holds some 250 objects for each, on top of its
start-up state (modules, search indexes, clients: ~160K objects). CPython's full collection
walks all of them with the event loop stopped (0.2-0.5 s measured at 1,000-2,000 in flight) and
finds next to nothing: the worker's own code leaves no reference cycles (`python
bench/bench_synth.py --only cycles`), so reference counting frees what dies. The policy:

- start-up state is frozen once built (`gc.freeze`: out of every collection's reach);
- every `freeze_s` a young collection, then a freeze: a full collection walks only what
  survived since the last freeze (a few seconds' worth), not every trajectory in flight;
- full collections run a tenth as often as the interpreter's default;
- frozen objects are still freed by reference counting; only a cycle that dies frozen stays.
  A thaw (unfreeze, one full collection, freeze again) frees those once the frozen count passes
  room for every slot's objects twice over: one full pause, logged and counted, as rare as the
  cycles are (a closed socket's transport is one; none per trajectory in the offline world);
- at close, what the worker froze goes back to the collector.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import dataclass

log = logging.getLogger("trajforge.synth")

#: Young (generation 1) collections per full one while a worker runs: the interpreter's default
#: is 10, which at a thousand trajectories in flight meant a full collection every 15 s or so.
FULL_COLLECTION_EVERY = 100

#: Frozen objects allowed per trajectory slot before a thaw: a trajectory in flight holds ~250
#: objects (measured at 1,000 in flight), so twice that fits everything live with room to spare;
#: what is frozen beyond it can only be cycles that died frozen.
OBJECTS_PER_SLOT = 600

#: Freezes between two counts of the frozen objects (the thaw check): `gc.get_freeze_count()`
#: walks the whole frozen list, 40 ms or more for ~220K objects on a loaded machine (the bench's
#: watchdog caught it at 1,000 in flight), so it runs once every 5 minutes at the default period.
CHECK_EVERY = 60


@dataclass
class CollectorStats:
    freezes: int = 0
    thaws: int = 0
    thawed_cycles: int = 0  # unreachable objects the thaws' full collections freed


class WorkerCollector:
    """One worker's collector policy (see the module docstring); one per process at a time."""

    def __init__(self, *, freeze_s: float, slots: int, check_every: int = CHECK_EVERY) -> None:
        """`freeze_s`: seconds between freezes of recent survivors (0: freeze start-up state
        only); `slots`: the worker's trajectories in flight, which sets the thaw ceiling;
        `check_every`: freezes between two thaw checks."""
        self.freeze_s = freeze_s
        self.slots = max(1, slots)
        self.check_every = max(1, check_every)
        self.stats = CollectorStats()
        self._thresholds: tuple[int, int, int] | None = None  # the process's, while raised
        self._ceiling = 0

    @property
    def started(self) -> bool:
        return self._thresholds is not None

    def freeze_start_up(self, *, first: bool) -> None:
        """Freeze what a tool build made. The first build collects first (nothing is in flight
        yet, so only live objects are frozen) and raises the full-collection threshold; a later
        mode's build freezes without a collection, which would itself be a full pause."""
        if first:
            gc.collect()
        gc.freeze()
        if first and self._thresholds is None:
            before = gc.get_threshold()
            gc.set_threshold(before[0], before[1], max(before[2], FULL_COLLECTION_EVERY))
            self._thresholds = before
        self._set_ceiling()

    async def run(self) -> None:
        """Freeze recent survivors every `freeze_s` until cancelled."""
        if self.freeze_s <= 0:
            return
        while True:
            await asyncio.sleep(self.freeze_s)
            if self.started:
                self.freeze_recent()

    def freeze_recent(self) -> None:
        """A young collection (young cycles die here, never frozen), then a freeze; every
        `check_every` freezes, a thaw if the frozen count passed the ceiling."""
        gc.collect(1)
        gc.freeze()
        self.stats.freezes += 1
        if self.stats.freezes % self.check_every == 0 and gc.get_freeze_count() > self._ceiling:
            self.thaw(reason="the frozen objects passed room for every slot twice over")

    def thaw(self, *, reason: str) -> int:
        """Unfreeze, collect everything, freeze the survivors again; returns the objects freed."""
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self.stats.thaws += 1
        self.stats.thawed_cycles += found
        self._set_ceiling()
        log.info("garbage collector thawed (%s): %d objects in dead reference cycles freed", reason, found)
        return found

    def close(self) -> None:
        """Give the process its thresholds back and everything frozen back to the collector
        without collecting (a full pause the probe of a run saw as its longest): a worker in a
        longer-lived process (a notebook, a test) leaves nothing frozen behind, and the
        process's next full collection frees its cycles."""
        if self._thresholds is None:
            return
        gc.set_threshold(*self._thresholds)
        self._thresholds = None
        gc.unfreeze()

    def _set_ceiling(self) -> None:
        frozen = gc.get_freeze_count()
        self._ceiling = frozen + max(frozen, OBJECTS_PER_SLOT * self.slots)
