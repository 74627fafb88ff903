"""`trajforge publish --run DIR --repo USER/NAME [--dry-run --out DIR]`: the kept set on the Hub."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from pipeline.commands.common import ConfigOption, SetOption, fail, load, run_store
from pipeline.store import RunStore


def _run_config(config: Path | None, store: RunStore) -> Path | None:
    """An explicit --config wins; otherwise the run's own resolved config, when it has one
    (a remote run's is copied into its scratch folder to be read as a file)."""
    return config if config is not None else store.local_copy("config.yaml")


def publish_command(
    run: str = typer.Option(
        ..., "--run", help="Run folder or address (s3://...) whose kept/ set is published."
    ),
    repo: str | None = typer.Option(None, "--repo", help="Dataset repo USER/NAME (default: publish.repo)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write the exact folder instead of pushing."),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="Where the folder is built (default: RUN/hub for --dry-run, a temporary staging folder otherwise; kept when given).",
    ),
    allow_paths: bool = typer.Option(
        False,
        "--allow-paths",
        help="Publish rows that hold this host's paths (home, checkout, run, temp folders); secrets are never let through.",
    ),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
) -> None:
    """Build parquet shards + dataset card from RUN/kept and push them (resumable) or write them.

    Every text column and the card are scanned for host-specific strings first (pipeline.leaks);
    a match refuses the publish, naming the row, the field and what matched.
    """
    from pipeline.config import ConfigError, secret
    from pipeline.leaks import LeakGuard
    from pipeline.schema import Trajectory
    from stages.publish.hub import build_folder, clear_folder, push_folder, scan_rows

    started = time.monotonic()
    store = run_store(run)
    cfg = load(_run_config(config, store), sets, run)
    repo = repo or cfg.publish.repo
    if not repo or repo.count("/") != 1:
        raise fail("pass --repo USER/NAME (or set publish.repo) naming the dataset repository")
    if not store.shard_paths("kept"):
        raise fail(f"{store.where('kept')} has no shards; run `trajforge filter --run {run}` first")
    token = None
    if not dry_run:
        try:
            token = secret(cfg.publish.token_env, purpose="trajforge publish (a Hub write token)")
        except ConfigError as exc:
            raise fail(f"{exc}; or use --dry-run --out DIR to write the folder without pushing") from None

    guard = LeakGuard.for_run(store.root, cfg)
    for var in guard.secrets_too_short:
        typer.echo(f"  warning: ${var} is shorter than 8 characters; its value is not scanned for", err=True)
    records = store.read_records("kept", Trajectory)
    refuse_leaks(scan_rows(records, guard, store), allow_paths, "the kept set")
    staging = out is None and not dry_run
    folder = out or (store.root / "hub" if dry_run else store.root / "cache" / "publish-staging")
    if staging:
        clear_folder(folder)
    built = build_folder(
        store,
        folder,
        repo=repo,
        max_shard_mb=cfg.publish.max_shard_mb,
        license=cfg.publish.license,
        records=records,
    )
    if built.card is not None:
        card_matches = guard.scan(built.card.read_text(), row="README.md", field_name="card")
        if [m for m in card_matches if m.secret or not allow_paths]:
            built.card.unlink()
        refuse_leaks(card_matches, allow_paths, "the dataset card")
    for line in built.skipped:
        typer.echo(f"  left out {line}", err=True)
    counts = {subset: len(b.records) for subset, b in built.subsets.items()}
    size = sum(b.download_bytes for b in built.subsets.values())
    scanned = guard.counts.as_dict()
    summary = {
        "rows": built.rows,
        "subsets": counts,
        "shards": len(built.files),
        "skipped": len(built.skipped),
        "scanned": scanned,
    }
    scan_line = (
        f"scanned {scanned['rows']} rows, {scanned['fields']} text fields, {scanned['chars']} chars for host "
        f"paths and secrets: {scanned['matches']} matches"
        + (" (paths allowed)" if scanned["matches"] else "")
    )
    if dry_run:
        typer.echo(
            f"publish --dry-run: {built.rows} rows in {len(built.files)} shards ({size / 1e6:.1f} MB), "
            f"{len(built.skipped)} left out -> {folder} in {time.monotonic() - started:.1f}s; {scan_line}"
        )
        typer.echo(json.dumps({**summary, "folder": str(folder)}))
        return

    pushed = push_folder(
        folder,
        repo,
        token=token,
        endpoint=cfg.publish.endpoint,
        private=cfg.publish.private,
        revision=cfg.publish.revision,
        message=f"trajforge publish of {cfg.run.name}",
    )
    if staging:
        clear_folder(folder)
    store.update_report(
        "publish",
        {
            **summary,
            "repo": repo,
            "uploaded": len(pushed.uploaded),
            "unchanged": len(pushed.unchanged),
            "deleted": len(pushed.deleted),
            "commits": pushed.commits,
        },
    )
    typer.echo(
        f"publish: {built.rows} rows in {len(built.files)} shards ({size / 1e6:.1f} MB) -> {repo}: "
        f"{len(pushed.uploaded)} files uploaded, {len(pushed.unchanged)} unchanged, {len(pushed.deleted)} deleted, "
        f"{len(pushed.commits)} commits in {time.monotonic() - started:.1f}s; {scan_line}"
    )
    typer.echo(json.dumps({**summary, "uploaded": len(pushed.uploaded), "unchanged": len(pushed.unchanged)}))


def refuse_leaks(matches: list, allow_paths: bool, what: str) -> None:
    """Exit with every blocking match listed (secrets by variable name); allowed paths only warn."""
    from pipeline.leaks import summarise

    blocking = sorted((m for m in matches if m.secret or not allow_paths), key=lambda m: not m.secret)
    if not blocking:
        if matches:
            typer.echo(f"  --allow-paths: publishing {len(matches)} host path matches in {what}", err=True)
        return
    secrets = sum(1 for m in blocking if m.secret)
    for line in summarise(blocking):
        typer.echo(f"  {line}", err=True)
    hint = (
        "secrets are never published: rotate the key, then re-synthesise or re-filter (the `leak` check drops them)"
        if secrets
        else "re-filter (`trajforge filter`: the `leak` check drops such trajectories), or pass --allow-paths"
    )
    raise fail(
        f"publish refused: {len(blocking)} host-specific matches ({sum(m.occurrences for m in blocking)} occurrences) "
        f"in {what}: {secrets} secrets, {len(blocking) - secrets} paths or user names; {hint}"
    )


def register(app: typer.Typer) -> None:
    app.command("publish")(publish_command)
