"""Persistent tool-result cache (SQLite), so a rerun pays for no search API call twice.

Keys are namespaced (`text:ddgs`, `image:local`, `visit`) and normalised by the caller (query
text lower-cased with collapsed whitespace, perceptual hash of the image, canonical URL). Only
successful results are stored. Hit and miss counts feed the run summary.

`get_or_fetch` also coalesces identical lookups in flight: the K rollouts of one task run in
lockstep and ask for the same search at the same moment, and without it each would pay for
the API call (and the local index's CPU) before any of them could fill the cache.

The entries this process read or wrote last are also kept in memory (up to 32 M characters
of their JSON text, so every caller decodes its own copy): a lookup runs on the event loop,
and at a thousand trajectories in flight the K rollouts' repeats of one page or search each
cost a sqlite read (0.2-0.7 ms here) there. A value another process writes is found in the
file as before.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pipeline.singleflight import SingleFlight
from pipeline.sqlite_store import SqliteStore

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
        if self._db is None:
            return None
        with self._recent_lock:
            text = self._recent.get((ns, key))
        if text is None:
            row = self._db.one("SELECT value FROM cache WHERE ns=? AND key=?", (ns, key))
            if row is None:
                return None
            text = row[0]
        self._remember((ns, key), text)
        return json.loads(text)

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
        value = self._lookup(ns, key)
        if value is not None:
            self.hits += 1
            return value
        flight, started = self._flights.join((ns, key), lambda: self._fetch_and_put(ns, key, fetch))
        if started:
            self.misses += 1
        else:
            self.coalesced += 1
        return await asyncio.shield(flight)

    async def _fetch_and_put(self, ns: str, key: str, fetch: Callable[[], Awaitable[Any]]) -> Any:
        value = await fetch()
        self.put(ns, key, value)
        return value

    def put(self, ns: str, key: str, value: Any) -> None:
        if self._db is not None:
            text = json.dumps(value)
            self._db.write("INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?)", (ns, key, text, time.time()))
            self._remember((ns, key), text)

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
