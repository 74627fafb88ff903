"""The local corpus (`pages.jsonl`, `images.jsonl`) and where its persistent indexes live.

An image record (`images.jsonl`) is `{"path" (relative to the corpus), "page_url", "title"}` and
may name its own `url`; otherwise the image is where the corpus's web host serves it, the origin
of its `page_url` plus its path (the offline world serves `images/<slug>.png` at
`http://world.trajforge.local/images/<slug>.png`). Search results show that URL, never the file
(`image_url`): a file path is the host's, not the web's.

Indexes are keyed by the content hash of the corpus file, built once under a file lock (so
parallel workers do not build twice), written to a temporary folder and renamed into place, and
reused by every later process. The hash itself is remembered per (size, mtime) so a large corpus
is not re-read at every start.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit


def content_hash(path: Path) -> str:
    """sha256 of a file (first 16 hex), memoised next to the index by size and mtime."""
    info = path.stat()
    memo = path.with_name(f".{path.name}.sha256")
    stamp = f"{info.st_size}:{info.st_mtime_ns}"
    with contextlib.suppress(OSError, ValueError):
        saved_stamp, digest = memo.read_text().split()
        if saved_stamp == stamp:
            return digest
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    digest = sha.hexdigest()[:16]
    with contextlib.suppress(OSError):
        memo.write_text(f"{stamp} {digest}")
    return digest


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(byte offset, record) per valid line; broken lines are skipped (counted by the caller)."""
    with path.open("rb") as handle:
        offset = 0
        for line in handle:
            start, offset = offset, offset + len(line)
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield start, record


def image_url(record: dict) -> str:
    """The web address of a corpus image: its `url`, else `page_url`'s origin + `/` + its path.

    "" when neither is an http(s) URL (the hit then shows no image line rather than a file path).
    """
    own = str(record.get("url") or "")
    if own.startswith(("http://", "https://")):
        return own
    page = urlsplit(str(record.get("page_url") or ""))
    path = str(record.get("path") or "").lstrip("/")
    if page.scheme not in ("http", "https") or not page.netloc or not path:
        return ""
    return f"{page.scheme}://{page.netloc}/{path}"


def read_at(path: Path, offset: int) -> dict:
    with path.open("rb") as handle:
        handle.seek(offset)
        return json.loads(handle.readline())


def ensure_index(
    index_root: Path, kind: str, source: Path, build: Callable[[Path], None], key: str | None = None
) -> Path:
    """`<index_root>/<kind>-<hash>`: built by `build(tmp_dir)` once, then reused (`key`: the
    source's own key where it is no single file, else its content hash)."""
    target = index_root / f"{kind}-{key or content_hash(source)}"
    if (target / "DONE").exists():
        return target
    index_root.mkdir(parents=True, exist_ok=True)
    with (index_root / f".{kind}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "DONE").exists():  # another process built it while we waited
            return target
        tmp = index_root / f".{target.name}.tmp{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            build(tmp)
        except BaseException:  # a failed build leaves nothing half-written behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / "DONE").write_text("ok")
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target
