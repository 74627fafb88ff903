"""Options and helpers every command shares: config loading, the run store, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from pipeline.config import Config, ConfigError, load_config, resolved_yaml
from pipeline.logs import item_logger
from pipeline.store import RunStore, atomic_write_bytes

ConfigOption = typer.Option(None, "--config", "-c", help="YAML config (default: configs/default.yaml).")
SetOption = typer.Option(None, "--set", "-s", help="Override a config key: section.key=value (repeatable).")


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print an actionable error and return the exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def load(config: Path | None, sets: list[str] | None, run: Path | None = None) -> Config:
    """Config from file + overrides; `--run DIR` sets run.root and run.name from DIR."""
    overrides = list(sets or [])
    if run is not None:
        overrides += [f"run.root={run.parent}", f"run.name={run.name}"]
    try:
        return load_config(config, overrides)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def open_run(cfg: Config, *, save_config: bool = True) -> RunStore:
    """The run folder, with the resolved config saved (variable names only, no secrets)."""
    store = RunStore(cfg.run.dir)
    store.root.mkdir(parents=True, exist_ok=True)
    store.clear_temporaries()
    import prompts

    prompts.save_used(store.root / "prompts")  # later commands read the run's prompt texts
    prompts.add_dir(store.root / "prompts")
    if save_config:
        atomic_write_bytes(store.root / "config.yaml", resolved_yaml(cfg).encode())
    return store


def stage_logger(store: RunStore, stage: str) -> logging.Logger:
    """`RUN/logs/<stage>.log`, where every dropped item is explained (file only, not the console)."""
    return item_logger(store.root, stage)
