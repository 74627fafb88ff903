"""The synth runner: tasks in, trajectories out, on one process or across a Ray cluster.

A `SynthWorker` owns one event loop's worth of work: a teacher client, the tools, and a shard
buffer. It takes a task (and the rollouts still missing for it), plans once, runs the rollouts
concurrently (up to `synth.in_flight` trajectories per worker), and writes `RUN/raw/` and
`RUN/plans/` shards as it goes (every `synth.shard_size` records or `synth.flush_s` seconds).
CPU work (image encoding, image storing, parquet writing) runs in threads; the sandbox runs in
its own processes.

The driver streams `RUN/tasks/` shard by shard, skips (task, rollout) pairs already in
`RUN/raw/` (resume), keeps a bounded number of tasks submitted per worker, and shows progress.
One scheduling loop (`_drive`) runs two kinds of worker pool: Ray actors (`ray_address` None:
a local Ray; or a cluster address), or, for tests
and small runs, the same worker class in the driver's own event loop (`use_ray=False`).
SIGINT/SIGTERM stop submitting and flush every worker's buffer before exiting; a kill -9 loses
only unflushed records, which the next run redoes (for free, through the teacher's replay cache).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import functools
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import prompts
from pipeline.config import Config, apply_prompts
from pipeline.logs import item_logger
from pipeline.open_files import ensure_open_files, files_needed
from pipeline.schema import Plan, Task, Trajectory, trajectory_id_for
from pipeline.store import RunStore
from pipeline.teacher import TeacherClient
from pipeline.teacher.client import check_concurrency
from pipeline.teacher.limits import AdaptivePacer
from pipeline.thread_work import wait_through_cancel
from stages.synth.collector import WorkerCollector
from stages.synth.execute import Executor
from stages.synth.lease import DriverLease
from stages.synth.plan import make_plan
from stages.synth.sizing import sizing
from stages.synth.system_prompts import executor_prompt, planner_prompt
from stages.tools.code.sandbox import pool_ceiling
from stages.tools.registry import run_tools, tool_table

log = logging.getLogger("trajforge.synth")

#: Builds the tools of one mode: (config, mode, run dir) -> {name: Tool}. A worker keeps one
#: tool per name across modes (the first mode's), so `tools.code.workers` sandbox processes
#: serve every mode rather than each mode starting its own pool.
ToolsFactory = Callable[[Config, str, Path], dict[str, Any]]


# ------------------------------------------------------------------------------------ work


@dataclass
class WorkItem:
    """One task and the rollout indices it still needs (a plan if one was already recorded)."""

    task: Task
    rollouts: list[int]
    plan: Plan | None = None


def prompt_ids(cfg: Config) -> Callable[[str], str]:
    """Mode -> the executor prompt id this run's trajectories record (filled once per mode)."""
    table = tool_table(cfg.tools)

    @functools.cache
    def prompt_id(mode: str) -> str:
        return executor_prompt(mode, cfg.teacher.tool_protocol, table).id

    return prompt_id


def trajectory_ids(task: Task, cfg: Config, prompt_id: str) -> dict[int, str]:
    """Rollout index -> the trajectory id that rollout gets (what resume checks)."""
    return {
        r: trajectory_id_for(task.task_id, r, cfg.teacher.model, prompt_id) for r in range(cfg.synth.rollouts)
    }


def record_tools(cfg: Config, store: RunStore) -> None:
    """Save the tool table this run offers (`RUN/tools.json`, what the filter judges calls
    against) and every prompt it fills with tools other than the built-in ones."""
    table = tool_table(cfg.tools)
    store.save_tool_table(table)
    for mode in ("deepresearch", "general"):
        for protocol in {"text", cfg.teacher.tool_protocol}:
            executor_prompt(mode, protocol, table)  # type: ignore[arg-type]
    planner_prompt(table)
    prompts.save_used(store.root / "prompts")
    store.push_folder("prompts")


def pending_work(cfg: Config, store: RunStore) -> tuple[Iterator[WorkItem], int, int]:
    """Work still to do, streamed from `RUN/tasks/`: (items, trajectories to run, already done)."""
    written = store.written_ids("raw", "trajectory_id")
    plans = {p.task_id: p for p in store.iter_records("plans", Plan)} if cfg.synth.plan else {}
    prompt_id = prompt_ids(cfg)
    todo = done = 0
    for task in store.iter_records("tasks", Task):
        ids = trajectory_ids(task, cfg, prompt_id(task.mode))
        missing = sum(1 for tid in ids.values() if tid not in written)
        todo += missing
        done += len(ids) - missing

    def items() -> Iterator[WorkItem]:
        for task in store.iter_records("tasks", Task):
            ids = trajectory_ids(task, cfg, prompt_id(task.mode))
            rollouts = [r for r, tid in ids.items() if tid not in written]
            if rollouts:
                yield WorkItem(task, rollouts, plans.get(task.task_id))

    return items(), todo, done


# ---------------------------------------------------------------------------------- worker


@dataclass
class TaskResult:
    """What one task's work produced (small: it travels back to the driver)."""

    trajectories: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    tool_calls: int = 0
    tokens: int = 0
    errors: int = 0


class SynthWorker:
    """One event loop's synth work: plan + rollouts, shards written as it goes."""

    def __init__(
        self,
        cfg: Config,
        run_dir: str,
        *,
        teacher_base_url: str | None = None,
        tools_factory: ToolsFactory | None = None,
        worker_id: int = 0,
        workers: int = 1,
        prompt_texts: dict[str, str] | None = None,
    ):
        """`workers`: how many SynthWorkers this run has; they split the teacher's configured
        and stated request and token limits evenly (the limits are the key's, not each worker's).
        `prompt_texts`: the user's prompts as the driver read them (a worker on another node has
        no copy of the files); without them the config's prompt files are read here."""
        self.cfg, self.worker_id, self.workers = cfg, worker_id, max(1, workers)
        if prompt_texts is not None:
            prompts.use_texts(prompt_texts)
        else:
            apply_prompts(cfg)  # a worker in another process: the config's prompt files apply here too
        self.store = RunStore(run_dir)
        self.teacher_base_url = teacher_base_url
        self.tools_factory = tools_factory or run_tools
        self._buffer: list[Trajectory] = []
        self._plans: list[Plan] = []
        self._write_lock: asyncio.Lock | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._starts: AdaptivePacer | None = None
        self._executor: Executor | None = None
        self._teacher: TeacherClient | None = None
        self._tools: dict[str, dict[str, Any]] = {}
        self._tools_lock: asyncio.Lock | None = None
        self._collector = WorkerCollector(freeze_s=cfg.synth.gc_freeze_s, slots=cfg.synth.in_flight)
        self._freezer: asyncio.Task[None] | None = None
        self._written = 0
        self.write_cpu_s = 0.0
        self._worker_lock = _WorkerLock(self.store.root)
        self.log = item_logger(self.store.root, "synth")

    async def start(self) -> None:
        """Open the teacher and tools (inside the loop that will use them)."""
        if self._executor is not None:
            return
        self._worker_lock.acquire()
        preflight(self.cfg)  # a Ray actor is another process, maybe on another node
        self._teacher = TeacherClient(
            self.cfg.teacher,
            cache_dir=self.store.root / "cache" / "teacher",
            base_url=self.teacher_base_url,
            share=1.0 / self.workers,
        )
        work_root = self.store.root / "cache" / "work" / f"w{self.worker_id}-{os.getpid()}"
        self._executor = Executor(
            teacher=self._teacher,
            tools=self._tools,
            store=self.store,
            synth=self.cfg.synth,
            teacher_cfg=self.cfg.teacher,
            work_root=work_root,
            tool_table=tool_table(self.cfg.tools),
        )
        self._write_lock = asyncio.Lock()
        self._slots = asyncio.Semaphore(max(1, self.cfg.synth.in_flight))
        # starts spaced at synth.start_rate: only the first wave (every slot free at once) waits
        rate = self.cfg.synth.start_rate
        self._starts = AdaptivePacer(ceiling=rate) if rate > 0 else None
        self._flusher = asyncio.create_task(self._flush_periodically())
        self._freezer = asyncio.create_task(self._collector.run())

    async def run_task(self, item: WorkItem) -> TaskResult:
        """Plan (unless given) and run the item's rollouts; records are buffered for shards."""
        await self.start()
        assert self._executor is not None and self._teacher is not None and self._slots is not None
        task, plan = item.task, item.plan
        if task.mode not in self._tools:
            await self._build_tools(task.mode)
        if plan is None and self.cfg.synth.plan:
            encoder = self._executor.encoder()
            plan = await make_plan(
                task,
                self._teacher,
                encoder,
                retries=self.cfg.synth.plan_retries,
                tools=self._executor.tool_table,
            )
            self._plans.append(plan)
            if not plan.valid:
                self.log.warning(
                    "plan for %s invalid after %d attempts: %s", task.task_id, plan.attempts, plan.errors
                )

        async def one(rollout: int) -> Trajectory:
            async with self._slots:
                if self._starts is not None:
                    await self._starts.acquire()
                return await self._executor.run(task, rollout, plan)

        trajectories = await asyncio.gather(*(one(r) for r in item.rollouts))
        result = TaskResult(trajectories=len(trajectories))
        for traj in trajectories:
            result.statuses[traj.status] = result.statuses.get(traj.status, 0) + 1
            result.tool_calls += len(traj.tool_calls)
            result.tokens += traj.prompt_tokens + traj.completion_tokens
            if traj.status == "failed":
                result.errors += 1
                self.log.warning("trajectory %s failed: %s", traj.trajectory_id, traj.failure_reason)
        self._buffer.extend(trajectories)
        if len(self._buffer) >= self.cfg.synth.shard_size:
            await self._flush_or_keep()
        return result

    async def _build_tools(self, mode: str) -> None:
        """Build a mode's tools on first use, in a thread (loading search indexes took the loop
        away for seconds, from every trajectory in flight, when a second mode's first task
        came mid-run); one build at a time, so two tasks of a new mode cannot both build it."""
        if self._tools_lock is None:
            self._tools_lock = asyncio.Lock()
        async with self._tools_lock:
            if mode in self._tools:
                return
            first = not self._tools
            built = await asyncio.to_thread(self.tools_factory, self.cfg, mode, self.store.root)
            for spare in self._add_tools(mode, built):
                with contextlib.suppress(Exception):  # never started: closing frees handles only
                    await spare.aclose()
            self._collector.freeze_start_up(first=first)

    def _add_tools(self, mode: str, built: dict[str, Any]) -> list[Any]:
        """Adopt a mode's freshly built tools, reusing another mode's tool of the same name;
        returns the unused duplicates for the caller to close."""
        spares = []
        for tools in self._tools.values():
            for name in built.keys() & tools.keys():
                if built[name] is not tools[name]:
                    spares.append(built[name])
                    built[name] = tools[name]
        self._tools[mode] = built
        return spares

    async def flush(self) -> int:
        """Write buffered plans and trajectories as shards now; returns trajectories written."""
        if self._write_lock is None:
            return 0
        async with self._write_lock:
            plans, self._plans = self._plans, []
            batch, self._buffer = self._buffer, []
            if not plans and not batch:
                return 0
            write = asyncio.ensure_future(asyncio.to_thread(self._write, plans, batch))
            try:
                # the thread writes whatever happens here: the lock is kept until it is done, so
                # a later flush (close's) cannot return before this shard is on disk
                await wait_through_cancel(write)
            finally:
                self._settle(write, plans, batch)
            return len(batch)

    def _settle(self, write: asyncio.Future[float], plans: list[Plan], batch: list[Trajectory]) -> None:
        """Count a finished write, or put a failed one's records back for the next flush."""
        if not write.done():  # cancelled twice while writing: the thread finishes on its own
            return
        if write.cancelled() or write.exception() is not None:
            self._plans[:0], self._buffer[:0] = plans, batch  # a plan written twice is harmless
            return
        self.write_cpu_s += write.result()
        self._written += len(batch)

    def _write(self, plans: list[Plan], batch: list[Trajectory]) -> float:
        """Write shards (in a worker thread); returns the CPU seconds it took."""
        start = time.thread_time()
        if plans:
            self.store.write_records("plans", plans, Plan, prefix=f"w{self.worker_id}")
        if batch:
            self.store.write_records("raw", batch, Trajectory, prefix=f"w{self.worker_id}")
        return time.thread_time() - start

    async def _flush_or_keep(self) -> None:
        """Flush now; a failed write is logged, and its records stay buffered for the next flush."""
        try:
            await self.flush()
        except Exception as exc:
            self.log.error("shard write failed (its records are written at the next flush): %s", exc)

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.synth.flush_s)
            await self._flush_or_keep()

    def stats(self) -> dict[str, Any]:
        """Teacher, executor and tool counters of this worker."""
        out: dict[str, Any] = {"written": self._written, "buffered": len(self._buffer)}
        out["collector"] = asdict(self._collector.stats)
        if self._teacher is not None:
            out["teacher"] = self._teacher.stats()
        if self._executor is not None:
            ex = self._executor
            out["executor"] = {
                "turns": ex.stats.turns,
                "tool_calls": ex.stats.tool_calls,
                "tool_errors": ex.stats.tool_errors,
                "tool_s": round(ex.stats.tool_s, 3),
                "trajectory_wall_s": round(ex.stats.trajectory_wall_s, 3),
                "encode_cpu_s": round(ex.uris.encode_cpu_s, 3),
                "store_cpu_s": round(ex.stats.store_cpu_s + self.write_cpu_s, 3),
                "images_encoded": ex.uris.encoded,
                "images_sent": ex.stats.images_sent,
                **ex.stats.summary(),
            }
        per_tool: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        seen: set[int] = set()
        for by_name in self._tools.values():  # a tool shared by modes is counted once
            for name, tool in by_name.items():
                if hasattr(tool, "stats") and id(tool) not in seen:
                    seen.add(id(tool))
                    with contextlib.suppress(Exception):
                        per_tool[name].append(tool.stats())
        if per_tool:
            out["tools"] = {name: _sum_dicts(stats) for name, stats in per_tool.items()}
        return out

    async def close(self) -> dict[str, Any]:
        """Flush, release the teacher and tools; returns final stats."""
        for task in (self._flusher, self._freezer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        try:
            await self.flush()
        except Exception as exc:  # never the run: what is unwritten is redone by the next run
            self.log.error(
                "final shard write failed; %d trajectories stay unwritten and the next run redoes them "
                "(from the teacher's replay cache): %s",
                len(self._buffer),
                exc,
            )
        stats = self.stats()
        closed: set[int] = set()
        for by_name in self._tools.values():
            for tool in by_name.values():
                if id(tool) not in closed:
                    closed.add(id(tool))
                    with contextlib.suppress(Exception):
                        await tool.aclose()
        if self._teacher is not None:
            await self._teacher.aclose()
        self._collector.close()
        self._worker_lock.release()
        with contextlib.suppress(Exception):  # logs are worth keeping, never worth failing a run
            await asyncio.to_thread(self.store.push_logs)
        return stats


class _WorkerLock:
    """Shared lock held by live workers, so a new driver can wait out orphans of a killed run."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".synth-workers.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._fd, fcntl.LOCK_SH)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class RunLock:
    """One synth driver per run folder; waits until workers of a killed driver are gone."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self._fd: int | None = None

    def __enter__(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.run_dir / ".synth.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise RuntimeError(
                f"another `trajforge synth` is running on {self.run_dir}; wait for it or stop it first"
            ) from None
        workers = os.open(self.run_dir / ".synth-workers.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + 120
            while True:  # orphaned workers of a killed run still write; let them die first
                try:
                    fcntl.flock(workers, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"workers of an earlier run still hold {self.run_dir}/.synth-workers.lock; "
                            "stop them (ray stop) and retry"
                        ) from None
                    time.sleep(0.5)
        finally:
            os.close(workers)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# ---------------------------------------------------------------------------------- driver


class Progress:
    """Counts and rates for the progress bar and the end summary."""

    def __init__(self, total: int, already: int, *, enabled: bool = True):
        from tqdm import tqdm

        self.start = time.monotonic()
        self.total, self.already = total, already
        self.trajectories = self.tool_calls = self.tokens = self.errors = 0
        self.statuses: collections.Counter[str] = collections.Counter()
        self.bar = tqdm(total=total, unit="traj", desc="synth", disable=not enabled, dynamic_ncols=True)

    def add(self, result: TaskResult) -> None:
        self.trajectories += result.trajectories
        self.tool_calls += result.tool_calls
        self.tokens += result.tokens
        self.errors += result.errors
        self.statuses.update(result.statuses)
        elapsed = max(1e-6, time.monotonic() - self.start)
        self.bar.set_postfix(
            tools_s=f"{self.tool_calls / elapsed:.1f}",
            tok_s=f"{self.tokens / elapsed:.0f}",
            errors=self.errors,
        )
        self.bar.update(result.trajectories)

    def close(self) -> None:
        self.bar.close()

    def summary(self) -> dict[str, Any]:
        elapsed = time.monotonic() - self.start
        return {
            "trajectories": self.trajectories,
            "already_done": self.already,
            "pending_at_start": self.total,
            "statuses": dict(self.statuses),
            "tool_calls": self.tool_calls,
            "tokens": self.tokens,
            "errors": self.errors,
            "wall_s": round(elapsed, 2),
            "trajectories_per_s": round(self.trajectories / elapsed, 3) if elapsed else 0.0,
            "tool_calls_per_s": round(self.tool_calls / elapsed, 3) if elapsed else 0.0,
            "tokens_per_s": round(self.tokens / elapsed, 1) if elapsed else 0.0,
        }


class _Stop:
    """SIGINT/SIGTERM -> a flag the driver checks; the previous handlers come back afterwards."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Stop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: give up on a clean flush
            raise KeyboardInterrupt
        self.requested, self.signal = True, signal.Signals(signum).name
        log.warning("%s received: finishing writes and flushing shards (again to abort)", self.signal)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def tasks_per_worker(cfg: Config) -> int:
    """Tasks submitted to a worker at once: twice what fills its rollout slots.

    A task comes back only when its slowest rollout ends, so with just enough tasks to fill the
    slots, every early-finishing rollout leaves a slot idle until its siblings are done. A
    second slot-full of rollouts queued on the worker's slot semaphore keeps every slot busy
    (queued rollouts hold nothing but their task record).
    """
    if cfg.synth.tasks_in_flight > 0:
        return cfg.synth.tasks_in_flight
    return 2 * math.ceil(cfg.synth.in_flight / max(1, cfg.synth.rollouts)) + 2


def run_synth(
    cfg: Config,
    store: RunStore,
    *,
    teacher_base_url: str | None = None,
    use_ray: bool = True,
    ray_address: str | None = None,
    tools_factory: ToolsFactory | None = None,
    progress: bool = True,
    ray_init: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every pending (task, rollout); returns the summary (also saved in report.json).

    Settings that cannot take effect (a teacher concurrency beyond the local ports or the open
    files this process may have) stop it here, before any work, with the reason and the fix.
    """
    preflight(cfg)
    with RunLock(store.root), DriverLease(store), _Stop() as stop:
        store.clear_temporaries()  # half-written shards of a killed run (never complete ones)
        record_tools(cfg, store)
        items, todo, done = pending_work(cfg, store)
        meter = Progress(todo, done, enabled=progress)
        try:
            if use_ray:
                pool: _Pool = _RayPool(cfg, store, teacher_base_url, tools_factory, ray_address, ray_init)
            else:
                pool = _LocalPool(cfg, store, teacher_base_url, tools_factory)
            pool_size = pool.size
            try:
                workers = asyncio.run(_drive(pool, items, meter, stop, tasks_per_worker(cfg)))
            finally:
                pool.shutdown()
        finally:
            meter.close()
    summary = meter.summary()
    summary["interrupted"] = stop.signal
    summary["teacher"] = _sum_dicts([w.get("teacher", {}) for w in workers])
    summary["executor"] = _sum_dicts([w.get("executor", {}) for w in workers])
    summary["collector"] = _sum_dicts([w.get("collector", {}) for w in workers])
    tools = [w.get("tools", {}) for w in workers]
    summary["tools"] = {
        name: _sum_dicts([t.get(name, {}) for t in tools]) for name in {n for t in tools for n in t}
    }
    summary["sizing"] = sizing(
        summary,
        requests_per_s=cfg.teacher.requests_per_s,
        in_flight=cfg.synth.in_flight,
        workers=pool_size,
    )
    summary["written"] = sum(w.get("written", 0) for w in workers)
    summary["unwritten"] = sum(w.get("buffered", 0) for w in workers)  # a failed final write
    store.update_report("synth", summary)
    return summary


def preflight(cfg: Config) -> int:
    """Check a synth worker's limits can take effect on this machine, raising the soft file
    limit to fit (a worker on another node checks again as it starts); returns the files needed.
    Raises TeacherError or OpenFilesError saying what to change."""
    check_concurrency(cfg.teacher.concurrency)
    sandboxes = pool_ceiling(cfg.tools.code)
    needed = files_needed(cfg.teacher.concurrency, sandboxes)
    ensure_open_files(
        needed, f"a synth worker (teacher.concurrency={cfg.teacher.concurrency}, {sandboxes} sandbox workers)"
    )
    return needed


def _sum_dicts(dicts: list[dict[str, Any]]) -> dict[str, Any]:
    """Counters add up across workers; rates, means and limits are averaged, except the teacher
    pace and the pace the endpoint states, which workers split: the run's is their sum; tails (p99_, peak_) are the worst worker's."""
    out: dict[str, Any] = {}
    averaged: dict[str, list[float]] = collections.defaultdict(list)
    for d in dicts:
        for key, value in d.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                out.setdefault(key, value)
            elif key.startswith(("p99_", "peak_")):  # a tail: the worst worker's
                out[key] = max(out.get(key, value), value)
            elif key not in ("paced_rate_per_s", "stated_rate_per_s") and (
                "rate" in key or "mean" in key or key.endswith("_limit")
            ):
                averaged[key].append(value)
            else:
                out[key] = round(out.get(key, 0) + value, 4)
    for key, values in averaged.items():
        out[key] = round(sum(values) / len(values), 4)
    return out


# ------------------------------------------------------------------- one scheduling loop


class _Pool(Protocol):
    """Workers the driver submits tasks to: in this event loop, or Ray actors."""

    size: int

    def submit(self, index: int, item: WorkItem) -> Awaitable[TaskResult]: ...

    async def close(self) -> list[dict[str, Any]]:
        """Flush every worker's buffer; their stats."""
        ...

    def shutdown(self) -> None: ...


async def _drive(
    pool: _Pool, items: Iterator[WorkItem], meter: Progress, stop: _Stop, limit: int
) -> list[dict[str, Any]]:
    """The scheduling loop: keep up to `limit` tasks submitted per worker (the least loaded
    first), collect results as they come, stop submitting on a signal; then flush the workers."""
    load = [0] * pool.size
    running: dict[asyncio.Future[TaskResult], int] = {}  # result -> worker index
    try:
        exhausted = False
        while not stop.requested:
            while not exhausted and min(load) < limit:
                item = next(items, None)
                if item is None:
                    exhausted = True
                    break
                index = load.index(min(load))
                running[asyncio.ensure_future(pool.submit(index, item))] = index
                load[index] += 1
            if not running:
                break
            done, _ = await asyncio.wait(running, timeout=0.5, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                load[running.pop(future)] -= 1
                _collect(future, meter)
    finally:
        for future in running:
            future.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        stats = await pool.close()
    return stats


def _collect(future: asyncio.Future[TaskResult], meter: Progress) -> None:
    if future.cancelled():
        return
    if (exc := future.exception()) is not None:  # a worker crash: its items are redone next run
        log.error("task failed in a worker: %s", exc)
        meter.errors += 1
        return
    meter.add(future.result())


class _LocalPool:
    """One SynthWorker in the driver's own event loop (tests, small runs, debugging)."""

    size = 1

    def __init__(
        self, cfg: Config, store: RunStore, teacher_base_url: str | None, tools_factory: ToolsFactory | None
    ) -> None:
        self.worker = SynthWorker(
            cfg,
            _worker_location(store, absolute=False),
            teacher_base_url=teacher_base_url,
            tools_factory=tools_factory,
        )

    def submit(self, index: int, item: WorkItem) -> Awaitable[TaskResult]:
        return self.worker.run_task(item)

    async def close(self) -> list[dict[str, Any]]:
        return [await self.worker.close()]

    def shutdown(self) -> None:
        pass


class _RayPool:
    """`synth.workers` Ray actors (a local Ray, or the cluster at `ray_address`); their results
    are Ray object refs, which asyncio awaits."""

    def __init__(
        self,
        cfg: Config,
        store: RunStore,
        teacher_base_url: str | None,
        tools_factory: ToolsFactory | None,
        ray_address: str | None,
        ray_init: dict[str, Any] | None,
    ) -> None:
        import ray

        self.started_here = not ray.is_initialized()
        if self.started_here:
            options: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "ignore_reinit_error": True,
            }
            if ray_address:
                options["address"] = ray_address
            options.update(ray_init or {})
            ray.init(**options)
        self.size = max(1, cfg.synth.workers)
        actor = ray.remote(num_cpus=0)(_RayWorker)
        self.workers = [
            actor.options(max_concurrency=10_000).remote(
                cfg,
                _worker_location(store),
                teacher_base_url,
                tools_factory,
                index,
                self.size,
                prompts.override_texts(),
            )
            for index in range(self.size)
        ]

    def submit(self, index: int, item: WorkItem) -> Awaitable[TaskResult]:
        return self.workers[index].run_task.remote(item)

    async def close(self) -> list[dict[str, Any]]:
        closing = asyncio.gather(*(w.close.remote() for w in self.workers))
        return list(await asyncio.wait_for(closing, timeout=300))

    def shutdown(self) -> None:
        import ray

        for worker in self.workers:
            with contextlib.suppress(Exception):
                ray.kill(worker)
        if self.started_here:
            ray.shutdown()


def _worker_location(store: RunStore, *, absolute: bool = True) -> str:
    """Where a worker finds the run: the address of a remote run (workers on other nodes
    write there), else the folder, absolute for a Ray worker (a shared disk on a cluster)."""
    if store.remote:
        return store.location
    return str(store.root.resolve() if absolute else store.root)


class _RayWorker:
    """The Ray actor: a SynthWorker on the actor's event loop (async methods run concurrently)."""

    def __init__(
        self,
        cfg: Config,
        run_dir: str,
        teacher_base_url: str | None,
        tools_factory,
        index: int,
        workers: int,
        prompt_texts: dict[str, str],
    ):
        self.worker = SynthWorker(
            cfg,
            run_dir,
            teacher_base_url=teacher_base_url,
            tools_factory=tools_factory,
            worker_id=index,
            workers=workers,
            prompt_texts=prompt_texts,
        )

    async def run_task(self, item: WorkItem) -> TaskResult:
        return await self.worker.run_task(item)

    async def close(self) -> dict[str, Any]:
        return await self.worker.close()
