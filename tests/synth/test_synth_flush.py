"""Shard flushing: a cancelled flush still lands and counts, a failed one is written next time."""

from __future__ import annotations

import asyncio
import threading

import pytest

from pipeline.config import load_config
from pipeline.schema import Trajectory
from pipeline.store import RunStore
from stages.synth.runner import SynthWorker


def _worker(tmp_path, base_url: str) -> SynthWorker:
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=r", "synth.flush_s=3600"])
    return SynthWorker(cfg, str(cfg.run.dir), teacher_base_url=base_url, tools_factory=lambda *a: {})


def _trajectories(first: int, n: int) -> list[Trajectory]:
    return [
        Trajectory(task_id=f"t{i}", question="q", trajectory_id=f"t{i}-r0") for i in range(first, first + n)
    ]


def test_cancelled_flush_lands_before_close_returns(fake_teacher, tmp_path):
    worker = _worker(tmp_path, fake_teacher(lambda body: "unused").base_url)
    release = threading.Event()
    real_write = worker._write

    def slow_write(plans, batch):
        release.wait(10)  # the thread is mid-write when its caller is cancelled
        return real_write(plans, batch)

    worker._write = slow_write

    async def scenario() -> dict:
        await worker.start()
        worker._buffer.extend(_trajectories(0, 3))
        flushing = asyncio.create_task(worker.flush())
        await asyncio.sleep(0.05)
        flushing.cancel()
        closing = asyncio.create_task(worker.close())  # must wait for the write, not race it
        await asyncio.sleep(0.05)
        assert not closing.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await flushing
        return await closing

    stats = asyncio.run(scenario())
    store = RunStore(worker.store.root)
    assert len(store.read_records("raw", Trajectory)) == 3
    assert stats["written"] == 3 and stats["buffered"] == 0


def test_failed_write_is_kept_for_the_next_flush(fake_teacher, tmp_path):
    worker = _worker(tmp_path, fake_teacher(lambda body: "unused").base_url)
    real_write, failures = worker._write, [1]

    def flaky_write(plans, batch):
        if failures:
            failures.pop()
            raise OSError("disk full")
        return real_write(plans, batch)

    worker._write = flaky_write

    async def scenario() -> dict:
        await worker.start()
        worker._buffer.extend(_trajectories(0, 2))
        with pytest.raises(OSError, match="disk full"):
            await worker.flush()
        worker._buffer.extend(_trajectories(2, 1))
        return await worker.close()

    stats = asyncio.run(scenario())
    records = RunStore(worker.store.root).read_records("raw", Trajectory)
    assert sorted(r.task_id for r in records) == ["t0", "t1", "t2"]
    assert stats["written"] == 3


def test_final_write_failing_costs_the_records_not_the_close(fake_teacher, tmp_path):
    worker = _worker(tmp_path, fake_teacher(lambda body: "unused").base_url)

    def broken_write(plans, batch):
        raise OSError("read-only file system")

    worker._write = broken_write

    async def scenario() -> dict:
        await worker.start()
        worker._buffer.extend(_trajectories(0, 2))
        return await worker.close()  # logs, releases the teacher and tools, reports what is left

    stats = asyncio.run(scenario())
    assert stats["written"] == 0 and stats["buffered"] == 2
    log = (worker.store.root / "logs" / "synth.log").read_text()
    assert "2 trajectories stay unwritten" in log and "read-only file system" in log


def test_each_of_a_runs_workers_holds_its_share_of_the_teacher_limits(fake_teacher, tmp_path):
    """`teacher.requests_per_s` and `tokens_per_min` are the run's: 4 workers pace at a quarter each."""
    cfg = load_config(
        None,
        [f"run.root={tmp_path}", "run.name=r", "teacher.requests_per_s=40", "teacher.tokens_per_min=100000"],
    )
    base_url = fake_teacher(lambda body: "unused").base_url
    worker = SynthWorker(
        cfg, str(cfg.run.dir), teacher_base_url=base_url, tools_factory=lambda *a: {}, workers=4
    )

    async def scenario() -> tuple[float | None, int | None]:
        await worker.start()
        assert worker._teacher is not None
        pace, tokens = worker._teacher.pacer.rate, worker._teacher.tokens.per_minute
        await worker.close()
        return pace, tokens

    assert asyncio.run(scenario()) == (10.0, 25_000)
