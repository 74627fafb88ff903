"""`trajforge corpus index`: an encyclopedia (ZIM, MediaWiki dump, folder of HTML) indexed once
as a local web that `tools.search.corpus` then serves to text_search, image_search and web_visit."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from pipeline.commands.common import ConfigOption, SetOption, fail, load

corpus_app = typer.Typer(help="Serve an encyclopedia as a local web: index it once.", no_args_is_help=True)


@corpus_app.command("index")
def index(
    corpus: Path = typer.Option(
        ..., "--corpus", help="A .zim file, a MediaWiki XML dump or a folder of HTML."
    ),
    kind: str = typer.Option("auto", "--corpus-kind", help="auto, zim, xml or html."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
) -> None:
    """Build (or find) the BM25 text and pHash image indexes of a corpus; print where and what."""
    import logging

    from stages.tools.search.corpus_web import index_corpus, index_stats

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # its DEBUG lines say nothing a user needs
    cfg = load(config, sets)
    cache = Path(cfg.tools.search.corpus_cache) if cfg.tools.search.corpus_cache else None
    start = time.monotonic()
    try:
        folder = index_corpus(corpus, kind, cache)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        raise fail(str(exc)) from None
    stats = index_stats(folder)
    typer.echo(
        f"corpus: {stats['pages']} pages ({stats['broken_pages']} unreadable, {stats['empty_pages']} empty), "
        f"{stats['images']} page images in {stats['image_files']} files ({stats['images_dropped']} dropped: "
        f"unreadable, vector or under 64 px); served at {stats['origin']}; index {folder}; "
        f"{time.monotonic() - start:.1f}s"
    )
    typer.echo(
        f"next: --set tools.search.corpus={corpus} (synth, eval, tools) or trajforge tasks walk --corpus {corpus}"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(corpus_app, name="corpus")
