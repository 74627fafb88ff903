"""`trajforge eval`: a model on benchmarks through synth's own executor and tools, scored.

    trajforge eval --endpoint URL --model NAME (--data FILE | --bench NAME) --run DIR
                   [--mode general|deepresearch] [--rollouts K] [--judge none|teacher|custom]
                   [--limit N] [--format F] [--serve PATH [--server auto|transformers|vllm]]
    trajforge eval-table LABEL=DIR ...      # eval reports side by side

Without `--endpoint`/`--serve` on the world benchmark the offline world's oracle answers (a
ceiling for the harness). Trajectories: `DIR/eval/*.parquet`; report: `DIR/report.json` under
`eval`; the same figures are printed as a table.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

from pipeline.commands.common import ConfigOption, SetOption, fail, load, open_run, run_store, stage_logger


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _judge(mode: str, cfg: Any, store: Any, base_url: str | None) -> Any:
    """The answer judge for open answers (`teacher`: the config's teacher, else the world's oracle)."""
    if mode == "none":
        return None
    from filters.judges import build_judge

    if mode == "teacher" and not (cfg.teacher.base_url or base_url):
        raise fail(
            "--judge teacher needs teacher.base_url in the config (the judge, not the model under test)"
        )
    try:
        return build_judge(
            mode,
            cfg.teacher,
            cfg.filter,
            cache_dir=store.root / "cache" / "judge",
            store=store,
            base_url=base_url,
        )
    except Exception as exc:
        raise fail(f"cannot build the {mode} judge: {exc}") from None


def _used_task_ids(train_run: str | None) -> set[str] | None:
    """Task ids a training run synthesised from (the world tasks eval must hold out)."""
    if train_run is None:
        return None
    return run_store(train_run).written_ids("tasks", "task_id") or None


def _items(
    cfg: Any, bench: str | None, data: str | None, fmt: str | None, train_run: str | None
) -> Iterator[Any]:
    from stages.evaluate.benchmarks import FormatError, bench_items, load_items, world_items
    from stages.readers.cells import SeedError

    try:
        if data:
            if not Path(data).exists():
                raise fail(f"--data {data}: no such file (for a published benchmark use --bench NAME)")
            return load_items(Path(data), fmt)
        if bench == "world":
            return world_items(Path(cfg.world.dir), _used_task_ids(train_run), cfg.seeds.limit or 0)
        return bench_items(bench or "", fmt)
    except (FormatError, SeedError) as exc:
        raise fail(str(exc)) from None


@contextlib.contextmanager
def _model(
    serve_path: str | None, server: str, endpoint: str | None, model: str | None, root: Path, protocol: str
):
    """(base_url, model name) of the model under test; a served one is stopped afterwards.

    A text-protocol model's turns come back as text (trajforge reads them), never parsed by the
    server: a malformed tool call is then the model's counted format error, not a server 500."""
    if serve_path is None:
        yield endpoint, model, None
        return
    from stages.evaluate.serve import ServeError, serve

    log_path = root / "logs" / "server.log"
    typer.echo(f"serving {serve_path} ({server}) on loopback; log: {log_path}", err=True)
    try:
        with serve(
            serve_path,
            server=server,
            log_path=log_path,
            view_dir=root / "served-model",
            text_replies=protocol == "text",
        ) as served:
            typer.echo(f"model server ({served.server}) at {served.base_url}", err=True)
            yield served.base_url, model or served.model, served.server
    except ServeError as exc:
        raise fail(str(exc)) from None


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_(
        run: str = typer.Option(
            ..., "--run", help="Run folder or address (s3://...) for the eval trajectories and report."
        ),
        endpoint: str | None = typer.Option(
            None, "--endpoint", help="OpenAI-compatible /v1 URL of the model."
        ),
        model: str | None = typer.Option(None, "--model", help="Model name sent with each request."),
        data: str | None = typer.Option(None, "--data", help="A benchmark file (TSV, parquet, JSONL)."),
        bench: str | None = typer.Option(
            None,
            "--bench",
            help="world (the offline world's held-out tasks), vstar, hrbench4k, hrbench8k, mmsearch, fvqa.",
        ),
        fmt: str | None = typer.Option(
            None, "--format", help="vlmeval-tsv | mmsearch | fvqa | browsecomp-vl (default: from the file)."
        ),
        mode: str | None = typer.Option(
            None, "--mode", help="general | deepresearch (default: per benchmark)."
        ),
        rollouts: int = typer.Option(1, "--rollouts", min=1, help="Rollouts per question (Avg@K, pass@K)."),
        judge: str = typer.Option(
            "none", "--judge", help="none | teacher | custom: an answer judge for open answers."
        ),
        limit: int | None = typer.Option(None, "--limit", min=1, help="Evaluate the first N questions."),
        in_flight: int = typer.Option(8, "--in-flight", min=1, help="Rollouts in flight at once."),
        serve_path: str | None = typer.Option(
            None, "--serve", help="Serve this exported model on loopback and evaluate it."
        ),
        server: str = typer.Option(
            "auto", "--server", help="auto (vLLM with a GPU, else transformers) | transformers | vllm."
        ),
        train_run: str | None = typer.Option(
            "runs/demo",
            "--train-run",
            help="World benchmark: hold out the tasks this run synthesised from.",
        ),
        untrained: bool = typer.Option(
            False,
            "--untrained",
            help="With --serve: the same architecture with fresh weights (the baseline).",
        ),
        label: str | None = typer.Option(None, "--label", help="Column name in the printed table."),
        config: Path | None = ConfigOption,
        sets: list[str] | None = SetOption,
    ) -> None:
        """Evaluate a model through the synth executor and tools; resumable; prints a table."""
        from pipeline.commands.synth import world_for
        from stages.evaluate.evaluator import Evaluator, report_from, table_lines

        logging.getLogger("httpx").setLevel(logging.WARNING)
        # a TERM (make, a scheduler) unwinds like Ctrl-C: shards flushed, a served model stopped
        signal.signal(signal.SIGTERM, _interrupt)
        if judge not in ("none", "teacher", "custom"):
            raise fail("--judge must be none, teacher or custom")
        if mode not in (None, "general", "deepresearch"):
            raise fail("--mode must be general or deepresearch")
        if data and bench:
            raise fail("pass --data FILE or --bench NAME, not both")
        bench = bench or (None if data else "world")
        if endpoint and serve_path:
            raise fail("pass --endpoint (a running server) or --serve PATH (start one), not both")
        if bench != "world" and not (endpoint or serve_path):
            raise fail(
                "no model: pass --endpoint URL --model NAME, or --serve PATH (the oracle only knows the world)"
            )
        if endpoint and not model:
            raise fail("--endpoint needs --model NAME (what the server calls the model)")
        cfg = load(config, sets, run)
        store = open_run(cfg)
        log = stage_logger(store, "eval")
        if untrained:
            if not serve_path:
                raise fail("--untrained needs --serve PATH (the exported model whose architecture to copy)")
            from stages.evaluate.serve import untrained_copy

            serve_path = str(untrained_copy(Path(serve_path), store.root / "untrained-model"))
        start = time.monotonic()
        world = world_for(cfg) if bench == "world" else contextlib.nullcontext(None)
        with (
            world as world_url,
            _model(serve_path, server, endpoint, model, store.root, cfg.teacher.tool_protocol) as (
                url,
                name,
                served_by,
            ),
        ):
            judge_obj = _judge(judge, cfg, store, world_url)
            if url is not None:
                cfg.teacher.base_url, cfg.teacher.model = url, name
            if served_by == "transformers":  # sample at teacher.temperature, as vLLM would
                from stages.evaluate.serve import sampling_body

                body = sampling_body(str(serve_path), cfg.teacher.temperature, cfg.teacher.top_p)
                cfg.teacher.extra_body = {**body, **cfg.teacher.extra_body}
            evaluator = Evaluator(cfg, store, base_url=url or world_url, judge=judge_obj, log=log)
            items = _items(cfg, bench, data, fmt, train_run)
            try:
                result = asyncio.run(
                    evaluator.run(items, rollouts=rollouts, mode=mode, limit=limit, in_flight=in_flight)
                )
            finally:
                if judge_obj is not None:
                    asyncio.run(judge_obj.aclose())
        report = report_from(store)
        report.update(
            {
                "model": cfg.teacher.model,
                "benchmark": bench or Path(data or "").name,
                "scored_now": result.scored,
                "already_scored": result.already,
                "bad_rows": len(result.bad_rows),
                "harness_cpu_s": round(result.cpu_s, 3),
                "wall_s": round(time.monotonic() - start, 2),
                "teacher": {k: v for k, v in result.teacher.items() if isinstance(v, int | float)},
            }
        )
        store.update_report("eval", report)
        typer.echo("\n".join(table_lines({label or cfg.teacher.model: report})))
        typer.echo(
            f"eval: {result.scored} scored now, {result.already} already scored, {len(result.bad_rows)} bad rows "
            f"(see {store.root / 'logs' / 'eval.log'}); trajectories in {store.where('eval')}; report: {store.where('report.json')}"
        )

    @app.command("eval-table")
    def eval_table(
        runs: list[str] = typer.Argument(..., help="LABEL=RUN_DIR (or RUN_DIR) for each column."),
    ) -> None:
        """Eval reports of several runs side by side (one table)."""
        from pipeline.run_files import split_location
        from stages.evaluate.evaluator import table_lines

        reports: dict[str, dict[str, Any]] = {}
        for spec in runs:
            head, _, rest = spec.partition("=")
            label, folder = (head, rest) if rest and "://" not in head and "?" not in head else ("", spec)
            report = run_store(folder).read_report().get("eval")
            if not report:
                raise fail(f"{folder}: no eval report (run `trajforge eval --run {folder}` first)")
            reports[label or split_location(folder)[1]] = report
        typer.echo("\n".join(table_lines(reports)))
