"""The tools' result cache: repeats are answered from memory, each caller gets its own copy; the
event loop's lookups leave the sqlite file to threads."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from stages.tools import cache as cache_module
from stages.tools.cache import ToolCache


class CountingReads:
    """Wraps the sqlite store's `one` to count reads that reach the file."""

    def __init__(self, cache: ToolCache) -> None:
        self.reads = 0
        db = cache._db
        assert db is not None
        original = db.one

        def one(sql, params):
            self.reads += 1
            return original(sql, params)

        db.one = one  # type: ignore[method-assign]


def test_repeats_are_read_from_memory_as_fresh_copies(tmp_path: Path) -> None:
    cache = ToolCache(tmp_path / "c.sqlite")
    reads = CountingReads(cache)
    cache.put("visit", "http://a", {"text": "page", "links": ["x"]})
    first = cache.get("visit", "http://a")
    first["links"].append("changed by a caller")
    second = cache.get("visit", "http://a")
    assert second == {"text": "page", "links": ["x"]} and reads.reads == 0
    assert cache.stats()["hits"] == 2


def test_another_process_s_entries_come_from_the_file_then_memory(tmp_path: Path) -> None:
    ToolCache(tmp_path / "c.sqlite").put("text:local", "q", [1, 2])
    cache = ToolCache(tmp_path / "c.sqlite")
    reads = CountingReads(cache)
    assert cache.get("text:local", "q") == [1, 2] and reads.reads == 1
    assert cache.get("text:local", "q") == [1, 2] and reads.reads == 1
    assert cache.get("text:local", "missing") is None and reads.reads == 2  # a miss asks the file


def test_memory_is_bounded_and_evicted_entries_stay_in_the_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(cache_module, "MEMORY_CHARS", 8 * len('"x00"'))
    cache = ToolCache(tmp_path / "c.sqlite")
    for i in range(20):
        cache.put("visit", f"u{i}", f"x{i:02d}")
    assert len(cache._recent) == 8
    reads = CountingReads(cache)
    assert cache.get("visit", "u0") == "x00" and reads.reads == 1  # evicted from memory, still stored
    assert cache.get("visit", "u19") == "x19" and reads.reads == 1


class ThreadsOf:
    """Wraps the sqlite store's `one` and `write` to note which thread each ran on."""

    def __init__(self, cache: ToolCache) -> None:
        self.reads: list[int] = []
        self.writes: list[int] = []
        db = cache._db
        assert db is not None
        one, write = db.one, db.write

        def traced_one(sql, params):
            self.reads.append(threading.get_ident())
            return one(sql, params)

        def traced_write(sql, params):
            self.writes.append(threading.get_ident())
            return write(sql, params)

        db.one, db.write = traced_one, traced_write  # type: ignore[method-assign]


def test_the_loop_s_lookups_read_and_write_the_file_on_threads(tmp_path: Path) -> None:
    """The file is shared with other processes, whose locks a read or write may wait for: the
    event loop only ever touches memory."""
    ToolCache(tmp_path / "c.sqlite").put("text:local", "stored", [1, 2])  # another process's entry
    cache = ToolCache(tmp_path / "c.sqlite")
    threads = ThreadsOf(cache)
    fetched: list[str] = []

    async def fetch():
        fetched.append("new")
        return {"rows": ["fresh"]}

    async def go():
        loop_thread = threading.get_ident()
        values = await asyncio.gather(*(cache.get_or_fetch("text:local", "stored", fetch) for _ in range(4)))
        new = await cache.get_or_fetch("text:local", "new", fetch)
        again = await cache.get_or_fetch("text:local", "new", fetch)
        return loop_thread, values, new, again

    loop_thread, values, new, again = asyncio.run(go())
    assert values == [[1, 2]] * 4 and new == again == {"rows": ["fresh"]} and fetched == ["new"]
    assert len(threads.reads) == 2  # the stored entry once (three callers joined it), the new one's miss once
    assert len(threads.writes) == 1
    assert loop_thread not in threads.reads + threads.writes
    assert cache.stats() == {"hits": 2, "misses": 1, "coalesced": 3, "hit_rate": 5 / 6}


def test_a_write_the_file_refuses_costs_the_cache_not_the_call(tmp_path: Path, caplog) -> None:
    cache = ToolCache(tmp_path / "c.sqlite")
    db = cache._db
    assert db is not None

    def locked(sql, params):
        raise sqlite3.OperationalError("database is locked")

    db.write = locked  # type: ignore[method-assign]

    async def fetch():
        return ["row"]

    async def go():
        return [await cache.get_or_fetch("text:local", "q", fetch) for _ in range(2)]

    assert asyncio.run(go()) == [["row"], ["row"]]
    assert "could not store text:local 'q'" in caplog.text and "database is locked" in caplog.text
    assert cache.stats()["misses"] == 1  # the second came from memory
