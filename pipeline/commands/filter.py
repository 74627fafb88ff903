"""`trajforge filter --run DIR`: raw trajectories -> verdicts, kept set (with plan samples), report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from pipeline.commands.common import ConfigOption, SetOption, fail, load, open_run, stage_logger


def _tools(cfg: Any) -> Any:
    """trajforge's own tools (with the config's extras): what a run without tools.json offered."""
    from stages.tools.registry import tool_table

    return tool_table(cfg.tools)


def _judge(mode: str, cfg: Any, store: Any) -> Any:
    """The judge for `--judge teacher|custom` (None for `none`): no network call otherwise."""
    if mode == "none":
        return None
    from filters.judges import build_judge

    if mode == "teacher" and not cfg.teacher.base_url:
        raise fail(
            "--judge teacher uses the run's teacher, and teacher.base_url is unset (the offline world's oracle): "
            "start it with `trajforge world serve --world DIR` and pass --set teacher.base_url=http://127.0.0.1:PORT/v1, "
            "or use --judge custom with --set filter.judge_base_url=URL"
        )
    try:
        return build_judge(
            mode, cfg.teacher, cfg.filter, cache_dir=store.root / "cache" / "judge", store=store
        )
    except Exception as exc:  # a missing key variable, a bad URL: say what to set
        raise fail(f"cannot build the {mode} judge: {exc}") from None


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The printed summary: counts, pass rate per check (per category and teacher), histogram, drops."""
    lines = [
        f"filter: {report['raw']} raw, {report['passed_checks']} passed checks "
        f"({report['pass_rate_all']:.1%}), {report['dropped_best_per_task']} lower-ranked rollouts, "
        f"{report['dropped_duplicates']} duplicates, {report['dropped_cap']} over cap/quota -> "
        f"{report['kept']} kept ({report['plan_samples_derived']} plan samples derived) in {report['wall_s']:.1f}s",
        f"  target boxes: {report.get('target_boxes', 0)} trajectories carry one "
        f"({'used' if report.get('use_gold_region', True) else 'hidden: filter.use_gold_region=false'})",
        "  pass rate per check (all | by category | by teacher):",
    ]
    for check, rates in report["pass_rate"].items():
        cats = " ".join(f"{k}={v:.0%}" for k, v in rates["by_category"].items())
        teachers = " ".join(f"{k}={v:.0%}" for k, v in rates["by_teacher"].items())
        lines.append(f"    {check:<10} {rates['all']:>6.1%} | {cats} | {teachers}")
    hist = " ".join(f"{k}:{v}" for k, v in report["tool_calls_histogram"].items())
    lines.append(f"  tool calls per trajectory (calls:count): {hist}")
    lines.append(f"  kept by category: {report['kept_by_category']}")
    for check, examples in report["example_drops"].items():
        lines.append(f"  e.g. {check}: {examples[0][:160]}")
    ocr = report.get("ocr")
    if ocr:
        lines.append(ocr_line(ocr))
    reading = report.get("reply_reading")
    if reading:
        lines.append(
            f"  replies: {reading['normalised_steps']} of {reading['steps']} steps normalised (server shape: "
            f"{_top(reading['normalisations'])}), {reading['repaired_steps']} repaired ({_top(reading['repairs'])}), "
            f"{reading['reasks']} re-asks, {reading['estimated_token_steps']} with estimated tokens (no usage sent)"
        )
    judged = report.get("judge_verdicts")
    if judged:
        lines.append(
            f"  judge verdicts: {judged['pass']} pass, {judged['fail']} fail, {judged['unknown']} unknown "
            f"({judged['unknown_kept']} kept, {judged['unknown_dropped']} dropped: "
            f"filter.judge_unknown={judged['unknown_policy']})"
            + (
                f"; read from JSON {judged['read_by']['json']}, prose {judged['read_by']['prose']}, "
                f"after a re-ask {judged['read_by']['reask']} ({judged['reasks']} re-asks)"
                if "read_by" in judged
                else ""
            )
            + (
                f"; structured output refused {judged['structured_output_rejected']}x, asked without it"
                if judged["structured_output_rejected"]
                else ""
            )
        )
    return lines


def ocr_line(ocr: dict[str, Any]) -> str:
    """What the image check's OCR did: claims checked and unborne out, or why it did not run."""
    if ocr.get("unavailable"):
        return (
            f"  OCR: not available ({ocr['unavailable']}); {ocr.get('claims_unchecked', 0)} text claims "
            "about produced images left unchecked (image check on its older rules)"
        )
    if not ocr.get("engine"):
        return "  OCR: not needed (no thought claimed to read text in a produced image)"
    per = ocr.get("per_image_ms")
    cost = f", {per['images']} images read, median {per['median']:.0f} ms each" if per else ""
    return (
        f"  OCR ({ocr['engine']}): {ocr.get('claims_checked', 0)} text claims about produced images checked, "
        f"{ocr.get('claims_unsupported', 0)} not in the image; {ocr.get('colours_unsupported', 0)} of "
        f"{ocr.get('colours_checked', 0)} colour claims not shown{cost}; {ocr.get('cache_hits', 0)} cached readings"
    )


def filter_command(
    run: str = typer.Option(
        ..., "--run", help="Run folder or address (s3://...) with raw/*.parquet (from synth or import)."
    ),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    judge: str | None = typer.Option(
        None,
        "--judge",
        help="none (rules only, no network) | teacher (the run's teacher) | custom (filter.judge_*).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Stepwise consistency filtering, dedup, capped selection and plan-mode samples."""
    from filters.run_checks import run_filter
    from pipeline.leaks import LeakGuard

    overrides = list(sets or []) + ([f"filter.judge={judge}"] if judge else [])
    cfg = load(config, overrides, run)
    store = open_run(cfg)
    if not store.shard_paths("raw"):
        raise fail(
            f"{store.where('raw')} has no shards; run `trajforge synth` or `trajforge import r1v4` first"
        )
    log = stage_logger(store, "filter")
    try:
        outcome = run_filter(
            store,
            cfg.filter,
            judge=_judge(cfg.filter.judge, cfg, store),
            log=log,
            progress=progress,
            leaks=LeakGuard.for_run(store.root, cfg),
            tools=store.tool_table() or _tools(cfg),  # an import records none: trajforge's own
        )
    except ValueError as exc:
        raise fail(str(exc)) from None
    store.update_report("filter", outcome.report)
    for line in summary_lines(outcome.report):
        typer.echo(line)
    store.push_logs()
    typer.echo(
        f"  drops explained in {store.where('logs')} (filter.*); verdicts in {store.where('verdicts')}"
    )
    typer.echo(json.dumps({"raw": outcome.report["raw"], "kept": outcome.report["kept"]}))


def register(app: typer.Typer) -> None:
    app.command("filter")(filter_command)


def _top(counts: dict[str, int], n: int = 4) -> str:
    """`name count, ...` of the most frequent kinds ("none" when there are none)."""
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v}" for k, v in ranked[:n]) + (", ..." if len(ranked) > n else "") or "none"
