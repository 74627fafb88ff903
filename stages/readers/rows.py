"""Rows of a dataset, on the Hub or local, through `datasets`: the one reader seeds and eval use.

`rows(HubSource(...))` streams `Row`s: plain dicts with images left undecoded (`{bytes, path}`
structs, so no image is decoded and re-encoded on the way to the image store), each with where
it stands (`row N`, `line N`). What it reads:
- a Hub id: `datasets.load_dataset(id, subset, split=, streaming=)`;
- a local `save_to_disk` folder: `load_from_disk`, memory-mapped, iterated as a stream;
- a local parquet or CSV/TSV file, or a folder of data files: `datasets`' packaged builders
  (a folder's splits come from its file names, as on the Hub; with `split=None`, every parquet
  file under it is one stream);
- a local JSON lines file: `json_lines.json_records`, so a broken line costs that line only.
A local path never needs the network (`datasets` is held offline for it) and is always streamed:
streaming a local file reads it where it lies, where a non-streamed load would first copy it into
`datasets`' Arrow cache. `HubSource.base()` owns the folder relative image paths resolve against.
Streaming is the default for a Hub id too: a seed run reads rows once in order and usually stops
at `seeds.limit`, so a 48 GB set (Thyme-RL) costs only the shards it reads.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from stages.readers.cells import SeedError
from stages.readers.json_lines import json_records

#: File suffix -> what reads it (a local file given on its own).
_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv", ".tsv": "csv"}
#: Rows per batch read from a local parquet file: bounded memory when rows carry images (the
#: `datasets` default is a whole row group, which can be gigabytes of images).
_BATCH_ROWS = 64


@dataclass(frozen=True)
class HubSource:
    """Which rows: a Hub id (`owner/name`) or local path, its subset (config), split, and for a
    local file whose suffix does not say, what it holds (`builder`: parquet, json, csv)."""

    id: str
    subset: str | None = None
    split: str | None = "train"  # None (local only): the only or first split, or every file
    streaming: bool = True  # Hub ids only: a local path is always streamed
    builder: str | None = None

    def describe(self) -> str:
        subset = f", subset {self.subset}" if self.subset else ""
        return f"{self.id} (split {self.split or 'any'}{subset})"

    @property
    def local(self) -> Path | None:
        path = Path(self.id)
        return path if path.exists() else None

    def base(self) -> Path:
        """The folder relative image paths in these rows resolve against: a local file's folder,
        a local folder itself; for a Hub id the working directory (its rows carry their images)."""
        local = self.local
        if local is None:
            return Path.cwd()
        return local if local.is_dir() else local.parent


class Row(NamedTuple):
    """One row: where it stands (`row N` from 0, `line N` from 1), its values, or why it is broken."""

    where: str
    data: dict[str, Any] | None
    error: str = ""


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
def _quiet(local: bool) -> Iterator[None]:
    """`datasets` as a plain reader while it opens a source. For a local one it is offline: it
    otherwise pings the Hub to count a download even for a local parquet file
    (`increase_load_count`, a HEAD request that waits up to 3 s when cut off). And a stream does
    not import torch: `IterableDataset()` imports it (1.5 s CPU, ~250 MB) only to share an epoch
    counter with DataLoader workers, which plain iteration never uses."""
    from datasets import config

    saved = config.HF_HUB_OFFLINE, config.HF_UPDATE_DOWNLOAD_COUNTS, config.TORCH_AVAILABLE
    if local:
        config.HF_HUB_OFFLINE, config.HF_UPDATE_DOWNLOAD_COUNTS = True, False
    config.TORCH_AVAILABLE = False
    try:
        yield
    finally:
        config.HF_HUB_OFFLINE, config.HF_UPDATE_DOWNLOAD_COUNTS, config.TORCH_AVAILABLE = saved


def _load(source: HubSource) -> Any:
    import datasets

    local = source.local
    with _quiet(local is not None):
        if local is None:
            split = source.split or "train"
            loaded = datasets.load_dataset(source.id, source.subset, split=split, streaming=source.streaming)
        else:
            loaded = _load_local(local, source)
        return _raw_images(loaded)


def _saved_split(local: Path, split: str | None) -> Any:
    """A `save_to_disk` folder's rows (`split`, else its first), memory-mapped and streamed."""
    import datasets

    loaded = datasets.load_from_disk(str(local))
    if isinstance(loaded, datasets.DatasetDict):
        if split is None:
            split = next(iter(loaded))
        elif split not in loaded:
            raise SeedError(f"{local}: no split {split!r}; splits: {sorted(loaded)}")
        loaded = loaded[split]
    return loaded.to_iterable_dataset()


def _files(local: Path, builder: str | None) -> tuple[str, list[str]]:
    """(builder, files) for a local file, or for every parquet file under a local folder."""
    if local.is_dir():
        files = sorted(str(f) for f in local.rglob("*.parquet"))
        if not files:
            raise SeedError(f"{local}: no parquet files found (expected a dataset folder or a .parquet file)")
        return "parquet", files
    builder = builder or _BUILDERS.get(local.suffix.lower())
    if builder not in ("parquet", "csv"):
        raise SeedError(f"{local}: cannot read {local.suffix!r} files; give a parquet, JSON(L) or CSV file")
    return builder, [str(local)]


def _load_local(local: Path, source: HubSource) -> Any:
    import datasets

    if local.is_dir() and any((local / name).exists() for name in ("dataset_info.json", "dataset_dict.json")):
        return _saved_split(local, source.split)
    if local.is_dir() and source.split is not None:  # a local copy of a Hub dataset: splits by name
        return datasets.load_dataset(str(local), source.subset, split=source.split, streaming=True)
    builder, files = _files(local, source.builder)
    extra: dict[str, Any] = {"batch_size": _BATCH_ROWS} if builder == "parquet" else {}
    if local.suffix.lower() == ".tsv":
        extra["delimiter"] = "\t"
    split = source.split or "train"  # any name: it labels the files given
    return datasets.load_dataset(builder, data_files={split: files}, split=split, streaming=True, **extra)


def _is_json(source: HubSource) -> bool:
    local = source.local
    return (
        local is not None
        and local.is_file()
        and (source.builder or _BUILDERS.get(local.suffix.lower())) == "json"
    )


def rows(source: HubSource) -> Iterator[Row]:
    """Rows of the source, streamed. Opening happens now, so a source that cannot be opened (not
    found, gated, a wrong subset or split, offline) is one clear `SeedError` for the caller."""
    if _is_json(source):
        return _stream(_json_rows(Path(source.id)), source)
    try:
        dataset = _load(source)
    except SeedError:
        raise
    except Exception as exc:  # datasets raises many types for the same few causes
        where = "local" if source.local else "Hub"
        raise SeedError(
            f"cannot open {where} dataset {source.describe()}: {type(exc).__name__}: {exc}"
        ) from None
    return _stream((Row(f"row {number}", row) for number, row in enumerate(dataset)), source)


def _json_rows(path: Path) -> Iterator[Row]:
    for where, value, error in json_records(path):
        if error:
            yield Row(where, None, error)
        elif isinstance(value, dict):
            yield Row(where, value)
        else:
            yield Row(where, None, f"not an object but {type(value).__name__}")


def _stream(found: Iterator[Row], source: HubSource) -> Iterator[Row]:
    count = 0
    try:
        for row in found:
            yield row
            count += 1
    except Exception as exc:  # a shard that breaks mid-stream ends the stream, said plainly
        raise SeedError(
            f"reading {source.describe()} failed after {count} rows: {type(exc).__name__}: {exc}"
        ) from None
