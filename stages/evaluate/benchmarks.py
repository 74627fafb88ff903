"""Benchmark loaders for `trajforge eval`: each format as published, from a file or the Hub.

`load_items(source, fmt=None, ...)` yields `EvalItem`s (and `BadRow`s for rows that cannot be
used). A local file's layout is recognised from the file (`fmt` overrides):
- `vlmeval-tsv`: VLMEvalKit's multiple-choice TSV (V*, HRBench 4K/8K, MME-RealWorld, TreeBench);
- `mmsearch`: MMSearch end2end parquet; `fvqa`: FVQA test parquet;
- `browsecomp-vl`: BrowseComp-VL JSONL;
- `world`: the offline world's held-out tasks (those `make synth` did not use).
`BENCHES` names the published copies (`--bench NAME`) in the form each is published in: V* and
HRBench are single TSV files in Hub repos (the URLs VLMEvalKit's `DATASET_URL` downloads), fetched
once with `hf_hub_download`; MMSearch and FVQA are Hub datasets, read through
`datasets.load_dataset(id, subset, split=...)` (`hub.py`) and each row through its format's
reader (`ROW_READERS`, shared with seeds). A local parquet or JSONL file is read by the same
`hub.rows` seeds use, so a file means the same rows in eval and in seeds. BrowseComp-VL is published only as JSONL + images in
WebWatcher's GitHub repo (`WebWatcher/benchmark/`), so it is read from a local file with
`--data`. A local file never touches the network.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from stages.readers import search_sets, vlmeval_tsv
from stages.readers.items import BadRow, EvalItem
from stages.readers.rows import HubSource, Row, rows
from stages.readers.task_files import world_task_order

__all__ = [
    "BENCHES",
    "FORMATS",
    "ROW_READERS",
    "BadRow",
    "Bench",
    "EvalItem",
    "bench_items",
    "detect_format",
    "load_items",
    "world_items",
]

FORMATS = ("vlmeval-tsv", "mmsearch", "fvqa", "browsecomp-vl", "world")


ROW_READERS = search_sets.ROW_READERS  # shared with seeds


@dataclass(frozen=True)
class Bench:
    """A benchmark's published copy: a file in a Hub repo, or a Hub dataset's subset and split."""

    format: str
    repo_id: str
    filename: str | None = None  # a single file (hf_hub_download), else a `datasets` dataset
    subset: str | None = None
    split: str = "test"


BENCHES: dict[str, Bench] = {
    # VLMEvalKit's DATASET_URL points at these files (VStarBench, HRBench4K/8K)
    "vstar": Bench("vlmeval-tsv", "xjtupanda/VStar_Bench", filename="VStarBench.tsv"),
    "hrbench4k": Bench("vlmeval-tsv", "DreamMr/HR-Bench", filename="hr_bench_4k.tsv"),
    "hrbench8k": Bench("vlmeval-tsv", "DreamMr/HR-Bench", filename="hr_bench_8k.tsv"),
    # MMSearch names its subsets after the task and each has one split of the same name
    "mmsearch": Bench("mmsearch", "CaraJ/MMSearch", subset="end2end", split="end2end"),
    # FVQA's splits come from its file names (fvqa_train.parquet, fvqa_test.parquet)
    "fvqa": Bench("fvqa", "lmms-lab/FVQA", split="test"),
}


class FormatError(ValueError):
    """A file whose layout is not one the loaders know; the message says what to do."""


def _parquet_columns(path: Path) -> list[str]:
    return pq.ParquetFile(path).schema_arrow.names


def detect_format(path: Path) -> str:
    """The format of a local file, from its extension and columns."""
    if not path.exists():
        raise FormatError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return "vlmeval-tsv"
    if suffix in (".jsonl", ".json"):
        return "browsecomp-vl"
    if suffix == ".parquet":
        columns = _parquet_columns(path)
        if search_sets.is_mmsearch(columns):
            return "mmsearch"
        if search_sets.is_fvqa(columns):
            return "fvqa"
        raise FormatError(
            f"{path}: parquet columns {columns[:12]} match no known layout (MMSearch: query, "
            "gt_answer; FVQA: prompt, reward_model); pass --format"
        )
    raise FormatError(f"{path}: unknown file type {suffix!r}; pass --format (one of {', '.join(FORMATS)})")


def _name(path: Path) -> str:
    return path.stem


def _table_items(source: HubSource, fmt: str, name: str) -> Iterator[EvalItem | BadRow]:
    """Items of a table-shaped source (parquet, a Hub dataset) through its format's row reader;
    the source is opened now, so one that cannot be opened is a `SeedError` here."""
    read, base, found = ROW_READERS[fmt], source.base(), rows(source)
    return (
        read(row.data, n, base, name) if row.data is not None else _bad(row) for n, row in enumerate(found)
    )


def _bad(row: Row) -> BadRow:
    return BadRow(row.where, f"{row.where}: {row.error}")


def load_items(
    source: str | Path, fmt: str | None = None, *, benchmark: str | None = None
) -> Iterator[EvalItem | BadRow]:
    """Items of a local file (any known format), streamed."""
    path = Path(source)
    fmt = fmt or detect_format(path)
    name = benchmark or _name(path)
    if fmt == "vlmeval-tsv":
        yield from vlmeval_tsv.load(path, name)
    elif fmt in ROW_READERS:
        yield from _table_items(HubSource(str(path), split=None), fmt, name)
    elif fmt == "browsecomp-vl":
        level = "level2" if "level2" in path.name else "level1" if "level1" in path.name else ""
        local = HubSource(str(path), split=None, builder="json")
        for row in rows(local):
            if row.data is None:
                yield _bad(row)
            else:
                yield search_sets.browsecomp_item(row.data, row.where, local.base(), name, level)
    else:
        raise FormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def bench_items(name: str, fmt: str | None = None) -> Iterator[EvalItem | BadRow]:
    """Items of a named benchmark from its published copy (a file downloaded once into the Hub
    cache, or a Hub dataset read through `datasets`, cached by it)."""
    if name in ("browsecomp-vl", "browsecomp_vl", "bc-vl"):
        raise FormatError(
            "BrowseComp-VL is published as JSONL + images in WebWatcher's GitHub repo, not on the Hub: "
            "--data WebWatcher/benchmark/bc_vl_level1.jsonl (or bc_vl_level2.jsonl)"
        )
    if name not in BENCHES:
        raise FormatError(f"unknown benchmark {name!r}; known: world, {', '.join(sorted(BENCHES))}")
    bench = BENCHES[name]
    fmt = fmt or bench.format
    if bench.filename:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(bench.repo_id, bench.filename, repo_type="dataset")
        return load_items(Path(path), fmt, benchmark=name)
    if fmt not in ROW_READERS:
        raise FormatError(f"--format {fmt} cannot read the Hub dataset {bench.repo_id}; use {bench.format}")
    # a benchmark is read whole and cached by datasets, so a rerun reads the local copy
    return _table_items(HubSource(bench.repo_id, bench.subset, bench.split, streaming=False), fmt, name)


def world_items(world_dir: Path, used: set[str] | None = None, first: int = 100) -> Iterator[EvalItem]:
    """The world's held-out tasks: those not in `used` (a training run's task ids), or, without
    one, all but the first `first` in the order `seeds.limit` takes them."""
    tasks = world_task_order(world_dir)
    held = [t for t in tasks if t.task_id not in used] if used else tasks[first:]
    for task in held:
        yield EvalItem(
            item_id=task.task_id,
            benchmark="world",
            question=task.question,
            images=[Path(p) for p in task.images],
            answer=task.gold_answer,
            aliases=list(task.answer_aliases),
            split=task.category,
            mode=task.mode,
            category=task.category,
        )
