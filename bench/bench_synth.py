"""Synth benchmarks against the offline world's oracle on loopback; every figure a ratio measured
side by side in this one run.

1. latency hiding: trajforge (real tools, Ray) vs a bare asyncio + openai loop replaying
   trajforge's very requests at the same concurrency (no tools), and vs the ideal
   in_flight / (calls per trajectory x latency). Two bare loops: the SDK as a user calls it
   (chat.completions.create over httpx) and trajforge's own wire path (raw-body post over
   aiohttp), which isolates what tools and the agent loop cost. Two windows: the whole run,
   and the steady state (Little's law over the trajectories that ended while every slot was
   busy: the whole run of 3 waves is dominated by the last wave's tail, which the bare loop
   has too). Each side meets a freshly started world server (cold oracle caches);
2. rate limits: the server admits R requests/s (429 + Retry-After beyond), stating its bucket in
   OpenAI's x-ratelimit headers or not (then the client learns it from 429s, starting unpaced or
   with a slow start); sustained admitted rate / R and the share of requests rejected;
3. cost per trajectory: CPU ms per trajectory, split (by stack sampling, scaled to the measured
   process CPU) into teacher client, tools, image encoding, storage, agent loop and runtime
   (the sampler reads stacks when the loop's thread lets go of the GIL, in a select or a
   socket write, so it bills those a share of what ran before them: `py-spy record --gil`
   gives a truer per-function split);
   images encoded per trajectory vs images sent;
4. memory: peak RSS of a synth process at N and 10N tasks;
5. cyclic garbage (`--only cycles`): what the collector finds unreachable per trajectory
   (`gc.DEBUG_SAVEALL` over in-process runs of N and 2N tasks, so start-up and close cancel),
   by type: what full collections exist for, and what freezing a worker's survivors would leak.

The world server runs in its own process (`trajforge world serve`), so its CPU is never counted
as ours. Run: `python bench/bench_synth.py [--quick] [--only latency] [--tasks N] [--set k=v]`
(--quick: smaller sizes, same shapes).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import gc
import importlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import load_config  # noqa: E402
from pipeline.store import RunStore  # noqa: E402

WORLD = REPO / "worlds" / "default"


# ------------------------------------------------------------------------------ world server


class World:
    """`trajforge world serve` in a subprocess; knobs changed live via /admin/knobs."""

    def __init__(self) -> None:
        from world import build_world, is_built
        from world.build import DEFAULT_ENTITIES, DEFAULT_TASKS

        if not is_built(WORLD, seed=0, entities=DEFAULT_ENTITIES, tasks=DEFAULT_TASKS):  # and this version
            build_world(WORLD, seed=0)
        self.start()

    def start(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                "world",
                "serve",
                "--world",
                str(WORLD),
                "--port",
                str(self.port),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                httpx.get(self.url + "/admin/knobs", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("world server did not start")

    def knobs(self, **knobs) -> dict:
        return httpx.post(self.url + "/admin/knobs", json=knobs, timeout=5).json()

    def stats(self) -> dict:
        return httpx.get(self.url + "/admin/knobs", timeout=5).json()["stats"]

    def cpu_s(self) -> float:
        """The server process's CPU seconds so far (user + system, all its threads)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def restart(self) -> None:
        """A fresh server (same knobs): each side of a comparison meets cold oracle caches."""
        knobs = httpx.get(self.url + "/admin/knobs", timeout=5).json()["knobs"]
        self.close()
        self.start()
        self.knobs(**knobs)


def config(tmp: Path, name: str, world: World, **sets):
    base = {
        "run.root": str(tmp),
        "run.name": name,
        "tools.search.corpus_dir": str(WORLD / "corpus"),
        "tools.visit.allow_hosts": json.dumps(["world.trajforge.local"]),
        "tools.visit.host_overrides": json.dumps({"world.trajforge.local": f"127.0.0.1:{world.port}"}),
        "teacher.cache": "false",
    }
    base.update({k: str(v) for k, v in sets.items()})
    return load_config(None, [f"{k}={v}" for k, v in base.items()])


def prepare(cfg) -> RunStore:
    import logging

    from stages.tasks.seeds import prepare_tasks

    store = RunStore(cfg.run.dir)
    prepare_tasks(cfg, store, logging.getLogger("bench"))
    return store


def synth(cfg, store, world: World, *, use_ray: bool, tools_factory=None) -> dict:
    from stages.synth.runner import run_synth

    return run_synth(
        cfg,
        store,
        teacher_base_url=world.url + "/v1",
        use_ray=use_ray,
        progress=False,
        ray_init={"num_cpus": 2},
        tools_factory=tools_factory,
    )


# ------------------------------------------------------------------------ in-worker probe

PROBE_FILE = "bench-probe.json"
#: Seconds from a loop's start after which its lag also counts as "after the start": the first
#: trajectories all start at once (a thousand connections opened, every task image prepared),
#: which a long run meets once.
START_S = 30.0
_PROBE: dict = {}


def probed_tools(cfg, mode: str, run_dir: Path, *, turn_profile: bool = False) -> dict:
    """The run's own tools, plus (once per worker process) a probe in the worker's event loop.

    Works on any version of the runner (it only needs the tools factory hook), so a before and
    an after are measured alike. The probe ticks every 20 ms and records how late each tick
    ran (loop lag: what every trajectory in flight waits on top of its own work), times each
    full garbage collection (`gc.callbacks`), and samples the process's open files; it
    rewrites RUN/bench-probe.json every second with those and the process's CPU seconds. Its
    watchdog samples stacks during stalls; with `turn_profile` (`--turn-profile`),
    `_IterationProfile` keeps the loop's longest turns: how many callbacks each ran and the
    slowest of them, so a stall reads as one long call or a crowd of short ones (it costs ~5 us
    a callback, in the driver's CPU figure and in the turns it measures).
    """
    from stages.tools.registry import run_tools

    tools = run_tools(cfg, mode, run_dir)  # loading the indexes is start-up: not counted
    return {**tools, "_bench_probe": _ProbeStarter(Path(run_dir) / PROBE_FILE, turn_profile)}


class _ProbeStarter:
    """Not a tool the teacher sees (the prompts list the configured tools): it starts the probe
    from the first trajectory's `warm` hook, which runs in the worker's event loop (a runner
    may build its tools in a thread)."""

    def __init__(self, path: Path, turn_profile: bool = False) -> None:
        self.path, self.turn_profile = path, turn_profile

    def warm(self, ctx) -> None:
        if not _PROBE:
            probe = _probe(self.path, turn_profile=self.turn_profile)
            _PROBE["task"] = asyncio.get_running_loop().create_task(probe)

    async def aclose(self) -> None:
        pass


async def _probe(path: Path, tick: float = 0.02, *, turn_profile: bool = False) -> None:

    lags: list[float] = []
    late_lags: list[float] = []  # after the start (START_S): what a long run meets
    pauses: list[float] = []
    started: list[float] = []

    def on_gc(phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            pauses.append(time.perf_counter() - started.pop())

    gc.callbacks.append(on_gc)
    iterations = _IterationProfile(asyncio.get_running_loop()) if turn_profile else None
    watchdog = _StallWatchdog(threading.get_ident())
    watchdog.start()
    cpu0, last_write = time.process_time(), time.monotonic()
    begun = last_write
    while True:
        before = time.perf_counter()
        watchdog.beat = before
        await asyncio.sleep(tick)
        lags.append(max(0.0, time.perf_counter() - before - tick))
        if time.monotonic() - begun > START_S:
            late_lags.append(lags[-1])
        if time.monotonic() - last_write >= 1.0:
            last_write = time.monotonic()
            ordered = sorted(lags)
            # written by the watchdog's thread: a file write on the probed loop stalled it
            # (5 of 8 stall samples at 1,000 in flight were the probe's own `open`)
            watchdog.report = (
                path,
                {
                    "cpu_s": time.process_time() - cpu0,
                    "lag_p99_ms": round(1000 * ordered[int(0.99 * (len(ordered) - 1))], 1),
                    "lag_max_ms": round(1000 * ordered[-1], 1),
                    "lag_max_after_start_ms": round(1000 * max(late_lags, default=0.0), 1),
                    "full_gc": len(pauses),
                    "full_gc_max_ms": round(1000 * max(pauses, default=0.0), 1),
                    "open_files_max": watchdog.open_files_max,
                    "gc_frozen": watchdog.frozen,
                    "stall_samples": watchdog.samples,
                    "stall_stacks": watchdog.top(),
                    "longest_stalls": watchdog.longest(),
                    "long_iterations": iterations.longest() if iterations else None,
                },
            )


class _IterationProfile:
    """What the probed loop's longest iterations ran: each turn of the loop runs every callback
    that was ready when it began, so a stall the watchdog sees on a CPU is one turn's callbacks.
    Times every callback (`Handle._run`; ~5 us each, most of it reading where a task's step
    begins) and, for a turn over `long_s`, keeps its length, its callback count and the
    slowest callbacks, a task's step named by where its coroutine was and where it stopped."""

    def __init__(self, loop, long_s: float = 0.03, slow_s: float = 0.002, keep: int = 8) -> None:
        self.long_s, self.slow_s, self.keep = long_s, slow_s, keep
        self.turns: list[dict] = []
        self._began = time.perf_counter()
        self._count = 0
        self._run_s = 0.0
        self._events = 0
        self._slow: list[tuple[float, str]] = []
        selector = loop._selector
        select = selector.select
        run = asyncio.events.Handle._run
        profile = self

        def timed_select(timeout=None):
            profile._end_turn()
            events = select(timeout)
            profile._began = time.perf_counter()
            profile._events = len(events)
            return events

        def timed_run(handle):
            where = profile._where(handle)  # a task's step runs from where its coroutine stopped
            start = time.perf_counter()
            try:
                return run(handle)
            finally:
                spent = time.perf_counter() - start
                profile._count += 1
                profile._run_s += spent
                if spent >= profile.slow_s:
                    profile._slow.append((spent, f"{where} -> {profile._where(handle)}"))

        selector.select = timed_select
        asyncio.events.Handle._run = timed_run

    def _end_turn(self) -> None:
        spent = time.perf_counter() - self._began
        if spent >= self.long_s:
            slowest = sorted(self._slow, key=lambda s: -s[0])[:5]
            self.turns.append(
                {
                    "ms": round(1000 * spent, 1),
                    "callbacks": self._count,
                    "callbacks_ms": round(1000 * self._run_s, 1),  # the rest: the loop's own (events, timers)
                    "io_events": self._events,
                    "slow_callbacks": len(self._slow),
                    "slow_ms": round(1000 * sum(t for t, _ in self._slow), 1),
                    "slowest": [[round(1000 * t, 1), name] for t, name in slowest],
                }
            )
            self.turns = sorted(self.turns, key=lambda t: -t["ms"])[: self.keep]
        self._count = 0
        self._run_s = 0.0
        self._slow = []

    @staticmethod
    def _where(handle) -> str:
        """A task's innermost awaiting frame (file:function:line), else the callback's name."""
        callback = getattr(handle, "_callback", None)
        task = getattr(callback, "__self__", None)
        if not isinstance(task, asyncio.Task):
            return getattr(callback, "__qualname__", "?")[:80]
        coro = task.get_coro()
        while getattr(coro, "cr_await", None) is not None and hasattr(coro.cr_await, "cr_frame"):
            coro = coro.cr_await
        frame = getattr(coro, "cr_frame", None)
        if frame is None:
            return "(done)"
        return f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}:{frame.f_lineno}"

    def longest(self) -> list[dict]:
        return list(self.turns)


class _StallWatchdog(threading.Thread):
    """While the probed loop is late (its tick over `late_s` overdue), sample what every thread
    of the process runs, every 10 ms: the loop thread's stack (its innermost frames) and the
    others' leaf frames, counted, so a stall can be told apart as one long call, many short
    callbacks, or another thread holding the GIL."""

    def __init__(self, loop_thread: int, late_s: float = 0.08, tick_s: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.loop_thread, self.late_s, self.tick_s = loop_thread, late_s, tick_s
        self.loop_tid = threading.get_native_id()  # made in the loop's thread
        self.beat = time.perf_counter()
        self.samples = 0
        self.stacks: collections.Counter[str] = collections.Counter()
        self.stalls: list[dict] = []
        # counted here, off the loop: listing /proc/self/fd (2,000 entries at 2,000 in flight)
        # and gc.get_freeze_count() (a walk of every frozen object) stalled the probed loop
        self.open_files_max = 0
        self.frozen = 0
        self.report: tuple[Path, dict] | None = None  # the probe's figures, for this thread to write

    def _schedstat(self) -> tuple[float, float]:
        """The loop thread's (seconds on a CPU, seconds runnable but waiting for one) so far."""
        try:
            fields = Path(f"/proc/self/task/{self.loop_tid}/schedstat").read_text().split()
            return int(fields[0]) / 1e9, int(fields[1]) / 1e9
        except (OSError, ValueError, IndexError):
            return 0.0, 0.0

    def run(self) -> None:
        me = threading.get_ident()
        # the loop thread's scheduler counts every 10 ms (a /proc read: ~0.07 ms of CPU per
        # trajectory at 1,000 in flight), so a stall's own share can be taken from its start
        recent: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=64)
        stall: tuple[float, float, float] | None = None  # (beat, on CPU, waiting) at its start
        counted_at = frozen_at = -1e9
        while True:
            time.sleep(0.01)
            now = time.perf_counter()
            recent.append((now, *self._schedstat()))
            if now - counted_at >= 1.0:
                counted_at = now
                self.open_files_max = max(self.open_files_max, len(os.listdir("/proc/self/fd")))
            if now - frozen_at >= 30.0:
                frozen_at = now
                self.frozen = gc.get_freeze_count()
            if self.report is not None:
                (path, figures), self.report = self.report, None
                path.write_text(json.dumps(figures))
            beat = self.beat
            if now - beat < self.late_s + self.tick_s:
                if stall is not None and beat != stall[0]:  # the loop ticked again: the stall ended
                    self._record(stall, beat)
                    stall = None
                continue
            if stall is None:  # the counts as the loop's last tick was due
                due = beat + self.tick_s
                start = min(recent, key=lambda r: abs(r[0] - due))
                stall = (beat, start[1], start[2])
            self.samples += 1
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                self.stacks[self._describe(frame, loop=ident == self.loop_thread)] += 1

    @staticmethod
    def _describe(frame, *, loop: bool) -> str:
        names = []
        while frame is not None and len(names) < (6 if loop else 2):
            code = frame.f_code
            names.append(f"{Path(code.co_filename).name}:{code.co_name}:{frame.f_lineno}")
            frame = frame.f_back
        return ("loop: " if loop else "other: ") + " < ".join(names)

    def _record(self, stall: tuple[float, float, float], next_beat: float) -> None:
        """One stall's length and where the loop thread's time went meanwhile: on a CPU (its own
        work: a long callback, a collection), waiting for a CPU (the machine's other processes
        had the cores), or neither (waiting for the GIL another thread held, or a blocking call).
        The counts are the watchdog's readings nearest the stall's start and end (10 ms apart)."""
        on_cpu, waiting = self._schedstat()
        self.stalls.append(
            {
                "ms": round(1000 * (next_beat - stall[0] - self.tick_s), 1),
                "on_cpu_ms": round(1000 * (on_cpu - stall[1]), 1),
                "waiting_for_cpu_ms": round(1000 * (waiting - stall[2]), 1),
            }
        )

    def top(self, n: int = 25) -> list[tuple[str, int]]:
        return self.stacks.most_common(n)

    def longest(self, n: int = 5) -> list[dict]:
        return sorted(self.stalls, key=lambda s: -s["ms"])[:n]


# ------------------------------------------------------------------------------ 1. latency


def recorded_conversations(cfg, store: RunStore) -> list[tuple[list[dict], int, dict]]:
    """trajforge's own teacher requests, rebuilt from its trajectories for the bare loop.

    Per trajectory: the full OpenAI message list (system + question with the task images, then
    each assistant turn and its observation, images as the same data URIs), how many calls it
    made (call i sends the first 2 + 2i messages) and its per-rollout request fields. Images
    are encoded here, before the bare loop's clock starts, so the baseline pays no encoding.
    """
    from pipeline.chat import ImageEncoder, observation_message, prompt_messages, to_openai_messages
    from pipeline.schema import Task, Trajectory
    from stages.synth import executor_prompt

    tasks = {t.task_id: t for t in store.iter_records("tasks", Task)}
    encoder = ImageEncoder(store.images, cfg.teacher.image_max_pixels)
    out = []
    for traj in store.read_records("raw", Trajectory):
        task = tasks[traj.task_id]
        messages = prompt_messages(executor_prompt(task.mode).text, task.question, list(task.images))
        for step in traj.steps:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": step.raw}]})
            messages.append(observation_message(step, cfg.synth.observation_role))
        out.append(
            (to_openai_messages(messages, encoder.data_uri), traj.teacher_calls, {"seed": traj.rollout})
        )
    return out


#: The two baselines: the SDK as a user calls it (chat.completions.create over its default
#: httpx pool), and trajforge's own wire path (the raw-body post over the aiohttp transport),
#: which leaves only what the tools and the agent loop cost between it and trajforge.
BARE_LOOPS = {"sdk_default": "create over httpx", "same_wire": "post over aiohttp"}


async def bare_loop(
    base_url: str, cfg, conversations: list[tuple[list[dict], int, dict]], in_flight: int, kind: str
) -> tuple[float, list[tuple[float, float, int]], dict]:
    """The baseline: a plain asyncio + openai loop sending trajforge's very requests, no tools.

    Returns the wall time, each trajectory's (started, finished, calls), started once it
    holds a slot, as trajforge's trajectories record theirs, and the loop's own figures: CPU
    ms per trajectory and the lag of a 20 ms tick (as the worker's probe measures it), the
    floor for trajforge's driver at the same load.
    """
    import httpx2
    import openai
    from openai.types.chat import ChatCompletion

    # a pool as large as the loop's concurrency, as its user would set it (both SDK transports
    # default to 1,000 connections, which would cap a bare loop beyond that)
    limits = httpx2.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    http = (
        openai.DefaultAioHttpClient(timeout=cfg.teacher.timeout_s, limits=limits)
        if kind == "same_wire"
        else openai.DefaultAsyncHttpxClient(timeout=cfg.teacher.timeout_s, limits=limits)
    )
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key="x", max_retries=0, timeout=cfg.teacher.timeout_s, http_client=http
    )
    slots = asyncio.Semaphore(in_flight)
    t = cfg.teacher

    spans: list[tuple[float, float, int]] = []

    async def trajectory(messages: list[dict], calls: int, extra: dict) -> None:
        async with slots:
            started = time.time()
            for i in range(calls):
                fields = {
                    "model": t.model,
                    "messages": messages[: 2 + 2 * i],
                    "temperature": t.temperature,
                    "top_p": t.top_p,
                    "max_tokens": t.max_tokens,
                    **extra,
                }
                if kind == "same_wire":
                    await client.post("/chat/completions", body=fields, cast_to=ChatCompletion)
                else:
                    await client.chat.completions.create(**fields)
            spans.append((started, time.time(), calls))

    lags: list[float] = []

    async def ticker(tick: float = 0.02) -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(tick)
            lags.append(max(0.0, time.perf_counter() - before - tick))
            if time.monotonic() - start > START_S:
                late_lags.append(lags[-1])

    late_lags: list[float] = []
    start, cpu = time.monotonic(), time.process_time()
    ticking = asyncio.create_task(ticker())
    await asyncio.gather(*(trajectory(*conversation) for conversation in conversations))
    elapsed, cpu = time.monotonic() - start, time.process_time() - cpu
    ticking.cancel()
    await client.close()
    lags.sort()
    return (
        elapsed,
        spans,
        {
            "cpu_ms_per_trajectory": round(1000 * cpu / len(conversations), 1),
            "lag_p99_ms": round(1000 * lags[int(0.99 * (len(lags) - 1))], 1) if lags else 0.0,
            "lag_max_ms": round(1000 * lags[-1], 1) if lags else 0.0,
            "lag_max_after_start_ms": round(1000 * max(late_lags, default=0.0), 1),
        },
    )


def steady_state(
    spans: list[tuple[float, float, int]], in_flight: int, latency: float, *, after_warm_up: bool = False
) -> dict:
    """Efficiency while every slot is busy: sum(calls x latency) / sum(trajectory wall).

    By Little's law a loop that keeps `in_flight` trajectories running completes in_flight /
    mean(wall) per second, and the ideal is in_flight / mean(calls x latency), so this ratio is
    the steady-state throughput over the ideal. Only trajectories that finished before the
    last one started count: after that fewer than `in_flight` run, the machine is less loaded
    and the whole-run figure is dominated by the longest trajectories' tail (which the bare
    loop has too). `after_warm_up` also leaves out the first wave (the first `in_flight` to
    start): they all start in the same instant, so their first tool calls arrive as one burst,
    which a long production run meets once; later waves start as slots free up.
    """
    ends = sorted(end for _, end, _ in spans)
    busy_until = ends[len(ends) - in_flight - 1] if len(ends) > in_flight else ends[-1]
    first_wave = (
        set(sorted(range(len(spans)), key=lambda i: spans[i][0])[:in_flight]) if after_warm_up else set()
    )
    inside = [
        (start, end, calls)
        for i, (start, end, calls) in enumerate(spans)
        if end <= busy_until and i not in first_wave
    ]
    if not inside:
        return {"trajectories": 0, "efficiency": float("nan"), "wall_s_per_call": float("nan")}
    wall = sum(end - start for start, end, _ in inside)
    return {
        "trajectories": len(inside),
        "efficiency": sum(calls * latency for _, _, calls in inside) / wall,
        "wall_s_per_call": wall / sum(calls for _, _, calls in inside),
    }


def bench_latency(
    tmp: Path,
    world: World,
    tasks: int,
    latency: float,
    in_flight: int,
    sets: dict[str, str],
    bare_kinds: tuple[str, ...] = tuple(BARE_LOOPS),
    spread: float = 0.0,
    turn_profile: bool = False,
) -> dict:
    """`spread`: each call's latency drawn uniformly from latency x (1 -/+ spread), as a real
    teacher's varies with the tokens it writes (0: every call takes `latency`, which keeps the
    trajectories' calls in waves). The ideal uses the mean, `latency`."""
    import ray

    from pipeline.schema import Trajectory

    spec = f"uniform:{latency * (1 - spread):g},{latency * (1 + spread):g}" if spread else str(latency)
    world.knobs(latency=spec, rate_limit=None, errors={}, defects={})
    cfg = config(
        tmp,
        "latency",
        world,
        **{
            "seeds.limit": tasks,
            "synth.plan": "false",
            "synth.in_flight": in_flight,
            "teacher.concurrency": in_flight,
            "teacher.timeout_s": latency * (1 + spread) * 6 + 30,
            **sets,
        },
    )
    store = prepare(cfg)
    # Ray starts its workers at nice 15, below the world server and the bare loop (the driver,
    # nice 0) that share these 2 cores; run trajforge's actor at their priority
    os.environ["RAY_worker_niceness"] = "0"  # noqa: SIM112 - Ray's own spelling
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # started outside the timing
    start, server_cpu = time.monotonic(), world.cpu_s()
    factory = functools.partial(probed_tools, turn_profile=turn_profile)
    summary = synth(cfg, store, world, use_ray=True, tools_factory=factory)
    ours = time.monotonic() - start
    server_cpu = world.cpu_s() - server_cpu
    ray.shutdown()
    trajectories = list(store.read_records("raw", Trajectory))
    tool_s: dict[str, list[float]] = collections.defaultdict(list)
    for traj in trajectories:
        for step in traj.steps:
            if step.tool_name:
                tool_s[step.tool_name].append(step.tool_latency_s or 0.0)
    conversations = recorded_conversations(cfg, store)
    calls = [n for _, n, _ in conversations]
    bare_images = sum(
        sum(
            isinstance(m["content"], list) and sum(p["type"] == "image_url" for p in m["content"])
            for m in messages[: 2 + 2 * i]
        )
        for messages, n, _ in conversations
        for i in range(n)
    )
    per_traj = sum(calls) / len(calls)
    ideal_rate = in_flight / (per_traj * latency)
    ours_rate = len(calls) / ours
    ours_spans = [
        (meta["started_at"], meta["finished_at"], traj.teacher_calls)
        for traj in trajectories
        for meta in [json.loads(traj.meta)]
    ]
    ours_steady = steady_state(ours_spans, in_flight, latency)
    ours_warm = steady_state(ours_spans, in_flight, latency, after_warm_up=True)
    probe = json.loads((store.root / PROBE_FILE).read_text())
    code = summary["tools"].get("code") or {}
    baselines = {}
    for kind, label in ((k, BARE_LOOPS[k]) for k in bare_kinds):
        world.restart()  # the oracle caches its image checks: no side may find them warm
        bare_server_cpu = world.cpu_s()
        bare, bare_spans, bare_own = asyncio.run(
            bare_loop(world.url + "/v1", cfg, conversations, in_flight, kind)
        )
        bare_server_cpu = world.cpu_s() - bare_server_cpu
        bare_steady, bare_rate = steady_state(bare_spans, in_flight, latency), len(calls) / bare
        bare_warm = steady_state(bare_spans, in_flight, latency, after_warm_up=True)
        baselines[kind] = {
            "bare_loop": label,
            "steady_state": {
                "ratio_vs_bare": round(ours_steady["efficiency"] / bare_steady["efficiency"], 3),
                "bare_ratio_vs_ideal": round(bare_steady["efficiency"], 3),
                "bare_wall_s_per_teacher_call": round(bare_steady["wall_s_per_call"], 3),
            },
            "steady_after_warm_up": {
                "ratio_vs_bare": round(ours_warm["efficiency"] / bare_warm["efficiency"], 3),
                "bare_ratio_vs_ideal": round(bare_warm["efficiency"], 3),
            },
            "world_server_cpu_ms_per_call": round(1000 * bare_server_cpu / sum(calls), 1),
            "bare_loop_process": bare_own,  # its CPU per trajectory and its loop's lag
            "whole_run": {
                "bare_loop_traj_per_s": round(bare_rate, 2),
                "ratio_vs_bare": round(ours_rate / bare_rate, 3),
                "bare_ratio_vs_ideal": round(bare_rate / ideal_rate, 3),
            },
        }
    return {
        "trajectories": len(calls),
        "calls_per_trajectory": round(per_traj, 2),
        "latency_s": latency,
        "latency_spec": spec,
        "in_flight": in_flight,
        "tool_calls": summary["tool_calls"],
        "trajforge": {
            "steady_state": {
                "trajectories_counted": ours_steady["trajectories"],
                "ratio_vs_ideal": round(ours_steady["efficiency"], 3),
                "wall_s_per_teacher_call": round(ours_steady["wall_s_per_call"], 3),
            },
            "steady_after_warm_up": {
                "trajectories_counted": ours_warm["trajectories"],
                "ratio_vs_ideal": round(ours_warm["efficiency"], 3),
                "wall_s_per_teacher_call": round(ours_warm["wall_s_per_call"], 3),
            },
            # the server shares the cores: its CPU per call (oracle, JSON, page and image
            # serving) is load neither loop can avoid
            "world_server_cpu_ms_per_call": round(1000 * server_cpu / sum(calls), 1),
            "whole_run": {
                "traj_per_s": round(ours_rate, 2),
                "ideal_traj_per_s": round(ideal_rate, 2),
                "ratio_vs_ideal": round(ours_rate / ideal_rate, 3),
            },
        },
        "vs_bare": baselines,
        # the worker process (a Ray actor) as its own probe saw it (`probed_tools`)
        "worker": {
            "driver_cpu_ms_per_trajectory": round(1000 * probe["cpu_s"] / len(calls), 1),
            "driver_plus_sandbox_cpu_ms_per_trajectory": round(
                1000 * (probe["cpu_s"] + code.get("sandbox_cpu_s", 0.0)) / len(calls), 1
            ),
            # the sandbox's CPU less what the code's own processes spent (the teacher's crops,
            # zooms and saves): the driver plus what isolating the code costs
            "driver_plus_sandbox_overhead_cpu_ms_per_trajectory": round(
                1000
                * (probe["cpu_s"] + code.get("sandbox_cpu_s", 0.0) - code.get("sandbox_code_cpu_s", 0.0))
                / len(calls),
                1,
            ),
            "sandbox_code_cpu_ms_per_trajectory": round(
                1000 * code.get("sandbox_code_cpu_s", 0.0) / len(calls), 1
            ),
            **{k: v for k, v in probe.items() if k != "cpu_s"},
        },
        "teacher_stats": {k: v for k, v in summary["teacher"].items() if k in ("calls", "mean_latency_s")},
        "sizing": summary.get("sizing"),
        "where_time_goes_s_per_trajectory": {
            "wall": round(sum(t.wall_s for t in trajectories) / len(trajectories), 2),
            "teacher": round(
                sum(s.teacher_latency_s or 0 for t in trajectories for s in t.steps) / len(trajectories), 2
            ),
            "tools": round(sum(map(sum, tool_s.values())) / len(trajectories), 2),
        },
        "tool_latency_mean_s": {name: round(sum(v) / len(v), 3) for name, v in sorted(tool_s.items())},
        "code_tool": summary["tools"].get("code"),
        "images_sent_trajforge": summary["executor"].get("images_sent"),
        "images_sent_bare": bare_images,
        "statuses": summary["statuses"],
    }


# --------------------------------------------------------------------------- 2. rate limits


def bench_rate_limit(
    world: World,
    rate: float,
    seconds: float,
    in_flight: int,
    *,
    headers: bool = True,
    slow_start: bool = False,
    configured: bool = False,
) -> dict:
    """`headers`: the bucket is stated in OpenAI's x-ratelimit headers (else the client learns
    it from 429s and Retry-After alone); `slow_start`: the client ramps from 16/s; `configured`:
    the user set `teacher.requests_per_s` to the limit, so even the first burst is paced."""
    from pipeline.config import TeacherConfig
    from pipeline.teacher import TeacherClient

    world.knobs(
        latency="0.05", rate_limit=rate, rate_limit_headers=headers, errors={}, defects={}, retry_after_s=1.0
    )
    before = world.stats()
    admitted: list[float] = []
    warm = 3.0  # skip the token bucket's initial burst (and the client's first burst into it)
    settled: dict = {}  # the server's counters once warm

    async def run() -> dict:
        cfg = TeacherConfig(
            model="oracle",
            concurrency=in_flight,
            cache=False,
            max_retries=50,
            timeout_s=30,
            slow_start=slow_start,
            requests_per_s=rate if configured else None,
        )
        client = TeacherClient(cfg, base_url=world.url + "/v1")
        messages = [{"role": "user", "content": "Rate-limit probe: a question the oracle does not know."}]
        deadline = time.monotonic() + seconds

        async def worker(index: int) -> None:
            n = 0
            while time.monotonic() < deadline:
                await client.chat(messages, seed=index * 1_000_000 + n)
                admitted.append(time.monotonic())
                n += 1

        async def snapshot() -> None:
            await asyncio.sleep(warm)
            settled.update(await asyncio.to_thread(world.stats))

        start = time.monotonic()
        await asyncio.gather(snapshot(), *(worker(i) for i in range(in_flight)))
        stats = client.stats()
        await client.aclose()
        stats["start"] = start
        return stats

    stats = run_stats = asyncio.run(run())
    after = world.stats()
    window = [t for t in admitted if t >= run_stats["start"] + warm and t <= run_stats["start"] + seconds]
    sustained = len(window) / (seconds - warm)
    server_requests = after["requests"] - before["requests"]
    rejected = after["rejected"] - before["rejected"]
    return {
        "R": rate,
        "limit_headers": headers,
        "slow_start": slow_start,
        "configured": configured,
        "seconds": seconds,
        "in_flight": in_flight,
        "sustained_per_s": round(sustained, 2),
        "ratio_sustained_vs_R": round(sustained / rate, 3),
        "requests": server_requests,
        "rejected_429": rejected,
        "rejected_share": round(rejected / max(1, server_requests), 4),
        # after the first `warm` seconds, the same window as the sustained rate: the steady state
        "rejected_share_after_warmup": round(
            (after["rejected"] - settled["rejected"]) / max(1, after["requests"] - settled["requests"]), 4
        ),
        "learned_rate_per_s": stats.get("paced_rate_per_s"),
    }


# ----------------------------------------------------------------------------- 3. CPU split

_CATEGORIES = (  # (module prefix, category), matched from the innermost frame outwards
    ("pipeline.teacher:_encode", "image encoding"),
    ("pipeline.teacher:data_uri", "image encoding"),
    ("pipeline.teacher:prepare", "image encoding"),
    ("pipeline.store", "storage"),
    ("pyarrow", "storage"),
    ("stages.synth.runner:_write", "storage"),
    ("stages.tools", "tools"),
    ("bm25s", "tools"),
    ("trafilatura", "tools"),
    ("pipeline.phash", "tools"),
    ("lxml", "tools"),
    ("openai", "teacher client"),
    ("httpx", "teacher client"),  # also httpx2, the SDK's own
    ("aiohttp", "teacher client"),  # the SDK's aiohttp transport (the world server is another process)
    ("yarl", "teacher client"),
    ("multidict", "teacher client"),
    ("httpcore", "teacher client"),
    ("h11", "teacher client"),
    ("anyio", "teacher client"),
    ("pipeline.teacher", "teacher client"),
    ("stages.synth.execute", "agent loop"),
    ("stages.synth.plan", "agent loop"),
    ("pipeline.format", "agent loop"),
    ("pipeline.chat", "agent loop"),
    ("pipeline.schema", "agent loop"),
    ("stages.synth.runner", "agent loop"),
)


class Sampler(threading.Thread):
    """Every 2 ms, each thread's CPU since the last look, filed under its current stack's category.

    Weighting by each thread's own CPU clock (not by "is its frame busy?") keeps threads blocked
    in C (a child watcher's waitpid, a pipe read) out of the split, however they look. The
    sampler's own CPU (`own_cpu_s`, its thread's clock) is the bench's, not trajforge's: callers
    take it out of the process's CPU. Each function's category is looked up once and remembered,
    so a sample costs a few dict lookups per frame rather than a prefix scan.
    """

    def __init__(self, interval: float = 0.002):
        super().__init__(daemon=True)
        self.interval = interval
        self.cpu_s: collections.Counter[str] = collections.Counter()
        self.own_cpu_s = 0.0
        self._stop_event = threading.Event()
        self._categories: dict[object, str | None] = {}  # code object -> its category, if any

    def run(self) -> None:
        me = threading.get_ident()
        last: dict[int, float] = {}
        started = time.thread_time()
        while not self._stop_event.wait(self.interval):
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                try:
                    now = time.clock_gettime(time.pthread_getcpuclockid(ident))
                except OSError:  # the thread ended meanwhile
                    continue
                spent, last[ident] = now - last.get(ident, now), now
                if spent > 0:
                    self.cpu_s[self._classify(frame)] += spent
        self.own_cpu_s = time.thread_time() - started

    def _classify(self, frame) -> str:
        while frame is not None:
            code = frame.f_code
            try:
                category = self._categories[code]
            except KeyError:
                category = self._categories[code] = self._category_of(frame)
            if category is not None:
                return category
            frame = frame.f_back
        return "runtime (asyncio, other)"

    @staticmethod
    def _category_of(frame) -> str | None:
        module = frame.f_globals.get("__name__", "")
        qualified = f"{module}:{frame.f_code.co_name}"
        for prefix, category in _CATEGORIES:
            if (":" in prefix and qualified.startswith(prefix)) or (
                ":" not in prefix and module.startswith(prefix)
            ):
                return category
        return None

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


#: What a synth run imports on first use (the SDK, the tools' libraries): once per process, not
#: per trajectory, so imported before the CPU window opens (as Ray is started before the timings).
_SYNTH_IMPORTS = (
    "stages.synth.runner",
    "stages.tools.registry",
    "stages.tools.search.search_tools",
    "stages.tools.visit.web_visit",
    "stages.tools.search.text_index",
    "stages.tools.search.image_index",
    "bm25s",
    "bm25s.tokenization",
    "Stemmer",
    "trafilatura",
)


def bench_cpu(tmp: Path, world: World, tasks: int, *, cold: bool = False, sets: dict | None = None) -> dict:
    """`cold`: leave the first-use imports inside the window (how this was measured before)."""
    world.knobs(latency="0.2", rate_limit=None, errors={}, defects={})
    cfg = config(tmp, "cpu", world, **{"seeds.limit": tasks, "synth.in_flight": 32, **(sets or {})})
    store = prepare(cfg)
    for module in () if cold else _SYNTH_IMPORTS:
        importlib.import_module(module)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sampler = Sampler()
    sampler.start()
    summary = synth(cfg, store, world, use_ray=False)  # in process: the sampler sees everything
    after = resource.getrusage(resource.RUSAGE_SELF)
    sampler.stop()
    # the process's CPU over the run, less the sampler's own (the bench's instrument, not trajforge)
    cpu_self = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime) - sampler.own_cpu_s
    # the sandbox workers are long-lived processes: their CPU as each zygote measured it
    sandbox = summary["tools"].get("code", {}).get("sandbox_cpu_s", 0.0)
    sandbox_code = summary["tools"].get("code", {}).get("sandbox_code_cpu_s", 0.0)
    n = max(1, summary["trajectories"])
    total = sum(sampler.cpu_s.values()) or 1  # what the sampler saw: its own CPU is not in it
    split = {k: round(cpu_self * v / total / n * 1000, 1) for k, v in sampler.cpu_s.most_common()}
    split["code sandbox: the code's own process"] = round(sandbox_code / n * 1000, 1)
    split["code sandbox: isolation (fork, sweep, input decodes)"] = round(
        (sandbox - sandbox_code) / n * 1000, 1
    )
    ex = summary["executor"]
    # the floor: the same requests from a bare same-wire loop in this process, no tools
    conversations = recorded_conversations(cfg, store)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    asyncio.run(bare_loop(world.url + "/v1", cfg, conversations, 32, "same_wire"))
    after = resource.getrusage(resource.RUSAGE_SELF)
    bare_cpu = (after.ru_utime + after.ru_stime) - (usage.ru_utime + usage.ru_stime)
    return {
        "trajectories": n,
        "teacher_calls_per_trajectory": round(summary["teacher"].get("calls", 0) / n, 2),
        "cpu_ms_per_trajectory": round((cpu_self + sandbox) / n * 1000, 1),
        "bare_same_wire_cpu_ms_per_trajectory": round(bare_cpu / len(conversations) * 1000, 1),
        "bench_sampler_cpu_ms_per_trajectory": round(sampler.own_cpu_s / n * 1000, 1),  # not counted
        "split_ms_per_trajectory": split,
        "measured_encode_ms_per_trajectory": round(ex.get("encode_cpu_s", 0) / n * 1000, 1),
        "measured_storage_ms_per_trajectory": round(ex.get("store_cpu_s", 0) / n * 1000, 1),
        "images_encoded_per_trajectory": round(ex.get("images_encoded", 0) / n, 2),
        "images_sent_per_trajectory": round(ex.get("images_sent", 0) / n, 2),
    }


# ------------------------------------------------------------------------- 5. cyclic garbage


def _cyclic_garbage(
    tmp: Path, world: World, name: str, tasks: int, sets: dict
) -> tuple[int, collections.Counter]:
    """(trajectories, objects by type) that the collector found unreachable over one in-process
    run, start-up and close included (`gc.DEBUG_SAVEALL` keeps them in `gc.garbage` to count)."""

    cfg = config(tmp, name, world, **{"seeds.limit": tasks, "synth.in_flight": 32, **sets})
    store = prepare(cfg)
    gc.collect()
    gc.garbage.clear()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        summary = synth(cfg, store, world, use_ray=False)
        gc.collect()
        found = collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage)
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return summary["trajectories"], found


def bench_cycles(tmp: Path, world: World, tasks: int, *, sets: dict | None = None) -> dict:
    """What a worker leaves for the cycle collector per trajectory: what reference counting
    cannot free, what full collections exist for, and what freezing the worker's survivors
    would leak. Two runs (N and 2N tasks), so what start-up and close make once (the pools'
    connections, closed at the end) cancels: the figures are the second run's extra objects
    over its extra trajectories."""
    world.knobs(latency="0.05", rate_limit=None, errors={}, defects={})
    for module in _SYNTH_IMPORTS:
        importlib.import_module(module)
    n1, small = _cyclic_garbage(tmp, world, "cycles-n", tasks, sets or {})
    n2, large = _cyclic_garbage(tmp, world, "cycles-2n", 2 * tasks, sets or {})
    extra = max(1, n2 - n1)
    marginal = collections.Counter({k: large[k] - small[k] for k in large | small})
    return {
        "trajectories": [n1, n2],
        "cyclic_objects": [sum(small.values()), sum(large.values())],
        "cyclic_objects_per_trajectory": round(sum(marginal.values()) / extra, 3),
        "top_types_per_trajectory": {k: round(v / extra, 3) for k, v in marginal.most_common(12) if v > 0},
    }


# -------------------------------------------------------------------------------- 4. memory

MEMORY_CHILD = """
import json, resource, sys
sys.path.insert(0, {repo!r})
from bench.bench_synth import World, config, prepare, synth
from pathlib import Path
world = World.__new__(World); world.port = {port}; world.url = "http://127.0.0.1:{port}"
cfg = config(Path({tmp!r}), {name!r}, world, **{sets!r})
store = prepare(cfg)
summary = synth(cfg, store, world, use_ray=False)
print(json.dumps({{"trajectories": summary["trajectories"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def bench_memory(tmp: Path, world: World, small: int) -> dict:
    world.knobs(latency="0.02", rate_limit=None, errors={}, defects={})
    out = {}
    for label, tasks in (("N", small), ("10N", small * 10)):
        sets = {"seeds.limit": tasks, "synth.rollouts": 1, "synth.plan": "false", "synth.in_flight": 16}
        code = MEMORY_CHILD.format(
            repo=str(REPO), port=world.port, tmp=str(tmp), name=f"mem{tasks}", sets=sets
        )
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
        )
        out[label] = json.loads(result.stdout.strip().splitlines()[-1])
    out["ratio_peak_10N_vs_N"] = round(out["10N"]["peak_rss_mb"] / out["N"]["peak_rss_mb"], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (same shapes)")
    parser.add_argument("--only", choices=["latency", "rate", "cpu", "memory", "cycles"], action="append")
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override for trajforge's side of the latency and CPU benches (e.g. tools.code.workers=4)",
    )
    parser.add_argument("--latency", type=float, default=5.0, help="latency bench: seconds per teacher call")
    parser.add_argument("--in-flight", type=int, default=256, help="latency bench: trajectories in flight")
    parser.add_argument(
        "--turn-profile",
        action="store_true",
        help="latency bench: keep the worker loop's longest turns (costs ~5 us a callback, in the figures)",
    )
    parser.add_argument(
        "--latency-spread",
        type=float,
        default=0.0,
        help="latency bench: each call's latency uniform in latency x (1 -/+ this), e.g. 0.5 for 5-15 s at 10",
    )
    parser.add_argument(
        "--bare",
        action="append",
        choices=list(BARE_LOOPS),
        help="latency bench: which bare loops to compare with (default both)",
    )
    parser.add_argument(
        "--tasks", type=int, help="latency bench tasks (x4 rollouts; default 192, at most the world's 200)"
    )
    parser.add_argument(
        "--cold-imports",
        action="store_true",
        help="CPU bench: count the first-use imports as the run's (a full run's earlier parts do them)",
    )
    args = parser.parse_args()
    sets = dict(item.split("=", 1) for item in args.sets)
    only = set(args.only or ["latency", "rate", "cpu", "memory"])
    world = World()
    results: dict = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-synth-") as folder:
            tmp = Path(folder)
            if "latency" in only:
                tasks = args.tasks or (64 if args.quick else 192)
                results["latency_hiding"] = bench_latency(
                    tmp,
                    world,
                    tasks,
                    latency=args.latency,
                    in_flight=args.in_flight,
                    spread=args.latency_spread,
                    turn_profile=args.turn_profile,
                    sets=sets,
                    bare_kinds=tuple(args.bare or BARE_LOOPS),
                )
                print(json.dumps({"latency_hiding": results["latency_hiding"]}), flush=True)
            if "rate" in only:
                seconds = 15 if args.quick else 30
                variants = {  # stated in headers (OpenAI); also in config; unstated: unpaced, slow start
                    "rate_limit": {},
                    "rate_limit_configured": {"configured": True},
                    "rate_limit_unstated": {"headers": False},
                    "rate_limit_unstated_slow_start": {"headers": False, "slow_start": True},
                }
                for name, kw in variants.items():
                    results[name] = bench_rate_limit(world, rate=40.0, seconds=seconds, in_flight=64, **kw)
                    print(json.dumps({name: results[name]}), flush=True)
            if "cpu" in only:
                results["cpu_per_trajectory"] = bench_cpu(
                    tmp, world, tasks=16 if args.quick else 40, cold=args.cold_imports, sets=sets
                )
                print(json.dumps({"cpu_per_trajectory": results["cpu_per_trajectory"]}), flush=True)
            if "cycles" in only:
                results["cyclic_garbage"] = bench_cycles(
                    tmp, world, tasks=16 if args.quick else 40, sets=sets
                )
                print(json.dumps({"cyclic_garbage": results["cyclic_garbage"]}), flush=True)
            if "memory" in only:
                results["memory"] = bench_memory(tmp, world, small=10 if args.quick else 20)
                print(json.dumps({"memory": results["memory"]}), flush=True)
    finally:
        world.close()
    print("== bench_synth summary")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
