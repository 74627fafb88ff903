"""`trajforge view --run DIR [--port P] | --out SITE`: look at a run's trajectories in a browser."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipeline.commands.common import fail


def view_command(
    run: str = typer.Option(
        ..., "--run", help="Run folder or address (s3://...): raw/, verdicts/, kept/, eval/, report.json."
    ),
    port: int = typer.Option(8765, "--port", help="Loopback port to serve on (0: any free port)."),
    out: Path | None = typer.Option(
        None, "--out", help="Write a static, self-contained viewer to this folder instead of serving."
    ),
) -> None:
    """Overview, trajectory list and step-by-step pages of a run, served on 127.0.0.1 or written out."""
    from pipeline.view.data import RunData, ViewError
    from pipeline.view.server import make_server
    from pipeline.view.site import Site

    try:
        data = RunData(run)
        site = Site(data)
        _ = data.entries  # index once up front: a broken run fails here, not on the first page
    except ViewError as exc:
        raise fail(str(exc)) from None
    if out is not None:
        stats = site.write(out)
        typer.echo(
            f"view: {stats['trajectories']} trajectories, {stats['pages']} pages, {stats['images']} images, "
            f"{stats['bytes'] / 1e6:.1f} MB ({stats['bytes_per_trajectory'] / 1e3:.1f} kB per trajectory) "
            f"in {stats['wall_s']:.1f}s -> open {out / 'index.html'}"
        )
        typer.echo(json.dumps(stats))
        return
    try:
        server = make_server(site, "127.0.0.1", port)
    except OSError as exc:
        raise fail(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); pick another with --port") from None
    typer.echo(
        f"view: {len(data.entries)} trajectories of {run} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def register(app: typer.Typer) -> None:
    app.command("view")(view_command)
