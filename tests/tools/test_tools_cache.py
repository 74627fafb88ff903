"""The tools' result cache: repeats are answered from memory, each caller gets its own copy."""

from __future__ import annotations

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
