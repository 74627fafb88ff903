"""The run store: `runs/<name>/` (or `s3://bucket/runs/<name>`) and everything a stage reads or writes there.

Layout: `config.yaml` (resolved, no secrets), `tasks/`, `plans/`, `raw/`, `verdicts/`, `kept/`,
`sft/`, `images/`, `cache/`, `report.json`, `tools.json`, `prompts/`, `logs/`. Shards are parquet,
written whole: locally under a temporary name renamed into place (atomic on POSIX), on object
storage as one upload (visible whole or never), so a crash never leaves half a shard; readers
ignore temporaries. A stage resumes by asking `written_ids` which ids it already wrote. Where the
files live is `pipeline.run_files`' concern; what must stay on one machine (caches, locks, work
folders) is under `root`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pipeline.images import MAX_PIXELS, decode_image, encode_png, read_file_bytes, read_image
from pipeline.run_files import (
    TMP_PREFIX,
    RunFiles,
    atomic_write_bytes,
    display_location,
    fsync_dir,
    host_tag,
    run_files,
    scratch_folder,
)
from pipeline.schema import R, Record, from_table, to_table
from pipeline.tool_spec import ToolTable

SHARD_SUFFIX = ".parquet"
STAGE_DIRS = ("tasks", "plans", "raw", "verdicts", "kept", "sft", "images", "cache")
_IMAGE_EXTS = (".png", ".jpg", ".webp", ".gif")


class ImageStore:
    """Content-addressed images: `images/<aa>/<sha256>.<ext>`; a reference is the sha256 hex.

    Tools, the viewer and publishing read images as local files, so a remote run keeps a local
    copy of each image it writes or reads (`root`, under its scratch folder) and uploads new ones."""

    def __init__(self, root: Path, max_pixels: int = MAX_PIXELS, files: RunFiles | None = None):
        self.root = Path(root)
        self.max_pixels = max_pixels
        self._remote = files if files is not None and files.remote else None

    def path(self, ref: str) -> Path:
        """The image's local file (fetched from the run's storage first when it is remote)."""
        folder = self.root / ref[:2]
        for ext in _IMAGE_EXTS:
            candidate = folder / f"{ref}{ext}"
            if candidate.exists():
                return candidate
        if self._remote is not None:
            key = self._remote.first_existing([f"images/{ref[:2]}/{ref}{ext}" for ext in _IMAGE_EXTS])
            if key is not None:
                return fetch(self._remote, key, self.root.parent / key)
        return folder / f"{ref}.png"

    def has(self, ref: str) -> bool:
        return self.path(ref).exists()

    def put_bytes(self, data: bytes, *, verify: bool = True) -> str:
        """Store encoded image bytes as they are (after a guarded decode) and return the ref."""
        if verify:
            image = decode_image(data, max_pixels=self.max_pixels)
            ext = {"JPEG": ".jpg", "WEBP": ".webp", "GIF": ".gif"}.get(image.format or "", ".png")
            if image.format not in ("PNG", "JPEG", "WEBP", "GIF"):
                data, ext = encode_png(image), ".png"
        else:
            ext = ".png"
        ref = hashlib.sha256(data).hexdigest()
        target = self.root / ref[:2] / f"{ref}{ext}"
        if not target.exists():
            if self._remote is not None:  # content-addressed: uploading it again rewrites the same bytes
                self._remote.write_bytes(f"images/{ref[:2]}/{ref}{ext}", data)
            atomic_write_bytes(target, data)
        return ref

    def put_image(self, image: Image.Image) -> str:
        return self.put_bytes(encode_png(image), verify=False)

    def put_file(self, path: str | Path, *, verified: bool = False) -> str:
        """Store a file's bytes. `verified`: the caller has just read it through
        `pipeline.images` (a tool's output), so it is not decoded a second time."""
        data = read_file_bytes(path)  # a regular file, size-limited
        if not verified:
            decode_image(data, name=str(path), max_pixels=self.max_pixels)  # guard before trusting
        return self.put_bytes(data, verify=False)

    def open(self, ref: str) -> Image.Image:
        return read_image(self.path(ref), max_pixels=self.max_pixels)

    def read_bytes(self, ref: str) -> bytes:
        return self.path(ref).read_bytes()

    def local_files(self) -> list[Path]:
        """Every image of the run as a local file (a remote run's are fetched first)."""
        if self._remote is not None:
            for key in self._remote.list("images", recursive=True):
                if not (self.root.parent / key).exists():
                    fetch(self._remote, key, self.root.parent / key)
        return sorted(self.root.glob("*/*")) if self.root.exists() else []

    def count(self) -> int:
        """Images stored in the run (its storage, not a remote run's local copies)."""
        if self._remote is not None:
            return len(self._remote.list("images", recursive=True))
        return sum(1 for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else 0


class RunStore:
    """One run. Stages write record shards and read back what earlier stages wrote.

    `location` is a folder or an address (`s3://bucket/runs/demo`); `files` holds what lasts
    (shards, images, report, config, tool table, prompts, logs); `root` is the local folder for
    what must stay on this machine (caches, locks, work folders): the run folder itself when it
    is local, a scratch folder (`run_files.scratch_folder`) when it is remote."""

    def __init__(self, location: str | Path, *, max_pixels: int = MAX_PIXELS):
        self.files: RunFiles = run_files(location)
        self.location = self.files.location
        self.remote = self.files.remote
        self.root = scratch_folder(self.location) if self.remote else Path(self.location)
        self.images = ImageStore(self.root / "images", max_pixels=max_pixels, files=self.files)

    def where(self, key: str = "") -> str:
        """A key of this run as a user would find it (a path, or the address without its query)."""
        base = display_location(self.location) if self.remote else str(self.root)
        return f"{base}/{key}" if key else base

    # -- layout ---------------------------------------------------------------------------
    def dir(self, stage: str) -> Path:
        """A local folder of the run (for a remote run, in its scratch folder)."""
        path = self.root / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- small files ----------------------------------------------------------------------
    def write_bytes(self, key: str, data: bytes) -> None:
        """Write one of the run's lasting files atomically (`config.yaml`, `tools.json`, ...)."""
        self.files.write_bytes(key, data)

    def read_text(self, key: str) -> str | None:
        """A lasting file's text, or None when the run has none."""
        try:
            return self.files.read_bytes(key).decode("utf-8")
        except FileNotFoundError:
            return None

    def local_copy(self, key: str) -> Path | None:
        """A lasting file as a local file (a remote run's fetched into its scratch folder), or
        None when the run has none: for readers that take a path (the config loader)."""
        local = self.root / key
        if self.remote:
            try:
                fetch(self.files, key, local)
            except FileNotFoundError:
                return None
        return local if local.exists() else None

    def push_folder(self, folder: str) -> int:
        """Upload a local folder's files a remote run does not have yet (saved prompts, logs)."""
        local = self.root / folder
        if not self.remote or not local.is_dir():
            return 0
        pushed = 0
        for path in sorted(local.iterdir()):
            key = f"{folder}/{path.name}"
            if path.is_file() and not path.name.startswith(TMP_PREFIX) and not self.files.exists(key):
                self.files.write_bytes(key, path.read_bytes())
                pushed += 1
        return pushed

    def pull_folder(self, folder: str) -> Path:
        """The local folder holding a remote run's `folder` (fetched first); the folder itself locally."""
        local = self.root / folder
        if self.remote:
            for key in self.files.list(folder):
                if not (self.root / key).exists():
                    fetch(self.files, key, self.root / key)
        return local

    def push_logs(self) -> int:
        """Copy this machine's `logs/*.log` to a remote run as `logs/<stage>.<host>.log` (several
        nodes write logs of the same stage side by side); nothing to do for a local run."""
        local = self.root / "logs"
        if not self.remote or not local.is_dir():
            return 0
        logs = list(local.glob("*.log"))
        for path in logs:
            self.files.write_bytes(f"logs/{path.stem}.{host_tag()}.log", path.read_bytes())
        return len(logs)

    # -- shards ---------------------------------------------------------------------------
    def shard_paths(self, stage: str) -> list[str]:
        """The stage's complete shards, as keys (`raw/part-x.parquet`) for `read_shard`."""
        return self.files.list(stage, SHARD_SUFFIX)

    def read_shard(self, key: str, columns: list[str] | None = None) -> pa.Table:
        return self.files.read_table(key, columns=columns)

    def shard_file(self, key: str) -> pq.ParquetFile:
        """A shard opened for reading its schema or some of its columns."""
        return self.files.parquet_file(key)

    def write_table(
        self, stage: str, table: pa.Table, *, prefix: str = "part", name: str | None = None
    ) -> str:
        """Write one shard atomically; the name is unique so concurrent writers never clash
        (`name`: a fixed name, replacing a shard of that name)."""
        final = name or f"{prefix}-{uuid.uuid4().hex[:12]}{SHARD_SUFFIX}"
        if not self.remote:
            folder = self.dir(stage)
            tmp = folder / f"{TMP_PREFIX}{final}"
            pq.write_table(table, tmp, compression="zstd")
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, folder / final)
            fsync_dir(folder)
        else:
            buffer = io.BytesIO()
            pq.write_table(table, buffer, compression="zstd")
            self.files.write_bytes(f"{stage}/{final}", buffer.getvalue())
        return f"{stage}/{final}"

    def delete_shard(self, key: str) -> None:
        self.files.delete(key)

    def write_records(
        self, stage: str, records: Iterable[Record], model: type[Record], **kw: Any
    ) -> str | None:
        records = list(records)
        if not records:
            return None
        return self.write_table(stage, to_table(records, model), **kw)

    def read_table(self, stage: str, columns: list[str] | None = None) -> pa.Table | None:
        tables = [self.read_shard(p, columns=columns) for p in self.shard_paths(stage)]
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="default")

    def iter_records(self, stage: str, model: type[R]) -> Iterator[R]:
        """Records shard by shard (bounded memory), first copy of each id only."""
        id_column = _id_column(model)
        seen: set[str] = set()
        for path in self.shard_paths(stage):
            for record in from_table(self.read_shard(path), model):
                key = getattr(record, id_column)
                if key in seen:
                    continue
                seen.add(key)
                yield record

    def read_records(self, stage: str, model: type[R]) -> list[R]:
        return list(self.iter_records(stage, model))

    def written_ids(self, stage: str, id_column: str) -> set[str]:
        """Ids already written by a stage: what a resumed stage skips."""
        ids: set[str] = set()
        for path in self.shard_paths(stage):
            try:
                column = self.read_shard(path, columns=[id_column]).column(id_column)
            except (pa.ArrowInvalid, KeyError, OSError):
                continue
            ids.update(v for v in column.to_pylist() if v is not None)
        return ids

    def clear_temporaries(self) -> int:
        """Remove leftovers of crashed writers (never complete shards)."""
        return self.files.clear_temporaries()

    # -- report ---------------------------------------------------------------------------
    def tool_table(self) -> ToolTable | None:
        """The tools this run offered its teacher (None for a run that recorded none: an import)."""
        text = self.read_text("tools.json")
        return None if text is None else ToolTable.parse(text, self.where("tools.json"))

    def save_tool_table(self, table: ToolTable) -> None:
        """Record the table a run offered (written once; a rerun with other tools overwrites)."""
        if self.read_text("tools.json") != table.to_json():
            self.write_bytes("tools.json", table.to_json().encode("utf-8"))

    def update_report(self, section: str, values: dict[str, Any]) -> None:
        """Merge one stage's summary into report.json (atomic rewrite)."""
        report = self.read_report()
        report[section] = values
        self.write_bytes("report.json", json.dumps(report, indent=2, sort_keys=True, default=str).encode())

    def read_report(self) -> dict[str, Any]:
        text = self.read_text("report.json")
        return {} if text is None else json.loads(text)


def fetch(files: RunFiles, key: str, local: Path) -> Path:
    """Copy one of a remote run's files to a local path (atomically); FileNotFoundError if absent."""
    atomic_write_bytes(local, files.read_bytes(key))
    return local


def _id_column(model: type[Record]) -> str:
    fields = model.model_fields
    for name in ("trajectory_id", "task_id"):
        if name in fields:
            return name
    raise TypeError(f"{model.__name__} has no id column")
