"""Host side of the code sandbox: a warm pool of zygote workers, one call at a time each.

Each worker is one long-lived isolated process (see `isolation` and `sandbox_worker`) with PIL,
numpy and cv2 already imported, so a call costs a fork plus two pipe messages instead of an
interpreter start and imports. Inputs are hard-linked (or copied) into the worker's staging
folder, which the sandbox sees read-only at /input; large PNGs as their decode-friendly copies
(`fast_inputs`: same pixels, a fraction of the decode). Each zygote keeps large inputs decoded
(`decode_cache`), so a call goes, when it can without waiting, to the free worker that last
staged its first image. A worker that stops answering, or whose zygote fails inside its own
machinery (`internal` in the reply), is killed and restarted, and the caller gets an error
result; the pool keeps serving and never reuses a worker left in an unknown state.

The pool starts `tools.code.workers` zygotes and grows while calls queue for a free one, one
start at a time, up to `tools.code.max_workers`: at hundreds of trajectories in flight two
workers left code calls waiting seconds each, while at a few in flight more would only hold
memory. How long calls waited (mean, p99) is in `stats()` and so in the synth summary.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from array import array
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pipeline.config import CodeToolConfig
from pipeline.thread_work import wait_through_cancel
from stages.tools.code.fast_inputs import FastInputs
from stages.tools.code.isolation import SANDBOX_ENV, WorkerDirs, launch_argv, module_fds, resolve_isolation
from stages.tools.code.seccomp_filter import program_fd

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds the host waits beyond the wall limit before declaring a worker hung.
GRACE_S = 5.0
START_TIMEOUT_S = 60.0
#: First images remembered with the worker that last staged them (for decode-cache affinity).
_AFFINITY_ENTRIES = 4096
#: uids per worker: the stateless child's, then one per live session child (cut to fit).
UIDS_PER_WORKER = 64


@dataclass
class SandboxResult:
    stdout: str = ""
    error: str | None = None
    files: list[Path] = field(default_factory=list)  # images the code saved, in creation order
    names: list[str] = field(default_factory=list)  # their file names under /output
    timings: dict[str, float] = field(default_factory=dict)


def _limits(cfg: CodeToolConfig) -> dict:
    return {
        "cpu_s": cfg.cpu_s,
        "wall_s": cfg.wall_s,
        "memory_mb": cfg.memory_mb,
        "max_processes": cfg.max_processes,
        "max_output_bytes": cfg.max_output_bytes,
        "max_images": cfg.max_images,
        "max_file_bytes": cfg.max_file_mb * 1024 * 1024,
        "session_cpu_calls": cfg.session_cpu_calls,
    }


def _file_key(info: os.stat_result) -> tuple[int, int, int]:
    """Which version of which file: what staging compares and what affinity remembers."""
    return (info.st_dev, info.st_ino, info.st_mtime_ns)


def _inputs(
    copies: list[tuple[str, Path, Path]],
) -> tuple[list[tuple[str, Path]], tuple[int, int, int] | None]:
    """(name, what to stage) for each input, its fast copy unless evicted meanwhile, and the
    first one's identity (which worker staged it last); stats, so in a thread."""
    staged = [(name, copy if copy.exists() else original) for name, copy, original in copies]
    return staged, _identity(staged[0][1])


def _prepare(worker: Worker, staged: list[tuple[str, Path]]) -> None:
    """Stage a call's inputs in the worker's /input and empty its hand-over folder."""
    worker.stage(staged)
    for stale in worker.dirs.xfer.iterdir():
        stale.unlink(missing_ok=True)


def _take_files(xfer: Path, files: list[dict], out_dir: Path) -> list[Path]:
    """Move the images a call saved (named by the zygote) from the hand-over folder to `out_dir`."""
    taken = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in files:
        source = xfer / Path(f["path"]).name
        target = out_dir / source.name
        shutil.move(source, target)
        taken.append(target)
    return taken


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        return _file_key(path.stat())
    except OSError:
        return None


#: Sandbox workers one process may run: each gets its own uid out of a block of this many.
UID_SLOTS = 64


def pool_ceiling(cfg: CodeToolConfig) -> int:
    """How many sandbox workers a pool may grow to: `max_workers`, else the machine's cores."""
    if cfg.max_workers is not None:
        return max(cfg.workers, cfg.max_workers)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(cfg.workers, min(UID_SLOTS, cores))


def _uid_base() -> int:
    """Unprivileged uids private to this process's workers (RLIMIT_NPROC counts per uid)."""
    return 200_000 + (os.getpid() % 100_000) * UID_SLOTS * UIDS_PER_WORKER


def _worker_uid(index: int) -> int:
    """A worker's uid block: its zygote's uid, then one uid for each live session child."""
    return _uid_base() + (index % UID_SLOTS) * UIDS_PER_WORKER


class Worker:
    """One zygote process and its staging folders."""

    def __init__(self, index: int, mode: str, root: Path, cfg: CodeToolConfig) -> None:
        self.index = index
        self.mode = mode
        self.cfg = cfg
        self.dirs = WorkerDirs(root / f"w{index}")
        self.proc: asyncio.subprocess.Process | None = None
        self.lock = asyncio.Lock()
        self.staged: dict[str, tuple[int, int, int]] = {}  # name -> `_file_key` of what is staged

    async def start(self) -> None:
        self.dirs.create()
        output_bytes = max(self.cfg.max_file_mb, 1) * 1024 * 1024 * max(self.cfg.max_images, 1)
        seccomp_fd = program_fd() if self.mode == "bwrap" else None
        files = module_fds() if self.mode == "bwrap" else {}
        passed = [*files.values()] + ([] if seccomp_fd is None else [seccomp_fd])
        argv, paths = launch_argv(
            self.mode,
            self.dirs,
            output_bytes=output_bytes,
            tmp_bytes=self.cfg.tmp_mb << 20,
            seccomp_fd=seccomp_fd,
            files=files,
        )
        uid = None if self.mode == "unsafe-local" or os.geteuid() != 0 else _worker_uid(self.index)
        zygote_cfg = {
            "paths": paths,
            "uid": uid,
            # bwrap and namespaces give the zygote its own PID namespace: unsafe-local does not
            "own_pid_namespace": self.mode != "unsafe-local",
            "session_uids": min(self.cfg.max_sessions, UIDS_PER_WORKER - 1),
            "max_sessions": self.cfg.max_sessions,
            "decode_cache_bytes": self.cfg.decode_cache_mb << 20,
            "decode_cache_min_pixels": self.cfg.decode_cache_min_pixels,
            "nice": self.cfg.nice,
        }
        log_file = open(self.dirs.root / "worker.log", "ab")  # noqa: SIM115 - owned by the process
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv,
                json.dumps(zygote_cfg),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                env=dict(SANDBOX_ENV),
                start_new_session=True,
                pass_fds=passed,
            )
        finally:
            log_file.close()
            for fd in passed:
                os.close(fd)
        self.staged.clear()
        ready = await asyncio.wait_for(self._recv(), START_TIMEOUT_S)
        if not ready or not ready.get("ready"):
            raise RuntimeError(
                f"sandbox worker {self.index} failed to start; see {self.dirs.root / 'worker.log'}"
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def _send(self, message: dict) -> None:
        assert self.proc and self.proc.stdin
        body = json.dumps(message).encode()
        self.proc.stdin.write(struct.pack(">I", len(body)) + body)
        await self.proc.stdin.drain()

    async def _recv(self) -> dict | None:
        assert self.proc and self.proc.stdout
        try:
            head = await self.proc.stdout.readexactly(4)
            return json.loads(await self.proc.stdout.readexactly(struct.unpack(">I", head)[0]))
        except asyncio.IncompleteReadError:
            return None

    async def request(self, message: dict, timeout: float) -> dict | None:
        """One round trip; None (and a dead worker) if the zygote hangs or dies."""
        try:
            await self._send(message)
            return await asyncio.wait_for(self._recv(), timeout)
        except (asyncio.TimeoutError, ConnectionError, BrokenPipeError):
            await self.kill()
            return None

    def stage(self, images: list[tuple[str, Path]]) -> None:
        """Make exactly these images visible at /input/<name> (hard links when possible)."""
        wanted = {name for name, _ in images}
        for name in list(self.staged):
            if name not in wanted:
                (self.dirs.input / name).unlink(missing_ok=True)
                del self.staged[name]
        for name, path in images:
            if "/" in name or name.startswith("."):
                raise ValueError(f"bad image name {name!r}")
            info = path.stat()
            key = _file_key(info)
            if self.staged.get(name) == key:
                continue
            target = self.dirs.input / name
            target.unlink(missing_ok=True)
            try:
                if info.st_mode & 0o004 == 0:
                    raise OSError("not world-readable: copy instead")
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
                target.chmod(0o644)
            self.staged[name] = key

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.proc.wait(), 5)
        self.staged.clear()


class SandboxPool:
    """Warm workers; `run` picks a free one (or the one holding the session) and executes code."""

    def __init__(self, cfg: CodeToolConfig, root: Path | None = None) -> None:
        self.cfg = cfg
        self.mode = resolve_isolation(cfg.isolation)
        self._tmp = None if root else tempfile.TemporaryDirectory(prefix="trajforge-sandbox-")
        self.root = Path(root or self._tmp.name)  # type: ignore[union-attr]
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.workers = [Worker(i, self.mode, self.root, cfg) for i in range(max(1, cfg.workers))]
        self.max_workers = max(len(self.workers), pool_ceiling(cfg))
        if self.max_workers > UID_SLOTS:
            raise ValueError(
                f"tools.code.max_workers={self.max_workers}: one process runs at most {UID_SLOTS} sandbox "
                "workers (each has its own uid); run more synth.workers instead"
            )
        self._growing: asyncio.Task[None] | None = None
        self.grow_failures = 0
        # a held worker's file work (staging inputs, moving saved images out) runs on threads
        # of its own, one per worker: queued behind the loop's shared pool (image decodes,
        # folder removals) a sandbox process would sit idle
        self._file_threads = ThreadPoolExecutor(self.max_workers, thread_name_prefix="sandbox-files")
        self.waits = array("d")  # each call's wait for a worker (seconds), for mean and p99
        self.fast_inputs = FastInputs(
            self.root / "fast-inputs",
            min_pixels=cfg.fast_inputs_min_pixels,
            max_bytes=cfg.fast_inputs_cache_mb << 20,
            max_pixels=cfg.max_image_pixels,
        )
        self.sessions: dict[str, Worker] = {}
        self._ids = itertools.count()
        # calls waiting for a worker, in order: (the worker they need or None, their future)
        self._waiters: collections.deque[tuple[Worker | None, asyncio.Future[Worker]]] = collections.deque()
        self.calls = 0
        self.restarts = 0
        self.decoded = 0  # images the zygotes decoded into their caches
        self.affine = 0  # calls sent to the worker that last staged their first image
        self._last_worker: collections.OrderedDict[tuple[int, int, int], Worker] = collections.OrderedDict()
        self.seconds: collections.Counter[str] = collections.Counter()  # summed call timings

    async def start(self) -> None:
        """Start every worker now (otherwise the first call pays the start-up)."""
        await asyncio.gather(*(w.start() for w in self.workers if not w.alive))

    async def _acquire(self, preferred: Worker | None, likely: Worker | None = None) -> Worker:
        """`preferred` (a session's worker) or else the first free one, `likely` first if it is free.

        A call that finds every worker busy starts one more (up to `max_workers`), and takes
        whichever is free first: the new one or one released meanwhile. Waiting calls queue in
        order and a freed worker is handed to the first that can take it: waking every waiter
        on each release (a condition's notify_all) cost a thousand wake-ups per sandbox call
        when a thousand trajectories' first crops arrived at once.
        """
        candidates = [preferred] if preferred else ([likely] if likely else []) + self.workers
        for worker in candidates:
            if not worker.lock.locked():
                await worker.lock.acquire()  # free: taken at once, nothing to wait for
                return worker
        if preferred is None:
            self._grow()
        entry = (preferred, asyncio.get_running_loop().create_future())
        self._waiters.append(entry)
        try:
            return await entry[1]
        except asyncio.CancelledError:
            if entry[1].done() and not entry[1].cancelled():  # handed one just as it was cancelled
                self._hand_over(entry[1].result())
            else:
                self._waiters.remove(entry)
            raise

    def _hand_over(self, worker: Worker) -> None:
        """A worker (its lock held) goes to the first waiting call that can take it, else is freed."""
        for entry in self._waiters:
            preferred, future = entry
            if future.done():  # cancelled: its call takes the entry out when it resumes
                continue
            if preferred is None or preferred is worker:
                self._waiters.remove(entry)  # the first one, nearly always
                future.set_result(worker)
                return
        worker.lock.release()

    def _grow(self) -> None:
        """Start one more worker in the background, unless one is starting or the pool is full."""
        if len(self.workers) >= self.max_workers or (self._growing and not self._growing.done()):
            return
        self._growing = asyncio.get_running_loop().create_task(self._add_worker())

    async def _add_worker(self) -> None:
        worker = Worker(len(self.workers), self.mode, self.root, self.cfg)
        try:
            await worker.start()
        except Exception as exc:  # the pool keeps serving with the workers it has
            self.grow_failures += 1
            self.max_workers = len(self.workers)
            await worker.kill()
            log.warning(
                "sandbox pool stays at %d workers: starting another failed: %s", len(self.workers), exc
            )
            return
        self.workers.append(worker)
        await worker.lock.acquire()  # a new worker: free
        self._hand_over(worker)
        if any(preferred is None for preferred, _ in self._waiters):
            self._growing = None  # this start is over
            self._grow()  # calls still wait for any worker: one more, as their first try did

    async def _file_work(self, work: Callable[..., T], *args: Any) -> T:
        """`work` on the pool's file threads, for the worker a call holds. A call cancelled
        meanwhile still waits for it before the worker is released: the next call would stage
        into, or sweep, the same folders while this thread still moved files there."""
        return await wait_through_cancel(
            asyncio.get_running_loop().run_in_executor(self._file_threads, work, *args)
        )

    async def _release(self, worker: Worker) -> None:
        self._hand_over(worker)

    async def run(
        self, code: str, images: list[tuple[str, Path]], out_dir: Path, *, session: str | None = None
    ) -> SandboxResult:
        """Run `code` with `images` at /input/<name>; saved images are moved into `out_dir`."""
        t0 = time.perf_counter()
        copies = [(name, await self.fast_inputs.for_sandbox(path), path) for name, path in images]
        staged, first = await asyncio.to_thread(_inputs, copies) if copies else ([], None)
        t_fast = time.perf_counter()
        likely = self._last_worker.get(first) if first else None
        worker = await self._acquire(self.sessions.get(session) if session else None, likely)
        self.affine += likely is worker
        try:
            t_start = time.perf_counter()
            if not worker.alive:
                if worker.proc is not None:
                    self.restarts += 1
                await worker.start()
                self._forget_sessions(worker)
            t1 = time.perf_counter()
            if session:
                self.sessions[session] = worker
            if first:
                self._last_worker[first] = worker
                self._last_worker.move_to_end(first)
                while len(self._last_worker) > _AFFINITY_ENTRIES:
                    self._last_worker.popitem(last=False)
            # file work in a thread (the worker is ours until released): links, or copies, of
            # the inputs and the hand-over folder's sweep never stall the event loop
            await self._file_work(_prepare, worker, staged)
            t2 = time.perf_counter()
            message = {
                "id": f"c{next(self._ids)}",
                "code": code,
                "images": [name for name, _ in images],
                "limits": _limits(self.cfg),
                "session": session,
            }
            reply = await worker.request(message, self.cfg.wall_s + GRACE_S)
            t3 = time.perf_counter()
            self.calls += 1
            self.decoded += int((reply or {}).get("decoded", 0))
            if reply is None:
                self.restarts += 1
                self._forget_sessions(worker)
                return SandboxResult(
                    error="sandbox worker stopped responding and was restarted; the call was lost",
                    timings={"total_s": t3 - t0},
                )
            if reply.get("internal"):  # the zygote's own state is suspect: replace it
                log.warning(
                    "sandbox worker %d failed internally (%s); replacing it", worker.index, reply.get("error")
                )
                await worker.kill()
                self.restarts += 1
                self._forget_sessions(worker)
                return SandboxResult(
                    error=f"{reply.get('error')}; the worker was replaced, the call was lost",
                    timings={"total_s": t3 - t0},
                )
            # moved out before the worker is released and reused
            files = await self._file_work(_take_files, worker.dirs.xfer, reply.get("files", []), out_dir)
            timings = {
                "fast_inputs_s": t_fast - t0,
                "queue_s": t_start - t_fast,
                "start_s": t1 - t_start,
                "stage_s": t2 - t1,
                "exec_s": float(reply.get("exec_s", 0.0)),
                "cpu_s": float(reply.get("cpu_s", 0.0)),  # inside the sandbox
                "code_cpu_s": float(reply.get("code_cpu_s", 0.0)),  # of which the code's own process
                "roundtrip_s": t3 - t2,
                "total_s": t3 - t0,
            }
            self.seconds.update(timings)
            self.waits.append(timings["queue_s"])
            return SandboxResult(
                stdout=reply.get("stdout", ""),
                error=reply.get("error"),
                files=files,
                names=[f["name"] for f in reply.get("files", [])],
                timings=timings,
            )
        finally:
            await self._release(worker)

    def _forget_sessions(self, worker: Worker) -> None:
        for key in [k for k, w in self.sessions.items() if w is worker]:
            del self.sessions[key]

    async def close_session(self, session: str) -> None:
        worker = self.sessions.pop(session, None)
        if worker is None or not worker.alive:
            return
        await self._acquire(worker)
        try:
            await worker.request({"id": "close", "op": "close", "session": session}, GRACE_S)
        finally:
            await self._release(worker)

    def wait_stats(self) -> dict[str, float]:
        """Seconds calls waited for a free worker: mean, p99 and the longest."""
        if not self.waits:
            return {"mean_queue_s": 0.0, "p99_queue_s": 0.0, "peak_queue_s": 0.0}
        ordered = sorted(self.waits)
        return {
            "mean_queue_s": round(sum(ordered) / len(ordered), 4),
            "p99_queue_s": round(ordered[int(0.99 * (len(ordered) - 1))], 4),
            "peak_queue_s": round(ordered[-1], 4),
        }

    async def aclose(self) -> None:
        if self._growing is not None and not self._growing.done():
            self._growing.cancel()
            with contextlib.suppress(BaseException):
                await self._growing
        await self.fast_inputs.aclose()
        for worker in self.workers:
            if worker.proc is not None and worker.proc.stdin is not None:
                with contextlib.suppress(Exception):
                    worker.proc.stdin.close()
            await worker.kill()
        self.sessions.clear()
        self._file_threads.shutdown(wait=False)
        if self._tmp is not None:
            self._tmp.cleanup()
