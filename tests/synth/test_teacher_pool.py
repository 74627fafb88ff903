"""The teacher's HTTP pool and file budget follow `teacher.concurrency` (issue 29).

The SDK's transports default to 1,000 connections, which silently capped a client at 1,000
calls in flight whatever the config said; a run's sockets also need open files beyond the usual
soft limit of 1,024. Loopback only (`tests.fake_openai`).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import TeacherConfig
from pipeline.open_files import MARGIN
from pipeline.teacher import TeacherClient, TeacherError
from tests.synth.conftest import completion

REPO = Path(__file__).resolve().parents[2]
MSG = [{"role": "user", "content": "hello"}]


def _cfg(**kw) -> TeacherConfig:
    return TeacherConfig(**{"model": "fake", "timeout_s": 30.0, "max_retries": 0, "cache": False, **kw})


async def _in_flight_seen(server, client: TeacherClient, calls: int, settle_s: float) -> int:
    """Fire `calls` chats at a slow server; how many requests reached it at once."""
    tasks = [asyncio.create_task(client.chat(MSG, seed=i)) for i in range(calls)]
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline and len(server.requests) < calls:
        await asyncio.sleep(0.05)
    seen = len(server.requests)  # the server records a request before its latency runs
    await asyncio.gather(*tasks)
    return seen


def _connector_limit(client: TeacherClient) -> int | None:
    """The connection limit the live pool enforces (aiohttp's connector, or httpx's pool)."""
    transport = client._client._client._transport
    session = getattr(transport, "client", None)
    if session is not None:  # the aiohttp transport builds its session on the first request
        return session.connector.limit
    return transport._pool._max_connections


@pytest.mark.parametrize("http_client", ["aiohttp", "httpx"])
def test_pool_limit_is_the_configured_concurrency(fake_teacher, http_client):
    server = fake_teacher(lambda body: completion("ok"), latency_s=1.0)

    async def go():
        client = TeacherClient(_cfg(concurrency=5, http_client=http_client), base_url=server.base_url)
        seen = await _in_flight_seen(server, client, 5, settle_s=0.9)
        limit = _connector_limit(client)
        await client.aclose()
        return seen, limit

    seen, limit = asyncio.run(go())
    assert seen == 5  # every configured call reached the server at once
    assert limit == 5  # the pool is sized by the config, not the SDK's default of 1,000


@pytest.mark.slow
def test_more_than_a_thousand_calls_reach_the_server(fake_teacher):
    """The SDK's default pool let 1,000 through and queued the rest without a word."""
    server = fake_teacher(lambda body: completion("ok"), latency_s=4.0)

    async def go():
        client = TeacherClient(_cfg(concurrency=1_100), base_url=server.base_url)
        seen = await _in_flight_seen(server, client, 1_100, settle_s=3.5)
        await client.aclose()
        return seen

    assert asyncio.run(go()) == 1_100


def _child(code: str) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter (file limits once lowered cannot come back up)."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_soft_file_limit_is_raised_to_what_the_concurrency_needs():
    result = _child(
        "import resource\n"
        "from pipeline.config import TeacherConfig\n"
        "from pipeline.teacher import TeacherClient\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (64, 4096))\n"
        "TeacherClient(TeacherConfig(concurrency=300, cache=False), base_url='http://127.0.0.1:9/v1')\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) == 300 + MARGIN


def test_concurrency_beyond_the_hard_file_limit_is_an_error_that_says_what_to_do():
    result = _child(
        "import resource\n"
        "from pipeline.config import TeacherConfig\n"
        "from pipeline.teacher import TeacherClient\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (200, 300))\n"
        "TeacherClient(TeacherConfig(concurrency=500, cache=False), base_url='http://127.0.0.1:9/v1')\n"
    )
    assert result.returncode != 0
    message = result.stderr.strip().splitlines()[-1]
    assert "OpenFilesError" in message and f"needs {500 + MARGIN} open files" in message
    assert "at most 300" in message and "ulimit -Hn" in message and "teacher.concurrency" in message


def test_concurrency_that_cannot_take_effect_is_refused():
    with pytest.raises(TeacherError, match="at least 1"):
        TeacherClient(_cfg(concurrency=0), base_url="http://127.0.0.1:9/v1")
    if Path("/proc/sys/net/ipv4/ip_local_port_range").exists():
        with pytest.raises(TeacherError, match="ip_local_port_range"):
            TeacherClient(_cfg(concurrency=200_000), base_url="http://127.0.0.1:9/v1")
