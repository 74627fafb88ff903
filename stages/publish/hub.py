"""The kept set on the Hugging Face Hub: deterministic parquet shards, the card, a resumable push.

Layout of the dataset repository (and of `trajforge publish --dry-run --out DIR`):

    README.md                                       card: YAML configs + features, then the body
    data/<subset>/train-00000-of-0000N.parquet      subsets: deepresearch, general, plan

Rows follow `stages.publish.trainer_exports.flat_messages` (text content with `<image>` placeholders, the layout
LLaMA-Factory and ms-swift read) with `images` as a list of the `datasets` Image feature (bytes
embedded, in order of appearance) and metadata columns. Shards are bounded by `max_shard_mb` and
byte-for-byte deterministic for the same input (sorted rows, fixed writer settings, no
timestamps), so a resumed push recognises what the Hub already holds by content hash and
uploads only the rest.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from pipeline.leaks import LeakGuard, Match
from pipeline.schema import Trajectory
from pipeline.store import RunStore, atomic_write_bytes
from stages.publish.card import render_card
from stages.publish.layout import SPLIT, BuildReport, SubsetBuild, features
from stages.publish.trainer_exports import SUBSETS, conversation, flat_messages

log = logging.getLogger("trajforge.publish")

ROWS_PER_GROUP = 64  # row groups of a few dozen image rows keep the dataset viewer fast
COMMIT_MAX_FILES = 50  # shards per commit: a crash mid-push loses at most one commit of work
#: Parquet footer + schema metadata of one shard, on top of the row bytes the bound applies to.
SHARD_OVERHEAD_BYTES = 16 * 1024


# -------------------------------------------------------------------------------------- rows


def _conversation(trajectory: Trajectory) -> tuple[list[dict[str, str]], list[str]]:
    return flat_messages(conversation(trajectory, observation_role="user"))


def hub_row(trajectory: Trajectory, store: RunStore) -> dict[str, Any]:
    """One dataset row; raises FileNotFoundError when an image is missing from the run."""
    row, refs = text_row(trajectory)
    images = []
    for ref in refs:
        path = store.images.path(ref)
        if not path.exists():
            raise FileNotFoundError(f"image {ref} is missing from {store.images.root}")
        images.append({"bytes": path.read_bytes(), "path": path.name})
    return {**row, "images": images, "num_images": len(images)}


def text_row(trajectory: Trajectory) -> tuple[dict[str, Any], list[str]]:
    """Every text column of a dataset row (what the leak guard scans) and the image refs."""
    messages, refs = _conversation(trajectory)
    tools = [step.tool_name or "" for step in trajectory.tool_calls]
    row = {
        "messages": messages,
        "trajectory_id": trajectory.trajectory_id,
        "task_id": trajectory.task_id,
        "source": trajectory.source,
        "category": trajectory.category,
        "mode": trajectory.mode,
        "teacher": trajectory.teacher,
        "prompt_version": trajectory.prompt_version,
        "question": trajectory.question,
        "gold_answer": trajectory.gold_answer,
        "final_answer": trajectory.final_answer,
        "plan": trajectory.plan,
        "num_turns": len(trajectory.steps),
        "num_tool_calls": len(tools),
        "tools": tools,
    }
    return row, refs


def scan_rows(records: Iterable[Trajectory], guard: LeakGuard, store: RunStore | None = None) -> list[Match]:
    """The guard's matches in the text of every row a build of `records` would publish, and
    (given the store) in the text chunks of its images."""
    matches: list[Match] = []
    for trajectory in records:
        row, refs = text_row(trajectory)
        label = f"{trajectory.trajectory_id} ({trajectory.mode})"
        matches.extend(guard.scan_row(label, row))
        for index, ref in enumerate(refs if store is not None else []):
            path = store.images.path(ref)  # type: ignore[union-attr]
            if path.exists():
                matches.extend(guard.scan_image(label, path.read_bytes(), f"images[{index}]"))
    return matches


def estimated_bytes(trajectory: Trajectory, store: RunStore) -> int:
    """Upper-bound-ish size of a row in a shard: image bytes (incompressible) plus its text."""
    messages, refs = _conversation(trajectory)
    text = sum(len(m["content"].encode("utf-8")) for m in messages)
    text += len(trajectory.question.encode("utf-8")) + len((trajectory.plan or "").encode("utf-8")) + 512
    images = 0
    for ref in refs:
        path = store.images.path(ref)
        if not path.exists():
            raise FileNotFoundError(f"image {ref} is missing from {store.images.root}")
        images += path.stat().st_size
    return text + images


def plan_shards(sizes: list[int], max_bytes: int) -> list[list[int]]:
    """Greedy, order-preserving grouping of row indices into shards of at most `max_bytes`.

    A single row bigger than the bound gets a shard of its own (it cannot be split).
    """
    shards: list[list[int]] = []
    current: list[int] = []
    total = 0
    for index, size in enumerate(sizes):
        if current and total + size > max_bytes:
            shards.append(current)
            current, total = [], 0
        current.append(index)
        total += size
    if current:
        shards.append(current)
    return shards


def shard_name(index: int, count: int) -> str:
    return f"{SPLIT}-{index:05d}-of-{count:05d}.parquet"


def _write_shard(path: Path, rows: Iterator[dict[str, Any]], schema: pa.Schema) -> None:
    """Write rows to one parquet file (temporary name, then rename), row group by row group."""
    tmp = path.with_name(f".tmp-{path.name}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(
        tmp, schema, compression="zstd", use_content_defined_chunking=True, write_statistics=False
    ) as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == ROWS_PER_GROUP:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        if batch:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    tmp.replace(path)


def write_subset(
    store: RunStore, records: list[Trajectory], folder: Path, subset: str, max_bytes: int, skipped: list[str]
) -> SubsetBuild:
    """Write one subset's shards under folder/data/<subset>/ (rows sorted by trajectory id)."""
    build = SubsetBuild(subset)
    sized: list[tuple[Trajectory, int]] = []
    for trajectory in sorted(records, key=lambda t: t.trajectory_id):
        try:
            sized.append((trajectory, estimated_bytes(trajectory, store)))
        except (FileNotFoundError, KeyError, ValueError) as exc:
            skipped.append(f"{trajectory.trajectory_id}: {exc}")
    if not sized:
        return build
    schema = features().arrow_schema
    groups = plan_shards([size for _, size in sized], max_bytes)
    progress = tqdm(total=len(sized), desc=f"shards {subset}", unit="row", leave=False)
    for number, group in enumerate(groups):
        path = folder / "data" / subset / shard_name(number, len(groups))
        chosen = [sized[i][0] for i in group]

        def rows(chosen: list[Trajectory] = chosen) -> Iterator[dict[str, Any]]:
            for trajectory in chosen:
                yield hub_row(trajectory, store)
                progress.update(1)

        _write_shard(path, rows(), schema)
        build.files.append(path)
        build.records.extend(chosen)
        build.num_bytes += sum(sized[i][1] for i in group)
        build.download_bytes += path.stat().st_size
    progress.close()
    return build


def build_folder(
    store: RunStore,
    out: str | Path,
    *,
    repo: str,
    max_shard_mb: float = 300,
    license: str = "apache-2.0",
    records: Iterable[Trajectory] | None = None,
) -> BuildReport:
    """Write the exact folder a push uploads: data shards per subset, then README.md.

    Shards of earlier builds in `out/data` that this build did not write are removed, so the
    folder always equals what `load_dataset` should see.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    records = store.read_records("kept", Trajectory) if records is None else list(records)
    report = BuildReport(folder=folder)
    by_mode: dict[str, list[Trajectory]] = {subset: [] for subset in SUBSETS}
    for trajectory in records:
        by_mode[trajectory.mode].append(trajectory)
    max_bytes = int(max_shard_mb * 1024 * 1024)
    for subset in SUBSETS:
        build = write_subset(store, by_mode[subset], folder, subset, max_bytes, report.skipped)
        if build.files:
            report.subsets[subset] = build
    written = {p.resolve() for p in report.files}
    for stale in (folder / "data").glob("*/*.parquet") if (folder / "data").exists() else []:
        if stale.resolve() not in written:
            stale.unlink()
    card = render_card(report, store=store, repo=repo, license=license)
    report.card = folder / "README.md"
    atomic_write_bytes(report.card, card.encode("utf-8"))
    return report


# -------------------------------------------------------------------------------------- push


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_oid(path: Path) -> str:
    """The git blob id of a file (what the Hub reports for files stored outside LFS)."""
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class RemoteFile:
    path: str
    blob_id: str
    sha256: str | None  # set for LFS / Xet files


def remote_files(api: Any, repo: str, revision: str) -> dict[str, RemoteFile]:
    """Every file of the dataset repo at `revision` ({} for a repo without that revision yet)."""
    from huggingface_hub import RepoFile
    from huggingface_hub.errors import EntryNotFoundError, RevisionNotFoundError

    try:
        entries = list(api.list_repo_tree(repo, repo_type="dataset", revision=revision, recursive=True))
    except (EntryNotFoundError, RevisionNotFoundError):
        return {}
    return {
        e.path: RemoteFile(e.path, e.blob_id, e.lfs.sha256 if e.lfs else None)
        for e in entries
        if isinstance(e, RepoFile)
    }


def same_content(local: Path, remote: RemoteFile | None) -> bool:
    if remote is None:
        return False
    if remote.sha256:
        return sha256_file(local) == remote.sha256
    return git_blob_oid(local) == remote.blob_id


@dataclass
class PushReport:
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)
    url: str = ""


def _local_files(folder: Path) -> list[str]:
    data = sorted(p.relative_to(folder).as_posix() for p in (folder / "data").glob("*/*.parquet"))
    return [*data, "README.md"]


def push_folder(
    folder: str | Path,
    repo: str,
    *,
    token: str | None,
    endpoint: str | None = None,
    private: bool = False,
    revision: str = "main",
    message: str = "Upload trajforge dataset",
) -> PushReport:
    """Upload a built folder to a dataset repo, skipping files the Hub already holds unchanged.

    Shards go first, one commit per subset (at most COMMIT_MAX_FILES files each, stale shards of
    that subset deleted in its last commit); the card goes last, so the repo never advertises
    data that is not there yet. Re-running after a crash uploads only what is missing.
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

    folder = Path(folder)
    api = HfApi(endpoint=endpoint, token=token)
    url = api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
    remote = remote_files(api, repo, revision)
    local = _local_files(folder)
    report = PushReport(url=str(url))

    def subset_of(path: str) -> str:
        return path.split("/")[1] if path.startswith("data/") else ""

    stale = sorted(p for p in remote if p.startswith("data/") and p.endswith(".parquet") and p not in local)
    groups: list[tuple[str, list[str], list[str]]] = []
    for subset in sorted({subset_of(p) for p in local if p.startswith("data/")}):
        adds = [p for p in local if subset_of(p) == subset]
        dels = [p for p in stale if subset_of(p) == subset]
        groups.append((subset, adds, dels))
    leftover = [p for p in stale if subset_of(p) not in {g[0] for g in groups}]
    groups.append(("card", ["README.md"], leftover))

    for name, adds, dels in groups:
        changed = []
        for path in adds:
            if same_content(folder / path, remote.get(path)):
                report.unchanged.append(path)
            else:
                changed.append(path)
        chunks = [changed[i : i + COMMIT_MAX_FILES] for i in range(0, len(changed), COMMIT_MAX_FILES)] or [[]]
        for number, chunk in enumerate(chunks):
            ops: list[Any] = [
                CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(folder / p)) for p in chunk
            ]
            if number == len(chunks) - 1:
                ops += [CommitOperationDelete(path_in_repo=p) for p in dels]
            if not ops:
                continue
            info = api.create_commit(
                repo,
                ops,
                commit_message=f"{message} ({name})",
                repo_type="dataset",
                revision=revision,
            )
            report.commits.append(info.oid)
            report.uploaded += chunk
            if number == len(chunks) - 1:
                report.deleted += dels
            log.info("committed %s: %d files, %d deletions (%s)", name, len(chunk), len(dels), info.oid)
    return report


def clear_folder(folder: Path) -> None:
    """Remove a staging folder built for a push."""
    shutil.rmtree(folder, ignore_errors=True)
