"""Where a run's lasting files live: a local folder, or object storage (`s3://bucket/prefix`).

A run folder on a shared disk only works when every Ray node mounts it; rented clusters usually
have object storage instead. So the run store writes its lasting files (shards, images, the
report, the config, the tool table, saved prompts, logs) through one of two backends with the
same small interface, and keeps what cannot live in a bucket (sqlite caches, the sandbox's
work folders, locks, training checkpoints) in a local folder: the run folder itself for a local
run, a scratch folder for a remote one.

Atomic writes: locally a temporary name in the same folder and a rename; on object storage a
single upload, which becomes visible whole or not at all (a killed multipart upload never
completes), so readers never see half a shard on either.

Remote filesystems come from pyarrow (`s3://`, `gs://`, `hdfs://`, with pyarrow's query options
such as `?endpoint_override=http://127.0.0.1:9000&scheme=http` for MinIO), or from fsspec for any
other scheme it knows. Credentials come from the environment (`AWS_ACCESS_KEY_ID`, ...), never the
address: an address carrying a secret is refused, since it would be saved in the run's config.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import uuid
from pathlib import Path, PurePosixPath
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

TMP_PREFIX = ".tmp-"
_SECRET_KEYS = re.compile(r"secret|password|token|session|access_key|credential|key$", re.IGNORECASE)


class RunLocationError(ValueError):
    """A run address that cannot be used; the message says what to do."""


def is_remote(location: str | Path) -> bool:
    """True for an address with a scheme (`s3://...`); a plain or `file://` path is local."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


def join_location(root: str, name: str) -> str:
    """`root/name` for a folder or an address (a query string stays at the end)."""
    if not is_remote(root):
        return str(Path(root) / name)
    base, _, query = root.partition("?")
    joined = f"{base.rstrip('/')}/{name}"
    return f"{joined}?{query}" if query else joined


def split_location(location: str) -> tuple[str, str]:
    """(parent, name) of a folder or an address: the inverse of `join_location`."""
    if not is_remote(location):
        path = Path(location.removeprefix("file://"))
        return str(path.parent), path.name
    base, _, query = location.partition("?")
    parent, _, name = base.rstrip("/").rpartition("/")
    if "://" not in parent or parent.endswith(":/"):
        raise RunLocationError(f"{location}: name a prefix inside the bucket, e.g. s3://bucket/runs/NAME")
    return (f"{parent}?{query}" if query else parent), name


def display_location(location: str) -> str:
    """The address without its query string (what messages and logs print)."""
    return str(location).partition("?")[0]


def check_no_secrets(location: str) -> None:
    """Refuse an address that carries a credential: it would be saved in config.yaml and logs."""
    query = urlsplit(str(location)).query
    found = [key for key, _ in parse_qsl(query) if _SECRET_KEYS.search(key) and key != "endpoint_override"]
    if found or "@" in urlsplit(str(location)).netloc:
        where = ", ".join(found) or "user:password@"
        raise RunLocationError(
            f"{display_location(location)}: the address carries a credential ({where}); remove it and set "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or your store's variables) in the environment instead"
        )


def scratch_folder(location: str) -> Path:
    """The local folder a remote run keeps its caches, locks and work folders in:
    `$TRAJFORGE_SCRATCH` (default `~/.cache/trajforge/runs`) / a readable name + a short hash."""
    base = Path(os.environ.get("TRAJFORGE_SCRATCH") or Path.home() / ".cache" / "trajforge" / "runs")
    shown = re.sub(r"[^A-Za-z0-9._-]+", "_", display_location(location).split("://", 1)[-1]).strip("_")
    digest = hashlib.sha256(str(location).encode()).hexdigest()[:8]
    return base / f"{shown[-80:]}-{digest}"


class RunFiles(Protocol):
    """The lasting files of one run, by relative key (`raw/part-x.parquet`)."""

    location: str
    remote: bool

    def write_bytes(self, key: str, data: bytes) -> None: ...
    def read_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def first_existing(self, keys: list[str]) -> str | None: ...
    def list(self, folder: str, suffix: str = "", *, recursive: bool = False) -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def read_table(self, key: str, columns: list[str] | None = None) -> pa.Table: ...
    def parquet_file(self, key: str) -> pq.ParquetFile: ...
    def clear_temporaries(self) -> int: ...


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes to `path` via a temporary file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}{uuid.uuid4().hex}-{path.name}"
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


class LocalRunFiles:
    """A run folder on this machine's disk (or a shared disk every node mounts)."""

    remote = False

    def __init__(self, root: str | Path) -> None:
        self.root = Path(str(root).removeprefix("file://"))
        self.location = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def write_bytes(self, key: str, data: bytes) -> None:
        atomic_write_bytes(self._path(key), data)

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def first_existing(self, keys: list[str]) -> str | None:
        return next((key for key in keys if self._path(key).exists()), None)

    def list(self, folder: str, suffix: str = "", *, recursive: bool = False) -> list[str]:
        path = self._path(folder)
        if not path.is_dir():
            return []
        found = path.rglob("*") if recursive else path.iterdir()
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in found
            if p.name.endswith(suffix) and not p.name.startswith(TMP_PREFIX) and p.is_file()
        )

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def read_table(self, key: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self._path(key), columns=columns)

    def parquet_file(self, key: str) -> pq.ParquetFile:
        return pq.ParquetFile(self._path(key))

    def clear_temporaries(self) -> int:
        """Remove leftovers of crashed writers (never complete files)."""
        removed = 0
        for path in self.root.glob(f"*/{TMP_PREFIX}*"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed


class RemoteRunFiles:
    """A run on object storage or any pyarrow / fsspec filesystem, by address."""

    remote = True

    def __init__(self, location: str) -> None:
        check_no_secrets(location)
        self.location = str(location)
        self.fs, base = _filesystem(self.location)
        self.base = base.rstrip("/")

    def _path(self, key: str) -> str:
        return f"{self.base}/{key}"

    def write_bytes(self, key: str, data: bytes) -> None:
        # One upload: the object appears whole when the stream closes, or never.
        with self.fs.open_output_stream(self._path(key)) as stream:
            stream.write(data)

    def read_bytes(self, key: str) -> bytes:
        try:  # one request: a missing object fails the open
            with self.fs.open_input_stream(self._path(key)) as stream:
                return stream.read()
        except FileNotFoundError:
            raise FileNotFoundError(f"{display_location(self.location)}/{key} does not exist") from None

    def exists(self, key: str) -> bool:
        return self.first_existing([key]) is not None

    def first_existing(self, keys: list[str]) -> str | None:
        from pyarrow import fs

        for key in keys:  # one request each, the likeliest first: usually the first answers
            if self.fs.get_file_info(self._path(key)).type == fs.FileType.File:
                return key
        return None

    def list(self, folder: str, suffix: str = "", *, recursive: bool = False) -> list[str]:
        from pyarrow import fs

        selector = fs.FileSelector(self._path(folder), allow_not_found=True, recursive=recursive)
        keys = (
            PurePosixPath(info.path).relative_to(self.base).as_posix()
            for info in self.fs.get_file_info(selector)
            if info.is_file
        )
        return sorted(
            k for k in keys if k.endswith(suffix) and not PurePosixPath(k).name.startswith(TMP_PREFIX)
        )

    def delete(self, key: str) -> None:
        if self.exists(key):
            self.fs.delete_file(self._path(key))

    def read_table(self, key: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self._path(key), columns=columns, filesystem=self.fs)

    def parquet_file(self, key: str) -> pq.ParquetFile:
        return pq.ParquetFile(self._path(key), filesystem=self.fs)

    def clear_temporaries(self) -> int:
        return 0  # uploads are whole or absent: nothing half-written to clear


def _filesystem(location: str) -> tuple[Any, str]:
    """A pyarrow filesystem and the path inside it for an address; fsspec for other schemes."""
    from pyarrow import fs

    try:
        return fs.FileSystem.from_uri(location)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as pyarrow_error:
        reason = str(pyarrow_error)
    except OSError as exc:
        raise RunLocationError(
            f"{display_location(location)}: cannot open ({exc}); check the address and credentials"
        ) from None
    try:
        from fsspec.core import url_to_fs

        filesystem, path = url_to_fs(location.partition("?")[0])
    except (ImportError, ValueError) as exc:
        raise RunLocationError(
            f"{display_location(location)}: no filesystem for this address ({reason}; {exc}); "
            "use s3://, gs://, hdfs:// or install the fsspec package for its scheme"
        ) from None
    return fs.PyFileSystem(fs.FSSpecHandler(filesystem)), path


def run_files(location: str | Path) -> RunFiles:
    """The backend for a run folder or address."""
    return RemoteRunFiles(str(location)) if is_remote(location) else LocalRunFiles(location)


def host_tag() -> str:
    """This machine and process, for files several nodes write side by side (their logs)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", socket.gethostname()) or "host"
