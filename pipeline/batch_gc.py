"""Garbage collection at batch boundaries for stages that stream many small records.

CPython's automatic collector runs a full collection whenever enough objects have survived the
younger generations, and each full collection walks every live container: with thousands of
verdict rows and candidates held across a filter run, those walks took a third of the rules-only
CPU time (measured: 21.6 -> 13.5 CPU s for 10,000 trajectories). Here automatic collection is
paused and the caller collects the youngest generation after each batch instead: reference cycles
a batch made (the stdlib JSON encoder makes one per indented dump) are still freed, batch by
batch, and objects that outlive their batch are never walked again while the pause lasts.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def collect_per_batch() -> Iterator[Callable[[], int]]:
    """Pause automatic collection; yields `collect()` to call after each batch (returns how many
    unreachable objects it found). The collector's previous state is restored on exit."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield lambda: gc.collect(0)
    finally:
        if enabled:
            gc.enable()
