"""`trajforge export llamafactory|ms-swift --run DIR --out DIR`: the kept set for other trainers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from pipeline.commands.common import fail, run_store


def export_command(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="llamafactory or ms-swift."),
    run: str = typer.Option(
        ..., "--run", help="Run folder or address (s3://...) whose kept/ set is exported."
    ),
    out: Path = typer.Option(..., "--out", help="Folder to write the files and images into."),
    processor: Path | None = typer.Option(
        None,
        "--processor",
        help="The student's processor folder (default RUN/sft/processor when it exists): sets the "
        "cutoff length and image budget in the written framework settings.",
    ),
) -> None:
    """Write the kept set as LLaMA-Factory ShareGPT (+ dataset_info.json) or ms-swift JSONL, with the
    framework settings that train exactly trajforge's text next to it."""
    from pipeline.leaks import LeakGuard
    from stages.publish.trainer_exports import FORMATS, export_run

    started = time.monotonic()
    if fmt not in FORMATS:
        raise fail(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    store = run_store(run)
    if not store.shard_paths("kept"):
        raise fail(f"{store.where('kept')} has no shards; run `trajforge filter --run {run}` first")
    processor = processor or (store.root / "sft" / "processor")
    if processor.exists() and not (processor / "processor_config.json").is_file():
        raise fail(f"{processor} is not a processor folder (no processor_config.json)")
    stats = text_stats(store, processor) if processor.exists() else None
    guard = LeakGuard.for_run(store.root)
    report = export_run(store, out, fmt, stats=stats, guard=guard)  # type: ignore[arg-type]
    for line in report.skipped:
        typer.echo(f"  left out {line}", err=True)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items())) or "nothing"
    typer.echo(
        f"export {fmt}: {report.total} conversations ({counts}), {report.images} images copied, "
        f"{len(report.skipped)} left out -> {report.out} in {time.monotonic() - started:.1f}s; "
        f"scanned {guard.counts.fields} text fields for host paths and secrets: {guard.counts.matches} matches"
    )
    summary = {"format": fmt, "rows": report.total, "skipped": len(report.skipped)}
    typer.echo(json.dumps({**summary, "scanned": guard.counts.as_dict()}))


def text_stats(store, processor_dir: Path):
    """The student processor's pixel budget and the longest kept sample in its tokens."""
    from pipeline.schema import Trajectory
    from stages.publish.trainer_settings import TextStats
    from stages.sft.formatter import Formatter, Sample, store_image_size
    from stages.sft.processor import reload_processor

    processor = reload_processor(processor_dir)
    size = processor.image_processor.size
    fmt = Formatter(processor, max_len=1 << 30, image_size=store_image_size(store), observation_role="user")
    lengths = [
        s.num_tokens for t in store.read_records("kept", Trajectory) if isinstance(s := fmt(t), Sample)
    ]
    return TextStats(
        processor_min_pixels=size.shortest_edge,
        processor_max_pixels=size.longest_edge,
        max_tokens=max(lengths, default=None),
    )


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
