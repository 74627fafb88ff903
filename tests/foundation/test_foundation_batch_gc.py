"""Collection per batch: automatic collection paused, cycles still freed batch by batch."""

from __future__ import annotations

import gc
import weakref

from pipeline.batch_gc import collect_per_batch


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_cycles_are_freed_per_batch_and_the_collector_state_comes_back() -> None:
    was = gc.isenabled()
    gc.enable()
    try:
        with collect_per_batch() as collect:
            assert not gc.isenabled()
            ref = weakref.ref(_Node())
            assert ref() is not None  # paused: nothing collects it on its own
            assert collect() >= 1 and ref() is None
        assert gc.isenabled()
        gc.disable()
        with collect_per_batch():
            pass
        assert not gc.isenabled()  # a caller that had it off keeps it off
    finally:
        (gc.enable if was else gc.disable)()
