"""`trajforge import r1v4 FILE --run DIR`: bring trajectories made elsewhere into a run."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipeline.commands.common import ConfigOption, SetOption, fail, load, open_run, stage_logger

import_app = typer.Typer(help="Import trajectories made elsewhere.", no_args_is_help=True)


@import_app.command("r1v4")
def import_r1v4_command(
    file: Path = typer.Argument(
        ..., help="JSONL of R1V4 API outputs (id, image, question, answer, response)."
    ),
    run: Path = typer.Option(..., "--run", help="Run folder to write DIR/raw/*.parquet into."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
) -> None:
    """Import R1V4-format trajectories; malformed lines are reported, never fatal."""
    from stages.synth.imports.r1v4 import import_r1v4

    if not file.is_file():
        raise fail(f"{file} not found; pass the path of a .jsonl file")
    cfg = load(config, sets, run)
    store = open_run(cfg)
    log = stage_logger(store, "import")
    report = import_r1v4(file, store)
    for line in report.errors:
        log.warning("dropped %s", line)
    store.update_report("import", report.as_dict())
    typer.echo(
        f"import r1v4: {report.lines} lines, {report.imported} imported, {report.already_present} already present, "
        f"{report.malformed} malformed, {report.with_format_errors} with format errors -> {store.root / 'raw'}"
    )
    for line in report.errors[:10]:
        typer.echo(f"  malformed {line}")
    if len(report.errors) > 10:
        typer.echo(f"  ... {len(report.errors) - 10} more in {store.root / 'logs' / 'import.log'}")
    typer.echo(json.dumps({"imported": report.imported, "malformed": report.malformed}))


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import")
