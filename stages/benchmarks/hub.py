"""Rows of a Hub dataset (or a local copy of one) through `datasets`: the one place seeds and eval
reach the Hub for datasets.

`rows(HubSource(...))` streams rows as plain dicts with images left undecoded (`{bytes, path}`
structs, so no image is decoded and re-encoded on the way to the image store). A local folder or
file is read by the same `datasets` call and never needs the network: `datasets` resolves a
local path to its packaged builders (parquet, json, csv) without asking the Hub.
Streaming is the default: a seed run reads rows once in order and usually stops at
`seeds.limit`, so a 48 GB set (Thyme-RL) costs only the shards it reads, and a local parquet
folder is not copied into the Arrow cache first.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.cells import SeedError

#: File suffix -> the `datasets` builder that reads it (a local file given on its own).
_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv"}


@dataclass(frozen=True)
class HubSource:
    """Which rows: a Hub id (`owner/name`) or local path, its subset (config), split."""

    id: str
    subset: str | None = None
    split: str = "train"
    streaming: bool = True

    def describe(self) -> str:
        subset = f", subset {self.subset}" if self.subset else ""
        return f"{self.id} (split {self.split}{subset})"


def is_local(source: HubSource) -> bool:
    return Path(source.id).exists()


def _undecoded(feature: Any) -> Any:
    """The same feature with every image left as its `{bytes, path}` struct."""
    import datasets

    if isinstance(feature, datasets.Image):
        return datasets.Image(decode=False)
    if isinstance(feature, dict):
        return {name: _undecoded(inner) for name, inner in feature.items()}
    inner = getattr(feature, "feature", None)
    if inner is not None and dataclasses.is_dataclass(feature):
        changed = _undecoded(inner)
        return feature if changed is inner else dataclasses.replace(feature, feature=changed)
    return feature


def _raw_images(dataset: Any) -> Any:
    features = getattr(dataset, "features", None)
    if not features:
        return dataset
    for name, feature in features.items():
        raw = _undecoded(feature)
        if raw != feature:
            dataset = dataset.cast_column(name, raw)
    return dataset


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """`datasets` offline for a local read: it otherwise pings the Hub to count a download even for
    a local parquet file (`increase_load_count`, a HEAD request that waits up to 3 s when cut off)."""
    from datasets import config

    saved = config.HF_HUB_OFFLINE, config.HF_UPDATE_DOWNLOAD_COUNTS
    config.HF_HUB_OFFLINE, config.HF_UPDATE_DOWNLOAD_COUNTS = True, False
    try:
        yield
    finally:
        config.HF_HUB_OFFLINE, config.HF_UPDATE_DOWNLOAD_COUNTS = saved


def _load(source: HubSource) -> Any:
    import datasets

    local = Path(source.id)
    if not local.exists():
        return datasets.load_dataset(source.id, source.subset, split=source.split, streaming=source.streaming)
    with _offline():
        return _load_local(local, source)


def _load_local(local: Path, source: HubSource) -> Any:
    import datasets

    if local.is_dir() and any((local / name).exists() for name in ("dataset_info.json", "dataset_dict.json")):
        loaded = datasets.load_from_disk(str(local))  # a `save_to_disk` folder
        if isinstance(loaded, datasets.DatasetDict):
            if source.split not in loaded:
                raise SeedError(f"{local}: no split {source.split!r}; splits: {sorted(loaded)}")
            loaded = loaded[source.split]
        return loaded
    if local.is_file():
        builder = _BUILDERS.get(local.suffix.lower())
        if builder is None:
            raise SeedError(
                f"{local}: cannot read {local.suffix!r} files; give a parquet, JSON(L) or CSV file"
            )
        extra = {"delimiter": "\t"} if local.suffix.lower() == ".tsv" else {}
        return datasets.load_dataset(
            builder,
            data_files={source.split: str(local)},
            split=source.split,
            streaming=source.streaming,
            **extra,
        )
    return datasets.load_dataset(str(local), source.subset, split=source.split, streaming=source.streaming)


def rows(source: HubSource) -> Iterator[dict[str, Any]]:
    """Rows of the source, streamed. Opening happens now, so a source that cannot be opened (not
    found, gated, a wrong subset or split, offline) is one clear `SeedError` for the caller."""
    try:
        dataset = _raw_images(_load(source))
    except SeedError:
        raise
    except Exception as exc:  # datasets raises many types for the same few causes
        where = "local" if is_local(source) else "Hub"
        raise SeedError(
            f"cannot open {where} dataset {source.describe()}: {type(exc).__name__}: {exc}"
        ) from None
    return _stream(dataset, source)


def _stream(dataset: Any, source: HubSource) -> Iterator[dict[str, Any]]:
    count = 0
    try:
        for row in dataset:
            yield row
            count += 1
    except Exception as exc:  # a shard that breaks mid-stream ends the stream, said plainly
        raise SeedError(
            f"reading {source.describe()} failed after {count} rows: {type(exc).__name__}: {exc}"
        ) from None
