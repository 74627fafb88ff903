"""The replay cache: a request's hash -> its decoded reply, so a rerun makes zero teacher calls."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.schema import canonical_json
from pipeline.sqlite_store import SqliteStore
from pipeline.teacher.reply import TeacherReply


class ReplayCache:
    """sqlite map from a request's hash to its reply; safe across threads and processes (WAL)."""

    def __init__(self, path: Path):
        self.path = path
        self._db = SqliteStore(path, "replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL)")

    def get(self, key: str) -> TeacherReply | None:
        row = self._db.one("SELECT reply FROM replies WHERE key = ?", (key,))
        if row is None:
            return None
        return TeacherReply.from_dict({**json.loads(row[0]), "cached": True})

    def put(self, key: str, reply: TeacherReply) -> None:
        data = json.dumps({k: v for k, v in asdict(reply).items() if k != "cached"}, ensure_ascii=False)
        self._db.write("INSERT OR REPLACE INTO replies (key, reply) VALUES (?, ?)", (key, data))

    def close(self) -> None:
        self._db.close()


def request_key(request: dict[str, Any]) -> str:
    """The cache key: sha256 over the canonical JSON of everything sent except transport details."""
    return hashlib.sha256(canonical_json(request).encode("utf-8")).hexdigest()
