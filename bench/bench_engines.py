"""Engines bench: trajforge's teacher client against the clients a user would pick instead, on
one workload, side by side in one run.

The workload: N single-turn chat requests (3,000 by default) at an OpenAI-compatible loopback
endpoint that answers each after a fixed latency (1.0 s), `in_flight` at a time (256), so the
ideal rate is in_flight / latency (256 req/s). The endpoint (tests.fake_openai, aiohttp) runs in
its own process, started fresh for every client, so its CPU is never counted as the client's.

Clients, each in its own process (`bench/engine_driver.py`):
- trajforge: `TeacherClient` (its cache off), `in_flight` callers; trajforge-slow-start: the
  same with `teacher.slow_start` (pacing ramps up from 16/s, as it did before it started unpaced);
- bare-httpx: asyncio + openai's `chat.completions.create` over the SDK's default httpx transport;
- bare-aiohttp: the same loop over the SDK's aiohttp transport;
- curator: bespokelabs-curator (its cache off, its rate limits set far above the workload);
- datadesigner: NeMo DataDesigner (one LLM text column over a seed column of the prompts).
curator and DataDesigner pin their own openai versions, so each runs in a virtual environment
this bench makes under .cache/bench_engines/ (pip, from the registry); one that cannot be
installed is skipped, saying why.

Per client and run: requests per second over the batch (wall time of the batch alone: imports
and set-up are not timed), its ratio to the ideal, CPU seconds per 1,000 requests (the client
process and its reaped children over the batch, user + system; not the server) and peak RSS;
each run's line also gives the client process tree's CPU from start to exit, as the parent's
rusage sees it (set-up included: a check that no helper process escaped the batch figure).

    python bench/bench_engines.py [--runs 2] [--clients trajforge,curator] [--n 3000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "bench" / "engine_driver.py"
VENVS = REPO / ".cache" / "bench_engines"

#: client -> (label, pip requirement of its own virtual environment, or None: trajforge's)
CLIENTS: dict[str, tuple[str, str | None]] = {
    "bare-httpx": ("bare asyncio + openai (SDK default httpx transport)", None),
    "bare-aiohttp": ("bare asyncio + openai over aiohttp", None),
    "trajforge": ("trajforge TeacherClient", None),
    "trajforge-slow-start": ("trajforge TeacherClient, `slow_start: true`", None),
    "curator": ("bespokelabs-curator", "bespokelabs-curator==0.1.31"),
    "datadesigner": ("NeMo DataDesigner", "data-designer==0.9.7"),
}


# ---------------------------------------------------------------------------- the endpoint


def _serve(latency: float, ports: Any, stop: Any) -> None:
    sys.path.insert(0, str(REPO))
    from tests.fake_openai import FakeTeacher

    server = FakeTeacher(lambda body: "2", latency_s=latency)
    ports.put(server.port)
    stop.wait()
    server.close()


class Endpoint:
    """A fresh scripted endpoint in its own process (spawned: nothing inherited from us)."""

    def __init__(self, latency: float) -> None:
        ctx = mp.get_context("spawn")
        ports, self._stop = ctx.Queue(), ctx.Event()
        self._process = ctx.Process(target=_serve, args=(latency, ports, self._stop), daemon=True)
        self._process.start()
        self.url = f"http://127.0.0.1:{ports.get(timeout=60)}/v1"

    def close(self) -> None:
        self._stop.set()
        self._process.join(10)


# ------------------------------------------------------------------- engines' environments


def python_for(client: str) -> tuple[Path | None, str]:
    """The interpreter to run `client` with, or None and why it cannot run here."""
    requirement = CLIENTS[client][1]
    if requirement is None:
        return Path(sys.executable), ""
    venv = VENVS / client
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    if ready.exists() and ready.read_text() == requirement and python.exists():
        return python, ""
    VENVS.mkdir(parents=True, exist_ok=True)
    log = VENVS / f"{client}.install.log"
    print(f"  making {venv} ({requirement}; log {log})", flush=True)
    with log.open("w") as out:
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", requirement],
        ]
        for step in steps:
            if subprocess.run(step, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                tail = [ln for ln in log.read_text().splitlines() if "WARNING: Location" not in ln][-3:]
                return None, f"could not install {requirement}: " + " | ".join(tail)
    ready.write_text(requirement)
    return python, ""


# ------------------------------------------------------------------------------- one run


def run_client(client: str, python: Path, n: int, in_flight: int, latency: float, timeout: float) -> dict:
    """The batch through `client` in its own process, against a fresh endpoint."""
    endpoint = Endpoint(latency)
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    env.pop("VIRTUAL_ENV", None)
    command = [
        str(python),
        str(DRIVER),
        client,
        "--url",
        endpoint.url,
        "--n",
        str(n),
        "--in-flight",
        str(in_flight),
    ]
    before = _children_cpu()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
        total_cpu = _children_cpu() - before  # the client's whole tree, imports included (the
        # endpoint's process is reaped only below, so it is not in this)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        endpoint.close()
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-4:]
        return {"error": f"exit {done.returncode}: " + " | ".join(tail)}
    result = json.loads(lines[-1]) | {"cpu_total_s": total_cpu}
    if result["done"] < n:
        result["error"] = f"only {result['done']} of {n} requests answered"
    return result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _span(values: list[float], fmt: str) -> str:
    low, high = format(min(values), fmt), format(max(values), fmt)
    return low if low == high else f"{low}-{high}"


def table(results: dict[str, list[dict]], n: int, ideal: float) -> str:
    rows = [
        "| client | req/s | ratio to ideal | CPU s per 1,000 requests | peak RSS |",
        "|---|---|---|---|---|",
    ]
    for client, runs in results.items():
        good = [r for r in runs if "error" not in r]
        label = CLIENTS[client][0]
        if not good:
            rows.append(f"| {label} | skipped: {runs[0]['error'] if runs else 'not run'} | | | |")
            continue
        rates = [n / r["wall_s"] for r in good]
        cpu = [1000 * r["cpu_s"] / n for r in good]
        rss = [r["peak_rss_mb"] for r in good]
        rows.append(
            f"| {label} | {_span(rates, '.0f')} | {_span([x / ideal for x in rates], '.2f')} | "
            f"{_span(cpu, '.2f')} | {_span(rss, '.0f')} MB |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--clients", default=",".join(CLIENTS), help="comma-separated: " + ", ".join(CLIENTS))
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per client run")
    args = parser.parse_args()
    chosen = [c.strip() for c in args.clients.split(",") if c.strip()]
    if unknown := [c for c in chosen if c not in CLIENTS]:
        parser.error(f"unknown clients {unknown}; choose from {', '.join(CLIENTS)}")
    ideal = args.in_flight / args.latency
    print(
        f"engines bench: {args.n} requests, {args.latency:.2f} s latency, {args.in_flight} in flight, ideal {ideal:.0f} req/s"
    )
    print(
        f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}",
        flush=True,
    )
    pythons: dict[str, Path] = {}
    results: dict[str, list[dict]] = {c: [] for c in chosen}
    for client in chosen:
        python, why = python_for(client)
        if python is None:
            print(f"  skipping {client}: {why}", flush=True)
            results[client].append({"error": why})
        else:
            pythons[client] = python
    for run in range(args.runs):
        order = list(pythons.items())
        for client, python in order[::-1] if run % 2 else order:  # a load that drifts hits all alike
            result = run_client(client, python, args.n, args.in_flight, args.latency, args.timeout)
            results[client].append(result)
            if "error" in result:
                print(f"  run {run + 1} {client}: {result['error']}", flush=True)
            else:
                print(
                    f"  run {run + 1} {client}: {args.n / result['wall_s']:.1f} req/s, "
                    f"CPU {result['cpu_s']:.2f} s (whole process, set-up included: "
                    f"{result['cpu_total_s']:.2f} s), peak RSS {result['peak_rss_mb']:.0f} MB",
                    flush=True,
                )
            time.sleep(1.0)  # the endpoint's process and sockets wind down between clients
    print(f"load average at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    print(table(results, args.n, ideal))


if __name__ == "__main__":
    main()
