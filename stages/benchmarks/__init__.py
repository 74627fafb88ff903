"""Benchmark loaders for `trajforge eval`: each format as published, from a file or the Hub.

`load_items(source, fmt=None, ...)` yields `EvalItem`s (and `BadRow`s for rows that cannot be
used). A local file's layout is recognised from the file (`fmt` overrides):
- `vlmeval-tsv`: VLMEvalKit's multiple-choice TSV (V*, HRBench 4K/8K, MME-RealWorld, TreeBench);
- `mmsearch`: MMSearch end2end parquet; `fvqa`: FVQA test parquet;
- `browsecomp-vl`: BrowseComp-VL JSONL;
- `world`: the offline world's held-out tasks (those `make synth` did not use).
`BENCHES` names the published copies on the Hub (`--bench NAME`), fetched once through
`huggingface_hub` into its cache; a local file never touches the network.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from stages.benchmarks import search_sets, vlmeval_tsv
from stages.benchmarks.base import BadRow, EvalItem

__all__ = ["BENCHES", "FORMATS", "BadRow", "Bench", "EvalItem", "detect_format", "load_items", "world_items"]

FORMATS = ("vlmeval-tsv", "mmsearch", "fvqa", "browsecomp-vl", "world")


@dataclass(frozen=True)
class Bench:
    """A benchmark's published copy: a file in a Hub dataset repo and its format."""

    repo_id: str
    filename: str
    format: str


BENCHES: dict[str, Bench] = {
    "vstar": Bench("xjtupanda/VStar_Bench", "VStarBench.tsv", "vlmeval-tsv"),
    "hrbench4k": Bench("DreamMr/HR-Bench", "hr_bench_4k.tsv", "vlmeval-tsv"),
    "hrbench8k": Bench("DreamMr/HR-Bench", "hr_bench_8k.tsv", "vlmeval-tsv"),
    "mmsearch": Bench("CaraJ/MMSearch", "end2end.parquet", "mmsearch"),
    "fvqa": Bench("lmms-lab/FVQA", "fvqa_test.parquet", "fvqa"),
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


def _parquet_rows(path: Path) -> Iterator[dict]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=16):
        yield from batch.to_pylist()


def load_items(
    source: str | Path, fmt: str | None = None, *, benchmark: str | None = None
) -> Iterator[EvalItem | BadRow]:
    """Items of a local file (any known format), streamed."""
    path = Path(source)
    fmt = fmt or detect_format(path)
    name = benchmark or _name(path)
    if fmt == "vlmeval-tsv":
        yield from vlmeval_tsv.load(path, name)
    elif fmt == "mmsearch":
        for number, row in enumerate(_parquet_rows(path)):
            yield search_sets.mmsearch_item(row, number, path.parent, name)
    elif fmt == "fvqa":
        for number, row in enumerate(_parquet_rows(path)):
            yield search_sets.fvqa_item(row, number, path.parent, name)
    elif fmt == "browsecomp-vl":
        level = "level2" if "level2" in path.name else "level1" if "level1" in path.name else ""
        for where, row, error in search_sets.json_objects(path):
            if row is None:
                yield BadRow(where, f"{where}: {error}")
            else:
                yield search_sets.browsecomp_item(row, where, path.parent, name, level)
    else:
        raise FormatError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")


def fetch_bench(name: str) -> tuple[Path, str]:
    """(local file, format) of a named benchmark, downloaded once into the Hub cache."""
    if name not in BENCHES:
        raise FormatError(f"unknown benchmark {name!r}; known: world, {', '.join(sorted(BENCHES))}")
    from huggingface_hub import hf_hub_download

    bench = BENCHES[name]
    path = hf_hub_download(bench.repo_id, bench.filename, repo_type="dataset")
    return Path(path), bench.format


def world_items(world_dir: Path, used: set[str] | None = None, first: int = 100) -> Iterator[EvalItem]:
    """The world's held-out tasks: those not in `used` (a training run's task ids), or, without
    one, all but the first `first` in the order `seeds.limit` takes them."""
    from stages.tasks import world_task_order

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
