"""The shared sqlite file: workers starting together must all open it."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pipeline.sqlite_store as sqlite_store
from pipeline.sqlite_store import SqliteStore


class RefusesWalAtFirst:
    """A connection whose first WAL switches are refused at once, as sqlite does while another
    connection is making the same new file (seen as a Ray worker's failed task)."""

    def __init__(self, real: sqlite3.Connection, refusals: int) -> None:
        self.real, self.refusals = real, refusals

    def execute(self, sql: str, *args):
        if sql.startswith("PRAGMA journal_mode") and self.refusals > 0:
            self.refusals -= 1
            raise sqlite3.OperationalError("database is locked")
        return self.real.execute(sql, *args)

    def close(self) -> None:
        self.real.close()


def test_a_refused_wal_switch_is_tried_again(tmp_path: Path, monkeypatch) -> None:
    connect = sqlite3.connect
    monkeypatch.setattr(
        sqlite_store.sqlite3, "connect", lambda *a, **k: RefusesWalAtFirst(connect(*a, **k), 3)
    )
    store = SqliteStore(tmp_path / "c.sqlite", "t (k TEXT PRIMARY KEY, v TEXT)")
    store.write("INSERT INTO t VALUES (?, ?)", ("a", "1"))
    assert store.one("SELECT v FROM t WHERE k=?", ("a",)) == ("1",)
    assert store.one("PRAGMA journal_mode", ()) == ("wal",)
    store.close()


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    (tmp_path / "c.sqlite").write_bytes(b"not a database file at all" * 100)
    try:
        SqliteStore(tmp_path / "c.sqlite", "t (k TEXT)")
    except sqlite3.DatabaseError as exc:
        assert "locked" not in str(exc)
    else:
        raise AssertionError("a corrupt file opened")


def test_many_connections_open_one_new_file_at_once(tmp_path: Path) -> None:
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            SqliteStore(tmp_path / "shared.sqlite", "t (k TEXT)").close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
