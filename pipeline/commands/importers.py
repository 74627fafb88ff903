"""`trajforge import FORMAT FILE --run DIR`: bring trajectories made elsewhere into a run."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipeline.commands.common import ConfigOption, SetOption, fail, load, open_run, stage_logger

FORMATS_HELP = (
    "r1v4 (Skywork R1V4 outputs), chatml (QwQ / Qwen-Agent / WebDancer), sharegpt (LLaMA-Factory: "
    "DeepEyesV2, Mini-o3, trajforge's llamafactory export), ms-swift, openai (messages with tool_calls: "
    "DataDesigner traces), thyme, or auto (recognise it and say which)"
)


def import_command(
    fmt: str = typer.Argument(..., metavar="FORMAT", help=FORMATS_HELP),
    file: Path = typer.Argument(..., help="JSONL, JSON array or parquet file of trajectories."),
    run: str = typer.Option(
        ..., "--run", help="Run folder or address (s3://...) to write RUN/raw/*.parquet into."
    ),
    tool_map: list[str] | None = typer.Option(
        None,
        "--tool-map",
        help="Rename a tool: PEER_NAME=TRAJFORGE_NAME (repeatable); wins over the format's table.",
    ),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
) -> None:
    """Import trajectories in a published format; malformed records are reported, never fatal."""
    from stages.synth.imports.base import parse_tool_map
    from stages.synth.imports.registry import FORMATS, LineError, import_trajectories

    if fmt not in FORMATS:
        raise fail(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    if not file.is_file():
        raise fail(f"{file} not found; pass the path of a .jsonl, .json or .parquet file")
    try:
        overrides = parse_tool_map(tool_map or [])
    except ValueError as exc:
        raise fail(str(exc)) from None
    cfg = load(config, sets, run)
    store = open_run(cfg)
    log = stage_logger(store, "import")
    try:
        report, detection = import_trajectories(fmt, file, store, tool_map=overrides)
    except (LineError, ValueError) as exc:
        raise fail(str(exc)) from None
    if detection is not None:
        typer.echo(f"import auto: read {file.name} as {detection.format} ({detection.reason})")
    for line in report.errors:
        log.warning("dropped %s", line)
    store.update_report("import", report.as_dict())
    typer.echo(
        f"import {report.format}: {report.lines} lines, {report.imported} imported, "
        f"{report.already_present} already present, {report.malformed} malformed, "
        f"{report.with_format_errors} with format errors, {report.images} images -> {store.where('raw')}"
    )
    if report.renumbered_rollouts:
        typer.echo(f"  {report.renumbered_rollouts} records named a rollout index already taken: renumbered")
    for line in report.errors[:10]:
        typer.echo(f"  malformed {line}")
    if len(report.errors) > 10:
        typer.echo(f"  ... {len(report.errors) - 10} more in {store.where('logs')} (import.*)")
    typer.echo(
        json.dumps({"format": report.format, "imported": report.imported, "malformed": report.malformed})
    )


def register(app: typer.Typer) -> None:
    app.command("import", no_args_is_help=True)(import_command)
