"""The run store: `runs/<name>/` and everything a stage reads or writes there.

Layout: `config.yaml` (resolved, no secrets), `tasks/`, `plans/`, `raw/`, `verdicts/`, `kept/`,
`sft/`, `images/`, `cache/`, `report.json`. Shards are parquet, written under a temporary name
and renamed into place (atomic on POSIX), so a crash never leaves half a shard; readers ignore
temporaries. A stage resumes by asking `written_ids` which ids it already wrote.
"""

from __future__ import annotations

import hashlib
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
from pipeline.schema import R, Record, from_table, to_table
from pipeline.tool_spec import ToolTable

SHARD_SUFFIX = ".parquet"
TMP_PREFIX = ".tmp-"
STAGE_DIRS = ("tasks", "plans", "raw", "verdicts", "kept", "sft", "images", "cache")


def _fsync_dir(path: Path) -> None:
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
    _fsync_dir(path.parent)


class ImageStore:
    """Content-addressed images: `images/<aa>/<sha256>.<ext>`; a reference is the sha256 hex."""

    def __init__(self, root: Path, max_pixels: int = MAX_PIXELS):
        self.root = Path(root)
        self.max_pixels = max_pixels

    def path(self, ref: str) -> Path:
        folder = self.root / ref[:2]
        for ext in (".png", ".jpg", ".webp", ".gif"):
            candidate = folder / f"{ref}{ext}"
            if candidate.exists():
                return candidate
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


class RunStore:
    """One run folder. Stages write record shards and read back what earlier stages wrote."""

    def __init__(self, root: str | Path, *, max_pixels: int = MAX_PIXELS):
        self.root = Path(root)
        self.images = ImageStore(self.root / "images", max_pixels=max_pixels)

    # -- layout ---------------------------------------------------------------------------
    def dir(self, stage: str) -> Path:
        path = self.root / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def report_path(self) -> Path:
        return self.root / "report.json"

    # -- shards ---------------------------------------------------------------------------
    def shard_paths(self, stage: str) -> list[Path]:
        folder = self.root / stage
        if not folder.exists():
            return []
        return sorted(p for p in folder.glob(f"*{SHARD_SUFFIX}") if not p.name.startswith(TMP_PREFIX))

    def write_table(self, stage: str, table: pa.Table, *, prefix: str = "part") -> Path:
        """Write one shard atomically; the name is unique so concurrent writers never clash."""
        folder = self.dir(stage)
        final = folder / f"{prefix}-{uuid.uuid4().hex[:12]}{SHARD_SUFFIX}"
        tmp = folder / f"{TMP_PREFIX}{final.name}"
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        _fsync_dir(folder)
        return final

    def write_records(
        self, stage: str, records: Iterable[Record], model: type[Record], **kw: Any
    ) -> Path | None:
        records = list(records)
        if not records:
            return None
        return self.write_table(stage, to_table(records, model), **kw)

    def read_table(self, stage: str, columns: list[str] | None = None) -> pa.Table | None:
        tables = [pq.read_table(p, columns=columns) for p in self.shard_paths(stage)]
        if not tables:
            return None
        return pa.concat_tables(tables, promote_options="default")

    def iter_records(self, stage: str, model: type[R]) -> Iterator[R]:
        """Records shard by shard (bounded memory), first copy of each id only."""
        id_column = _id_column(model)
        seen: set[str] = set()
        for path in self.shard_paths(stage):
            for record in from_table(pq.read_table(path), model):
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
                column = pq.read_table(path, columns=[id_column]).column(id_column)
            except (pa.ArrowInvalid, KeyError, OSError):
                continue
            ids.update(v for v in column.to_pylist() if v is not None)
        return ids

    def clear_temporaries(self) -> int:
        """Remove leftovers of crashed writers (never complete shards)."""
        removed = 0
        for path in self.root.glob(f"*/{TMP_PREFIX}*"):
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    # -- report ---------------------------------------------------------------------------
    @property
    def tools_path(self) -> Path:
        return self.root / "tools.json"

    def tool_table(self) -> ToolTable | None:
        """The tools this run offered its teacher (None for a run that recorded none: an import)."""
        return ToolTable.load(self.tools_path)

    def update_report(self, section: str, values: dict[str, Any]) -> None:
        """Merge one stage's summary into report.json (atomic rewrite)."""
        report = self.read_report()
        report[section] = values
        atomic_write_bytes(
            self.report_path, json.dumps(report, indent=2, sort_keys=True, default=str).encode()
        )

    def read_report(self) -> dict[str, Any]:
        if not self.report_path.exists():
            return {}
        return json.loads(self.report_path.read_text())


def _id_column(model: type[Record]) -> str:
    fields = model.model_fields
    for name in ("trajectory_id", "task_id"):
        if name in fields:
            return name
    raise TypeError(f"{model.__name__} has no id column")
