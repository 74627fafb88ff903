"""`trajforge export llamafactory|ms-swift --run DIR --out DIR`: the kept set for other trainers."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from pipeline.commands.common import fail


def export_command(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="llamafactory or ms-swift."),
    run: Path = typer.Option(..., "--run", help="Run folder whose kept/ set is exported."),
    out: Path = typer.Option(..., "--out", help="Folder to write the files and images into."),
) -> None:
    """Write the kept set as LLaMA-Factory ShareGPT (+ dataset_info.json) or ms-swift agent JSONL."""
    from pipeline.exports import FORMATS, export_run
    from pipeline.leaks import LeakGuard
    from pipeline.store import RunStore

    started = time.monotonic()
    if fmt not in FORMATS:
        raise fail(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    store = RunStore(run)
    if not store.shard_paths("kept"):
        raise fail(f"{run}/kept has no shards; run `trajforge filter --run {run}` first")
    guard = LeakGuard.for_run(run)
    report = export_run(store, out, fmt, guard=guard)  # type: ignore[arg-type]
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


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
