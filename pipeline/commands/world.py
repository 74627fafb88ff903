"""`trajforge world build|serve|score`: the offline world (wired by pipeline.cli)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipeline.commands.common import fail

world_app = typer.Typer(
    help="The offline world: a procedural encyclopedia, scenes, tasks and an oracle teacher.",
    no_args_is_help=True,
)


def _pairs(values: list[str] | None, what: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for value in values or []:
        name, sep, rate = value.partition("=")
        try:
            out[name.strip()] = float(rate)
        except ValueError:
            raise fail(f"--{what} {value!r}: expected NAME=RATE, e.g. --{what} 500=0.05") from None
        if not sep:
            raise fail(f"--{what} {value!r}: expected NAME=RATE")
    return out


@world_app.command("build")
def build(
    out: Path = typer.Option(..., "--out", help="Folder to write the world into (replaced if present)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same bytes."),
    entities: int = typer.Option(300, "--entities", help="Knowledge-graph size."),
    tasks: int = typer.Option(
        200, "--tasks", help="Number of tasks (perception, search, interleaved, multihop)."
    ),
) -> None:
    """Build a world deterministically."""
    from world import build_world, manifest

    try:
        build_world(out, seed=seed, entities=entities, tasks=tasks)
    except ValueError as exc:
        raise fail(str(exc)) from None
    info = manifest(out)
    typer.echo(json.dumps({k: info[k] for k in ("seed", "entities", "tasks", "categories", "content_hash")}))


@world_app.command("serve")
def serve(
    world: Path = typer.Option(..., "--world", help="A built world folder."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8123, "--port", help="0 picks a free port."),
    latency: str = typer.Option(
        "0", "--latency", help="Added latency: S, const:S, uniform:A,B, exp:MEAN, lognormal:MED,SIGMA."
    ),
    rate_limit: float | None = typer.Option(
        None, "--rate-limit", help="Admit R requests/s; 429 with Retry-After beyond."
    ),
    error: list[str] | None = typer.Option(
        None, "--error", help="Inject errors: KIND=RATE, KIND in 429,500,hang,malformed,truncated."
    ),
    defect: list[str] | None = typer.Option(
        None, "--defect", help="Inject defects: NAME=RATE (a world.knobs DEFECTS name, or all)."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the error and latency draws."),
    log: Path | None = typer.Option(
        None, "--log", help="Defect log (JSONL); default WORLD/logs/oracle.jsonl."
    ),
) -> None:
    """Serve pages, images and the oracle teacher on loopback until Ctrl-C."""
    from world import Knobs, WorldServer, is_built

    if not is_built(world):
        raise fail(f"{world} is not a built world; run `trajforge world build --out {world}` first")
    try:
        knobs = Knobs(
            latency=latency,
            rate_limit=rate_limit,
            errors=_pairs(error, "error"),
            defects=_pairs(defect, "defect"),
            seed=seed,
            log_path=str(log) if log else None,
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    server = WorldServer(world, host=host, port=port, knobs=knobs)
    server.start()
    typer.echo(f"world server on {server.url} (OpenAI base URL {server.openai_base_url}); Ctrl-C to stop")
    server.serve_forever()
    typer.echo(f"world server stopped: {server.app.stats}")


def score_line(result: dict) -> str:
    """One line of detection figures, saying whether target boxes were present and used."""
    boxes = result["target_boxes"]
    used = "used by the filter" if result["target_boxes_used"] else "hidden from the filter"
    per = ", ".join(f"{k} {v:.2f}" for k, v in result["per_defect_recall"].items()) or "none"
    return (
        f"world score: precision {result['precision']:.3f}, recall {result['recall']:.3f} "
        f"({result['defective']} defective, {result['clean']} clean of {result['trajectories']}); "
        f"target boxes on {boxes} trajectories ({used if boxes else 'none present'}); per defect: {per}"
    )


@world_app.command("score")
def score(
    run: Path = typer.Argument(..., help="A filtered run synthesised against the offline world."),
) -> None:
    """Join the world's truth (RUN/world/truth.jsonl) with the filter's verdicts: detection quality."""
    from pipeline.store import RunStore
    from world.score import ScoreError, score_run

    try:
        result = score_run(run)
    except ScoreError as exc:
        raise fail(str(exc)) from None
    RunStore(run).update_report("world_score", result)
    typer.echo(score_line(result))


def register(app: typer.Typer) -> None:
    app.add_typer(world_app, name="world")
