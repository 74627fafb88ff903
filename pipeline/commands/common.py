"""Options and helpers every command shares: config loading, the run store, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from pipeline.config import Config, ConfigError, load_config, resolved_yaml
from pipeline.logs import item_logger
from pipeline.run_files import RunLocationError, split_location
from pipeline.store import RunStore

ConfigOption = typer.Option(None, "--config", "-c", help="YAML config (default: configs/default.yaml).")
SetOption = typer.Option(None, "--set", "-s", help="Override a config key: section.key=value (repeatable).")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an actionable error and return the exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


RunOption = typer.Option(
    None, "--run", help="Run folder (default: runs/<run.name>), or an address such as s3://bucket/runs/NAME."
)


def load(config: Path | None, sets: list[str] | None, run: str | Path | None = None) -> Config:
    """Config from file + overrides; `--run DIR` (or an address) sets run.root and run.name."""
    overrides = list(sets or [])
    if run is not None:
        try:
            parent, name = split_location(str(run))
        except RunLocationError as exc:
            raise fail(str(exc)) from None
        overrides += [f"run.root={parent}", f"run.name={name}"]
    try:
        return load_config(config, overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def run_store(location: str | Path) -> RunStore:
    """The run at a folder or address, or an error that says what to fix."""
    try:
        return RunStore(location)
    except (RunLocationError, OSError) as exc:
        raise fail(str(exc)) from None


def open_run(cfg: Config, *, save_config: bool = True) -> RunStore:
    """The run folder, with the resolved config saved (variable names only, no secrets)."""
    store = run_store(cfg.run.location)
    store.root.mkdir(parents=True, exist_ok=True)
    store.clear_temporaries()
    import prompts

    prompts.save_used(store.root / "prompts")  # later commands read the run's prompt texts
    store.push_folder("prompts")
    prompts.add_dir(store.pull_folder("prompts"))
    if save_config:
        save_run_config(store, cfg)
    return store


def save_run_config(store: RunStore, cfg: Config) -> None:
    """`RUN/config.yaml`: the resolved config, variable names only, no secrets."""
    store.write_bytes("config.yaml", resolved_yaml(cfg).encode())


def stage_logger(store: RunStore, stage: str) -> logging.Logger:
    """`RUN/logs/<stage>.log`, where every dropped item is explained (file only, not the console)."""
    return item_logger(store.root, stage)
