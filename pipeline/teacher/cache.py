"""The replay cache: a request's hash -> its decoded reply, so a rerun makes zero teacher calls."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.schema import canonical_json
from pipeline.teacher.reply import TeacherReply


class ReplayCache:
    """sqlite map from a request's hash to its reply; safe across threads and processes (WAL)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL)")

    def get(self, key: str) -> TeacherReply | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return TeacherReply.from_dict({**json.loads(row[0]), "cached": True})

    def put(self, key: str, reply: TeacherReply) -> None:
        data = json.dumps({k: v for k, v in asdict(reply).items() if k != "cached"}, ensure_ascii=False)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO replies (key, reply) VALUES (?, ?)", (key, data))

    def close(self) -> None:
        with self._lock:
            self._db.close()


def request_key(request: dict[str, Any]) -> str:
    """The cache key: sha256 over the canonical JSON of everything sent except transport details."""
    return hashlib.sha256(canonical_json(request).encode("utf-8")).hexdigest()
