"""Persistent tool-result cache (SQLite), so a rerun pays for no search API call twice.

Keys are namespaced (`text:ddgs`, `image:local`, `visit`) and normalised by the caller (query
text lower-cased with collapsed whitespace, perceptual hash of the image, canonical URL). Only
successful results are stored. Hit and miss counts feed the run summary.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any


def normalise_query(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


class ToolCache:
    """`get`/`put` JSON values by (namespace, key); safe across threads and processes (WAL)."""

    def __init__(self, path: Path | None, *, enabled: bool = True) -> None:
        self.enabled = enabled and path is not None
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if self.enabled:
            assert path is not None
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS cache (ns TEXT, key TEXT, value TEXT, created REAL, PRIMARY KEY (ns, key))"
            )
            self._db.commit()

    def get(self, ns: str, key: str) -> Any | None:
        if not self._db:
            return None
        with self._lock:
            row = self._db.execute("SELECT value FROM cache WHERE ns=? AND key=?", (ns, key)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, ns: str, key: str, value: Any) -> None:
        if not self._db:
            return
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?)", (ns, key, json.dumps(value), time.time())
            )
            self._db.commit()

    def stats(self) -> dict[str, float]:
        total = self.hits + self.misses
        return {"hits": self.hits, "misses": self.misses, "hit_rate": self.hits / total if total else 0.0}

    def close(self) -> None:
        if self._db:
            self._db.close()
            self._db = None
