"""`trajforge tasks walk`: harder multi-hop tasks from an encyclopedia (wired by pipeline.cli).

With no `--corpus` it works like `make synth`: the offline world (built if absent) is the
corpus and its oracle the teacher. Tasks go to RUN/tasks/, which `trajforge synth --run RUN`
then uses as its seeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import typer

from pipeline.commands.common import ConfigOption, RunOption, SetOption, fail, load, open_run, stage_logger

tasks_app = typer.Typer(help="Make tasks: harder multi-hop questions walked over an encyclopedia.",
                        no_args_is_help=True)  # fmt: skip


def _hops(value: str) -> tuple[int, int]:
    low, sep, high = value.partition("..")
    try:
        lo, hi = int(low), int(high if sep else low)
    except ValueError:
        raise fail(f"--hops {value!r}: expected MIN..MAX, e.g. 2..4") from None
    if not 1 <= lo <= hi <= 6:
        raise fail(f"--hops {value!r}: need 1 <= MIN <= MAX <= 6 (a plan has at most 10 steps)")
    return lo, hi


@tasks_app.command("walk")
def walk(
    corpus: Path | None = typer.Option(
        None,
        "--corpus",
        help="A .zim file, a MediaWiki XML dump, a folder of HTML pages or a world (default: the offline world).",
    ),
    kind: str = typer.Option("auto", "--corpus-kind", help="auto, world, html, zim or xml."),
    run: str | None = RunOption,
    n: int = typer.Option(50, "--n", help="Tasks to accept."),
    hops: str = typer.Option("2..6", "--hops", help="Hops per walk, MIN..MAX (up to 6: R1V4-deep chains)."),
    seed: int = typer.Option(0, "--seed", help="Same seed, same walks."),
    text_only: bool = typer.Option(
        False, "--text-only", help="Also keep each walk's text-only variant as a task."
    ),
    max_walks: int | None = typer.Option(
        None, "--max-walks", help="Walks to start at most (default 4 x --n)."
    ),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
) -> None:
    """Walk the encyclopedia, mine and rewrite questions hop by hop, write accepted tasks."""
    import logging

    from pipeline.commands.synth import world_for
    from pipeline.schema import Task
    from pipeline.teacher import TeacherClient
    from stages.readers.corpus import open_corpus
    from stages.readers.corpus.html_folder import WorldCorpus
    from stages.tasks.seeds import seeds_fingerprint
    from stages.tasks.walk.run import Walker, WalkSettings, run_walks
    from stages.tasks.walk.teacher import WalkTeacher

    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one INFO line per teacher call is noise
    logging.getLogger("httpx").setLevel(logging.WARNING)
    lo, hi = _hops(hops)
    if n < 1:
        raise fail("--n must be at least 1")
    cfg = load(config, sets, run)
    if corpus is not None and cfg.teacher.base_url is None:
        typer.echo(
            "note: no teacher.base_url set; the offline world's oracle knows only its own corpus", err=True
        )
    store = open_run(cfg)
    log = stage_logger(store, "walk")
    start = time.monotonic()
    settings = WalkSettings(
        n=n, min_hops=lo, max_hops=hi, seed=seed, text_only=text_only, max_walks=max_walks
    )
    # a corpus of your own with your own teacher needs no world (built and served otherwise)
    own = corpus is not None and cfg.teacher.base_url is not None
    with contextlib.nullcontext(None) if own else world_for(cfg) as world_teacher:
        if world_teacher is None and cfg.teacher.base_url is None:
            raise fail(
                "no teacher endpoint: set teacher.base_url or enable the offline world (world.enabled=true)"
            )
        try:
            reader = _served(corpus, kind, cfg) if corpus is not None else None
            reader = reader or open_corpus(Path(cfg.world.dir), "world")
        except (FileNotFoundError, ValueError, ImportError) as exc:
            raise fail(str(exc)) from None

        async def main():
            client = TeacherClient(
                cfg.teacher, cache_dir=store.root / "cache" / "teacher", base_url=world_teacher
            )
            try:
                walker = Walker(reader, WalkTeacher(client), settings)
                return walker, await run_walks(walker, log), client.stats()
            finally:
                await client.aclose()

        try:
            walker, walked, teacher_stats = asyncio.run(main())
        finally:
            reader.close()
    tasks: list[Task] = []
    for item in walked:
        refs = [store.images.put_bytes(item.image)] if item.image is not None else []
        for task in item.tasks:
            images = [] if json.loads(task.meta).get("text_only") else refs
            tasks.append(Task(**task.model_dump(exclude={"task_id", "images"}), images=images))
    written = store.written_ids("tasks", "task_id")
    new = [t for t in tasks if t.task_id not in written]
    store.write_records("tasks", new, Task, prefix="walk")
    if isinstance(reader, WorldCorpus):
        _tell_world(reader, store.root, walked, tasks)
    summary = walker.stats.summary() | {
        "tasks_written": len(new),
        "tasks_already_written": len(tasks) - len(new),
        "teacher": {
            k: teacher_stats.get(k, 0) for k in ("calls", "cache_hits", "prompt_tokens", "completion_tokens")
        },
        "corpus": reader.name,
        "wall_s": round(time.monotonic() - start, 2),
    }
    store.update_report("walk", summary)
    # synth takes RUN/tasks as they are: the walk is this run's seed stage
    store.update_report("tasks", {"written": len(tasks), "complete": True, "source": "walk",
                                  "fingerprint": seeds_fingerprint(cfg)})  # fmt: skip
    rejected = ", ".join(f"{k} {v}" for k, v in summary["rejected"].items() if v) or "none"
    t = summary["teacher"]
    typer.echo(
        f"walk: {summary['walks_started']} walks, {summary['hops_taken']} hops, {summary['tasks_accepted']} accepted "
        f"({len(new)} tasks written); rejected: {rejected}; teacher {t['calls']} calls, {t['cache_hits']} cache hits, "
        f"{t['prompt_tokens'] + t['completion_tokens']} tokens; {summary['wall_s']:.1f}s"
    )
    store.push_logs()
    typer.echo(f"tasks in {store.where('tasks')}; next: trajforge synth --run {store.location}")


def _served(source: Path, kind: str, cfg):
    """A corpus read as the local web `tools.search.corpus` serves it, with its search index
    (built once, reused): evidence URLs are its local URLs and every hop's clue is searched."""
    from stages.readers.corpus import open_corpus, resolve_kind
    from stages.tools.search.corpus_web import index_corpus, origin_for

    if resolve_kind(source, kind) == "world":
        return open_corpus(source, "world")
    cache = Path(cfg.tools.search.corpus_cache) if cfg.tools.search.corpus_cache else None
    typer.echo(f"indexing {source} (once; reused by later runs) ...", err=True)
    folder = index_corpus(source, kind, cache)
    reader = open_corpus(source, kind, origin=origin_for(source))
    reader.search_dir = folder
    return reader


def _tell_world(reader, run_root: Path, walked, tasks) -> None:
    """The world's oracle answers only tasks it knows: record these under WORLD/walks/."""
    from pipeline.schema import stable_hash

    by_question = {t.question: t for t in tasks}
    rows = []
    for item in walked:
        image = reader.image_path(item.chain.image_url) if item.chain.image_url else None
        rel = [image.relative_to(reader.world_dir).as_posix()] if image is not None else []
        for task in item.tasks:
            kept = by_question[task.question]
            images = [] if json.loads(kept.meta).get("text_only") else rel
            rows.append(kept.model_copy(update={"images": images}).model_dump_json())
    out = reader.world_dir / "walks" / f"{stable_hash(str(run_root.resolve()), length=12)}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    tmp.replace(out)


def register(app: typer.Typer) -> None:
    app.add_typer(tasks_app, name="tasks")
