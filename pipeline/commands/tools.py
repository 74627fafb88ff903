"""`trajforge tools code|search|visit`: run one tool call and print the observation as JSON.

For debugging a sandbox or a backend and for scripts; the same tool classes the executor uses.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

import typer

from pipeline.commands.common import ConfigOption, SetOption, fail, load

tools_app = typer.Typer(
    help="Run one tool call (code sandbox, search, page visit) and print JSON.", no_args_is_help=True
)
search_app = typer.Typer(help="Text or reverse-image search.", no_args_is_help=True)


def _print(payload: dict) -> None:
    typer.echo(json.dumps(payload, ensure_ascii=False, indent=2))


def _corpus_dir(cfg) -> Path:
    return (
        Path(cfg.tools.search.corpus_dir) if cfg.tools.search.corpus_dir else Path(cfg.world.dir) / "corpus"
    )


def _check_images(paths: list[Path]) -> None:
    """Only real image files are staged for a tool (not /etc/passwd, devices or FIFOs)."""
    from pipeline.images import ImageError, read_image

    problems = []
    for path in paths:
        try:
            read_image(path)
        except ImageError as exc:
            problems.append(str(exc))
    if problems:
        raise fail("--image takes image files (PNG/JPEG/WebP/...): " + "; ".join(problems))


@tools_app.command("code")
def code_command(
    image: list[Path] = typer.Option(
        [], "--image", "-i", help="Input image (repeatable): image_0.png, image_1.png, ..."
    ),
    code_file: Path = typer.Option(..., "--code-file", "-f", help="Python file to run in the sandbox."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the images the code saves."),
    config: Path | None = ConfigOption,
    set_: list[str] | None = SetOption,
) -> None:
    """Run a code file against images in the sandbox; print {text, images, error, timings}."""
    from stages.tools.base import ToolContext
    from stages.tools.code.code_tool import CodeTool
    from stages.tools.code.isolation import SandboxUnavailable

    cfg = load(config, set_)
    if not code_file.is_file():
        raise fail(f"code file {code_file} not found")
    _check_images(image)
    out.mkdir(parents=True, exist_ok=True)

    async def main() -> dict:
        with tempfile.TemporaryDirectory(prefix="trajforge-code-") as work:
            ctx = ToolContext(trajectory_id="cli", workdir=Path(work))
            for path in image:
                ctx.register_image(path.resolve(), f"image_{len(ctx.images)}.png")
            tool = CodeTool(cfg.tools.code)
            try:
                obs = await tool.run({"code": code_file.read_text()}, ctx)
            finally:
                await tool.aclose()
            saved = []
            for produced in obs.images:
                target = out / Path(produced).name.split("_", 1)[-1]
                shutil.move(produced, target)
                saved.append(str(target))
            timings = {**obs.meta.get("timings", {}), "latency_s": obs.latency_s}
            return {"text": obs.text, "images": saved, "error": obs.error, "timings": timings}

    try:
        payload = asyncio.run(main())
    except SandboxUnavailable as exc:
        raise fail(str(exc)) from None
    _print(payload)
    typer.secho(
        f"code: {len(payload['images'])} image(s), error={'yes' if payload['error'] else 'no'}, "
        f"{payload['timings'].get('latency_s', 0) * 1000:.0f} ms",
        err=True,
    )
    if payload["error"]:
        raise typer.Exit(1)


def _run_search(
    tool_name: str, arguments: dict, config: Path | None, sets: list[str] | None, images: list[Path]
):
    from stages.tools.base import ToolContext
    from stages.tools.code.isolation import SandboxUnavailable
    from stages.tools.registry import build_tools, close_tools, tool_stats

    cfg = load(config, sets)
    cache_dir = cfg.run.dir / "cache"

    async def main() -> dict:
        tools = build_tools(cfg.tools, "deepresearch", corpus_dir=_corpus_dir(cfg), cache_dir=cache_dir)
        try:
            with tempfile.TemporaryDirectory(prefix="trajforge-tool-") as work:
                ctx = ToolContext(trajectory_id="cli", workdir=Path(work))
                for path in images:
                    ctx.register_image(path.resolve(), f"image_{len(ctx.images)}.png")
                obs = await tools[tool_name].run(arguments, ctx)
                return {
                    "text": obs.text,
                    "error": obs.error,
                    "latency_s": obs.latency_s,
                    "cache": tool_stats(tools)[tool_name],
                }
        finally:
            await close_tools(tools)

    try:
        payload = asyncio.run(main())
    except (ValueError, FileNotFoundError, SandboxUnavailable) as exc:
        raise fail(str(exc)) from None
    _print(payload)
    stats = payload["cache"]
    typer.secho(
        f"{tool_name}: error={'yes' if payload['error'] else 'no'}, cache hits {stats.get('hits', 0)}/"
        f"{stats.get('hits', 0) + stats.get('misses', 0)}, {payload['latency_s'] * 1000:.0f} ms",
        err=True,
    )
    if payload["error"]:
        raise typer.Exit(1)


@search_app.command("text")
def search_text(
    queries: list[str] = typer.Argument(..., help="One or more queries."),
    config: Path | None = ConfigOption,
    set_: list[str] | None = SetOption,
) -> None:
    """text_search with the configured backend (tools.search.text_backend)."""
    from stages.tools.search.search_tools import TextSearchTool

    _run_search(TextSearchTool.spec.name, {"queries": queries}, config, set_, [])


@search_app.command("image")
def search_image(
    images: list[Path] = typer.Argument(..., help="Image files to reverse-search."),
    config: Path | None = ConfigOption,
    set_: list[str] | None = SetOption,
) -> None:
    """image_search with the configured backend (tools.search.image_backend)."""
    _check_images(images)
    names = [f"image_{i}.png" for i in range(len(images))]
    from stages.tools.search.search_tools import ImageSearchTool

    _run_search(ImageSearchTool.spec.name, {"image_paths": names}, config, set_, images)


@tools_app.command("visit")
def visit_command(
    urls: list[str] = typer.Argument(..., help="One or more URLs."),
    config: Path | None = ConfigOption,
    set_: list[str] | None = SetOption,
) -> None:
    """web_visit (SSRF guard, extraction, optional summary) on the URLs."""
    from stages.tools.visit.web_visit import WebVisitTool

    _run_search(WebVisitTool.spec.name, {"urls": urls}, config, set_, [])


tools_app.add_typer(search_app, name="search")


def register(app: typer.Typer) -> None:
    app.add_typer(tools_app, name="tools")
