"""One synth driver per run on object storage, across machines: a lease object in the run.

A local run's lock is a file lock on its folder (`RunLock`); a run in a bucket has no folder every
driver shares, so two drivers started on two machines against one address would both submit
every pending pair. The lease is `RUN/synth.lease.json` (host, pid, a token, a heartbeat time):
a driver takes it when there is none, when the holder's heartbeat is older than `ttl_s` (a
killed driver), or when the holder was on this machine (the local lock already proved it gone);
it then reads the lease back after a pause, and the one whose token is there goes on (object
stores without conditional writes settle a race this way: the last write wins, the loser sees
it). A heartbeat thread renews it; a clean exit removes it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from typing import Any

from pipeline.run_files import host_tag
from pipeline.store import RunStore

LEASE_KEY = "synth.lease.json"
log = logging.getLogger(__name__)


class LeaseHeld(RuntimeError):
    """Another driver holds the run; the message names it and what to do."""


class DriverLease:
    """Hold `RUN/synth.lease.json` for the life of a synth driver (nothing to do for a local run)."""

    def __init__(self, store: RunStore, *, ttl_s: float = 60.0, beat_s: float = 15.0, settle_s: float = 1.0):
        self.store, self.ttl_s, self.beat_s, self.settle_s = store, ttl_s, beat_s, settle_s
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DriverLease:
        if not self.store.remote:
            return self
        held = self._read()
        if held is not None and held.get("host") != host_tag():
            age = time.time() - float(held.get("beat", 0))
            if age < self.ttl_s:
                raise LeaseHeld(
                    f"another `trajforge synth` on {held.get('host')} (pid {held.get('pid')}) holds "
                    f"{self.store.where()} (heartbeat {age:.0f}s ago); stop it, or if it was killed, rerun "
                    f"in {self.ttl_s - age:.0f}s when its lease expires"
                )
        self._write()
        time.sleep(self.settle_s)
        now = self._read()
        if now is None or now.get("token") != self.token:
            raise LeaseHeld(
                f"another `trajforge synth` on {(now or {}).get('host')} took {self.store.where()} at the "
                "same moment; one driver per run: stop one of them"
            )
        self._thread = threading.Thread(target=self._beat, name="synth-lease", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=self.beat_s + 5)
        held = self._read()
        if held is not None and held.get("token") == self.token:
            self.store.files.delete(LEASE_KEY)

    def _beat(self) -> None:
        while not self._stop.wait(self.beat_s):
            try:
                held = self._read()
                if held is not None and held.get("token") != self.token:
                    log.error("the synth lease of %s was taken by %s", self.store.where(), held.get("host"))
                    return
                self._write()
            except Exception as exc:  # a missed heartbeat is retried; the run goes on
                log.warning("synth lease heartbeat failed: %s", exc)

    def _read(self) -> dict[str, Any] | None:
        text = self.store.read_text(LEASE_KEY)
        try:
            return json.loads(text) if text else None
        except ValueError:
            return None  # a lease nobody can read holds nothing

    def _write(self) -> None:
        lease = {"host": host_tag(), "pid": os.getpid(), "token": self.token, "beat": time.time()}
        self.store.write_bytes(LEASE_KEY, json.dumps(lease).encode())
