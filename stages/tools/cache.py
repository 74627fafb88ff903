"""Persistent tool-result cache (SQLite), so a rerun pays for no search API call twice.

Keys are namespaced (`text:ddgs`, `image:local`, `visit`) and normalised by the caller (query
text lower-cased with collapsed whitespace, perceptual hash of the image, canonical URL). Only
successful results are stored. Hit and miss counts feed the run summary.

`get_or_fetch` also coalesces identical lookups in flight: the K rollouts of one task run in
lockstep and ask for the same search at the same moment, and without it each would pay for
the API call (and the local index's CPU) before any of them could fill the cache.

The entries this process read or wrote last are also kept in memory (up to 32 M characters
of their JSON text, so every caller decodes its own copy): at a thousand trajectories in flight
the K rollouts' repeats of one page or search would each cost a sqlite read (0.2-0.7 ms here).
`get_or_fetch` is the event loop's way in: it answers from memory on the loop, and reads and
writes the file on a thread, since the file is shared with other processes and a read or write
may wait for their locks (up to the connection's 30 s timeout) where the loop must not. A value
another process writes is found in the file as before. `get` and `put` are the same cache for
synchronous callers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pipeline.singleflight import SingleFlight
from pipeline.sqlite_store import SqliteStore

log = logging.getLogger(__name__)

#: Characters of JSON text kept in memory (pages are the largest entries, tens of KB each).
MEMORY_CHARS = 32 << 20


def normalise_query(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


class ToolCache:
    """`get`/`put` JSON values by (namespace, key); safe across threads and processes (WAL)."""

    def __init__(self, path: Path | None, *, enabled: bool = True) -> None:
        self.enabled = enabled and path is not None
        self.hits = 0
        self.misses = 0
        self.coalesced = 0  # lookups that joined an identical fetch already in flight
        self._flights: SingleFlight[tuple[str, str], Any] = SingleFlight()
        self._recent: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._recent_chars = 0
        self._recent_lock = threading.Lock()  # the cache may be shared by a worker's threads
        self._db: SqliteStore | None = None
        if self.enabled:
            assert path is not None
            self._db = SqliteStore(
                path, "cache (ns TEXT, key TEXT, value TEXT, created REAL, PRIMARY KEY (ns, key))"
            )

    def get(self, ns: str, key: str) -> Any | None:
        value = self._lookup(ns, key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def _lookup(self, ns: str, key: str) -> Any | None:
        value = self._recall(ns, key)
        if value is not None:
            return value
        text = self._read_file(ns, key)
        return None if text is None else json.loads(text)

    def _recall(self, ns: str, key: str) -> Any | None:
        """A fresh copy of the value from memory, if this process read or wrote it lately."""
        with self._recent_lock:
            text = self._recent.get((ns, key))
        return None if text is None else json.loads(text)

    def _read_file(self, ns: str, key: str) -> str | None:
        """The value's JSON text from the file (remembered in memory when found)."""
        if self._db is None:
            return None
        row = self._db.one("SELECT value FROM cache WHERE ns=? AND key=?", (ns, key))
        if row is None:
            return None
        self._remember((ns, key), row[0])
        return row[0]

    def _remember(self, entry: tuple[str, str], text: str) -> None:
        with self._recent_lock:
            old = self._recent.pop(entry, None)
            self._recent_chars += len(text) - (len(old) if old is not None else 0)
            self._recent[entry] = text
            while self._recent_chars > MEMORY_CHARS and len(self._recent) > 1:
                _, evicted = self._recent.popitem(last=False)
                self._recent_chars -= len(evicted)

    async def get_or_fetch(self, ns: str, key: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
        """The cached value, else the result of one `fetch` shared by every concurrent caller.

        Only a successful result is stored; a failure reaches every caller that joined it, and
        the next lookup tries again. A caller cancelled while waiting leaves the fetch running
        for the others.
        """
        value = self._recall(ns, key)
        if value is not None:
            self.hits += 1
            return value
        flight, started = self._flights.join((ns, key), lambda: self._read_or_fetch(ns, key, fetch))
        if not started:
            self.coalesced += 1
        return await asyncio.shield(flight)

    async def _read_or_fetch(self, ns: str, key: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
        """The file's value, else one fetch stored: the file's side on a thread, off the loop."""
        text = await asyncio.to_thread(self._read_file, ns, key) if self._db is not None else None
        if text is not None:
            self.hits += 1
            return json.loads(text)
        self.misses += 1
        value = await fetch()
        if self._db is not None:
            text = json.dumps(value)
            self._remember((ns, key), text)
            try:
                await asyncio.to_thread(self._write, ns, key, text)
            except sqlite3.Error as exc:
                # the value is good: a cache that cannot keep it costs a refetch another time
                log.warning(
                    "tool cache: could not store %s %r (%s); it will be fetched again next time", ns, key, exc
                )
        return value

    def put(self, ns: str, key: str, value: Any) -> None:
        if self._db is not None:
            text = json.dumps(value)
            self._write(ns, key, text)
            self._remember((ns, key), text)

    def _write(self, ns: str, key: str, text: str) -> None:
        if self._db is not None:
            self._db.write("INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?)", (ns, key, text, time.time()))

    def stats(self) -> dict[str, float]:
        """`hit_rate` counts coalesced lookups as hits: they cost no fetch either."""
        saved = self.hits + self.coalesced
        total = saved + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "coalesced": self.coalesced,
            "hit_rate": saved / total if total else 0.0,
        }

    def close(self) -> None:
        with self._recent_lock:
            self._recent.clear()
            self._recent_chars = 0
        if self._db is not None:
            self._db.close()
            self._db = None
