"""Persistent tool-result cache (SQLite), so a rerun pays for no search API call twice.

Keys are namespaced (`text:ddgs`, `image:local`, `visit`) and normalised by the caller (query
text lower-cased with collapsed whitespace, perceptual hash of the image, canonical URL). Only
successful results are stored. Hit and miss counts feed the run summary.

`get_or_fetch` also coalesces identical lookups in flight: the K rollouts of one task run in
lockstep and ask for the same search at the same moment, and without it each would pay for
the API call (and the local index's CPU) before any of them could fill the cache.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pipeline.singleflight import SingleFlight
from pipeline.sqlite_store import SqliteStore


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
        row = self._db.one("SELECT value FROM cache WHERE ns=? AND key=?", (ns, key))
        return None if row is None else json.loads(row[0])

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
            self._db.write(
                "INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?)", (ns, key, json.dumps(value), time.time())
            )

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
        if self._db is not None:
            self._db.close()
            self._db = None
