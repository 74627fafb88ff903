"""`trajforge synth`: seeds -> tasks -> plans -> raw trajectories (wired by pipeline.cli).

With nothing configured (configs/default.yaml) it builds the offline world if absent, serves it
on a free loopback port, and uses it as teacher (the oracle) and as web (local search over its
corpus, page visits to its host). With `teacher.base_url` and live search set, the same command
runs production; `--ray-address` sends the work to a Ray cluster.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import typer

from pipeline.commands.common import (
    ConfigOption,
    RunOption,
    SetOption,
    fail,
    load,
    open_run,
    save_run_config,
    stage_logger,
)
from pipeline.config import Config

WORLD_HOST = "world.trajforge.local"


def needs_world(cfg: Config) -> bool:
    """The world is served when it is the teacher or the seed source."""
    return cfg.world.enabled and (cfg.teacher.base_url is None or cfg.seeds.source == "world")


@contextlib.contextmanager
def world_for(cfg: Config) -> Iterator[str | None]:
    """Build the world if absent, serve it (its truth written beside the run), point teacher and
    tools at it; yields the teacher URL."""
    if not needs_world(cfg):
        yield None
        return
    from world import Knobs, WorldServer, build_world, is_built
    from world.truth import truth_path

    world_dir = Path(cfg.world.dir)
    wanted = {"seed": cfg.world.seed, "entities": cfg.world.entities, "tasks": cfg.world.tasks}
    if not is_built(world_dir, **wanted):
        what = (
            "rebuilding (built by another version or with other settings)"
            if is_built(world_dir)
            else "building"
        )
        typer.echo(f"{what} the offline world in {world_dir} (seed {cfg.world.seed}) ...", err=True)
        build_world(world_dir, seed=cfg.world.seed, entities=cfg.world.entities, tasks=cfg.world.tasks)
    with WorldServer(
        world_dir,
        host=cfg.world.host,
        port=cfg.world.port,
        knobs=Knobs(**cfg.world.knobs),
        truth_path=truth_path(cfg.run.dir),
    ) as server:
        address = f"{cfg.world.host}:{server.port}"
        visit = cfg.tools.visit
        visit.host_overrides = {**visit.host_overrides, WORLD_HOST: address}
        if WORLD_HOST not in visit.allow_hosts:
            visit.allow_hosts = [*visit.allow_hosts, WORLD_HOST]
        if cfg.tools.search.corpus_dir is None:
            cfg.tools.search.corpus_dir = str(world_dir / "corpus")
        typer.echo(f"offline world served at {server.url}", err=True)
        yield server.openai_base_url if cfg.teacher.base_url is None else None


def _summary_line(summary: dict, tasks: dict) -> str:
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(summary.get("statuses", {}).items())) or "none"
    teacher = summary.get("teacher", {})
    executor = summary.get("executor", {})
    kinds = sorted(
        ((k.removeprefix("repairs."), v) for k, v in executor.items() if k.startswith("repairs.")),
        key=lambda kv: -kv[1],
    )
    reading = (
        f"replies: {executor.get('repaired_turns', 0)} repaired turns"
        + (
            f" ({', '.join(f'{k} {v}' for k, v in kinds[:4])}{', ...' if len(kinds) > 4 else ''})"
            if kinds
            else ""
        )
        + f", {executor.get('normalised_turns', 0)} normalised (server shape, not counted as repairs)"
        + f", {executor.get('reasks', 0)} re-asks, {executor.get('refusals', 0)} refusals, "
        f"{executor.get('truncations', 0)} truncated ({executor.get('cut_calls', 0)} cut tool calls re-asked, "
        f"none run), {executor.get('estimated_token_replies', 0)} without usage (tokens estimated at "
        "4 characters a token); "
    )
    return (
        f"synth: {summary['trajectories']} trajectories ({statuses}); {summary['already_done']} already done; "
        f"tasks {tasks.get('written', 0)} new, {tasks.get('errors', 0)} seed errors; "
        f"{summary['tool_calls']} tool calls, {summary['tokens']} tokens; "
        f"teacher {teacher.get('calls', 0)} calls, {teacher.get('cache_hits', 0)} cache hits, "
        f"{teacher.get('retries', 0)} retries; {reading}{summary['errors']} failed; "
        + (f"{summary['unwritten']} unwritten (rerun to redo them); " if summary.get("unwritten") else "")
        + f"{summary['wall_s']:.1f}s ({summary['trajectories_per_s']:.2f} traj/s)"
    )


def register(app: typer.Typer) -> None:
    @app.command("synth")
    def synth(
        config: Path | None = ConfigOption,
        sets: list[str] | None = SetOption,
        run: str | None = RunOption,
        ray_address: str | None = typer.Option(
            None, "--ray-address", help="Ray cluster address (default: synth.ray_address, else a local Ray)."
        ),
        no_ray: bool = typer.Option(
            False, "--no-ray", help="Run in this process without Ray (small runs, debugging)."
        ),
    ) -> None:
        """Seeds -> tasks -> plans -> raw trajectories, resumable; prints a summary."""
        import logging

        from pipeline.open_files import OpenFilesError
        from pipeline.teacher.client import TeacherError
        from stages.synth.runner import run_synth
        from stages.tasks.seeds import SeedError, prepare_tasks
        from stages.tools.registry import tool_table

        logging.getLogger("httpx2").setLevel(logging.WARNING)  # one INFO line per teacher call is noise
        logging.getLogger("httpx").setLevel(logging.WARNING)
        cfg = load(config, sets, run)
        try:
            tool_table(cfg.tools)  # a bad `tools.extra` is a config error, before any world or teacher
        except ValueError as exc:
            raise fail(str(exc)) from None
        store = open_run(cfg)
        log = stage_logger(store, "synth")
        start = time.monotonic()
        try:
            with world_for(cfg) as world_teacher:
                if world_teacher is None and cfg.teacher.base_url is None:
                    raise fail(
                        "no teacher endpoint: set teacher.base_url (any OpenAI-compatible /v1 URL) "
                        "or enable the offline world (world.enabled=true) to use its oracle teacher"
                    )
                save_run_config(store, cfg)
                tasks = prepare_tasks(cfg, store, log)
                typer.echo(f"tasks: {json.dumps(tasks.summary())}", err=True)
                summary = run_synth(
                    cfg,
                    store,
                    teacher_base_url=world_teacher,
                    use_ray=not no_ray,
                    ray_address=ray_address or cfg.synth.ray_address,
                )
        except (SeedError, FileNotFoundError, OpenFilesError, TeacherError) as exc:
            raise fail(str(exc)) from None
        except RuntimeError as exc:
            if "another `trajforge synth`" in str(exc) or "still hold" in str(exc):
                raise fail(str(exc)) from None
            raise
        summary["tasks"] = tasks.summary()
        summary["total_wall_s"] = round(time.monotonic() - start, 2)
        store.update_report("synth", summary)
        typer.echo(_summary_line(summary, tasks.summary()))
        if note := summary.get("sizing", {}).get("sandbox_note"):
            typer.echo(f"sandbox: {note}", err=True)
        if thaws := summary.get("collector", {}).get("thaws", 0):
            freed = summary["collector"].get("thawed_cycles", 0)
            typer.echo(
                f"collector: {thaws} thaw(s) freed {freed} objects in reference cycles that died frozen, "
                "each one full garbage collection with every trajectory in flight paused "
                "(docs/synth.md, synth.gc_freeze_s)",
                err=True,
            )
        store.push_logs()
        typer.echo(f"raw trajectories in {store.where('raw')}; report: {store.where('report.json')}")
        if summary.get("interrupted"):
            raise typer.Exit(130)
