"""A real S3-compatible server on loopback for tests of runs on object storage.

moto's server mode speaks the S3 REST protocol over HTTP on 127.0.0.1; pyarrow's S3 client (the
one trajforge uses) talks to it exactly as to a bucket in the cloud. Nothing here leaves the
machine: the endpoint is loopback and the instance-metadata lookup is switched off.
"""

from __future__ import annotations

import collections
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def s3_environment(endpoint: str) -> dict[str, str]:
    """The environment a process needs to reach the loopback server (and nothing else)."""
    return {
        "AWS_ACCESS_KEY_ID": "trajforge-test",
        "AWS_SECRET_ACCESS_KEY": "trajforge-test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": endpoint,
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto's S3 server on a free loopback port; yields its endpoint URL."""
    pytest.importorskip("moto.server", reason="needs moto[server] (the dev extra)")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _client(endpoint: str, *, create: bool = False):
    from pyarrow import fs

    return fs.S3FileSystem(
        access_key="trajforge-test",
        secret_key="trajforge-test-secret",
        region="us-east-1",
        endpoint_override=endpoint,
        scheme="http",
        allow_bucket_creation=create,
    )


def new_bucket(endpoint: str) -> str:
    """Create an empty bucket on the server (pyarrow's client, the one under test) and name it."""
    name = f"trajforge-{uuid.uuid4().hex[:10]}"
    _client(endpoint, create=True).create_dir(name)
    return name


def bucket_keys(endpoint: str, bucket: str) -> list[str]:
    """Every object in the bucket (to count what a run left there)."""
    from pyarrow import fs

    infos = _client(endpoint).get_file_info(fs.FileSelector(bucket, recursive=True))
    return sorted(i.path.removeprefix(f"{bucket}/") for i in infos if i.is_file)


def pairs_in_shards(store) -> collections.Counter:
    """(task, rollout) -> rows holding it, over every raw shard of a run (duplicates included)."""
    counts: collections.Counter = collections.Counter()
    for key in store.shard_paths("raw"):
        table = store.read_shard(key, columns=["task_id", "rollout"])
        counts.update(zip(table["task_id"].to_pylist(), table["rollout"].to_pylist(), strict=True))
    return counts


def apply_environment(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    for key, value in s3_environment(endpoint).items():
        monkeypatch.setenv(key, value)
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
