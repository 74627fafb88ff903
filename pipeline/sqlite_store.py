"""One sqlite file shared by threads and processes: the connection, its pragmas and its lock.

The teacher's replay cache and the tools' result cache are both small key -> JSON tables that
many threads of one worker and several Ray workers read and write at once. WAL lets readers
and one writer overlap across processes; `synchronous=NORMAL` keeps the file consistent and
loses at most the last writes in a power cut (a cache can afford that); a lock serialises the
threads of this process on the one connection.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any


class SqliteStore:
    """A sqlite file with the given tables; `one` reads a row, `write` runs a statement."""

    def __init__(self, path: Path, *tables: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = sqlite3.connect(
            path, timeout=30, check_same_thread=False, isolation_level=None
        )
        self._wal()
        self._db.execute("PRAGMA synchronous=NORMAL")
        for table in tables:
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {table}")

    def _wal(self, wait_s: float = 30.0) -> None:
        """Switch the file to WAL. Workers starting together open one new file at once, and the
        switch can be refused at once ("database is locked", no busy wait) while another
        connection makes the file: tried again until `wait_s`, as long as any lock may last."""
        assert self._db is not None
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        with self._lock:
            if self._db is None:
                return None
            return self._db.execute(sql, params).fetchone()

    def write(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._lock:
            if self._db is not None:
                self._db.execute(sql, params)  # autocommit (isolation_level=None)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
