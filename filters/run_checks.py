"""Apply the checks to `RUN/raw`, select, derive plan samples, write verdicts, kept set and report.

Two streaming passes over the raw shards (memory holds verdict rows and small candidates, never
the whole raw set): pass 1 runs the checks (rules inline; judges, when configured, asynchronously
for the trajectories the rules kept) and derives plan samples from passing trajectories; then
best-per-task, dedup and the capped quota selection; pass 2 copies the selected trajectories.
Outputs are rewritten whole with deterministic names and row order, so two runs on the same
input produce byte-identical files, and a re-filter with other thresholds costs only the rules
(and cached judge replies).
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from filters.answer_check import AnswerCheck
from filters.base import Check, CheckContext
from filters.execution import ExecutionCheck
from filters.final_answer import FinalAnswerCheck
from filters.format_check import FormatCheck
from filters.grounding import GroundingCheck
from filters.image_thought import ImageThoughtCheck
from filters.judges import READ_BY, Judge
from filters.leak import LeakCheck
from filters.plan_alignment import PlanAlignmentCheck
from filters.plan_samples import plan_sample
from filters.redundancy import RedundancyCheck
from filters.select import Candidate, best_per_task, cap_with_quotas, check_quotas, dedup
from pipeline.batch_gc import collect_per_batch
from pipeline.config import FilterConfig
from pipeline.leaks import LeakGuard
from pipeline.schema import Trajectory, Verdict, from_table, record_fields, to_table
from pipeline.store import RunStore
from pipeline.tool_spec import ToolTable

#: Every check in the order they run (cheap structural checks first).
ALL_CHECKS: tuple[type[Check], ...] = (
    FormatCheck,
    ExecutionCheck,
    LeakCheck,
    RedundancyCheck,
    PlanAlignmentCheck,
    ImageThoughtCheck,
    GroundingCheck,
    FinalAnswerCheck,
    AnswerCheck,
)
CHECK_NAMES = tuple(c.name for c in ALL_CHECKS)
_CHECKS_BY_NAME = {c.name: c for c in ALL_CHECKS}
#: One check's verdict in a verdicts row: the Verdict record's own fields, less those the row holds once.
_CHECK_STRUCT = pa.struct(
    [f for f in record_fields(Verdict) if f.name in ("keep", "score", "reason", "steps")]
)
IN_FLIGHT = 128  # trajectories judged concurrently (the client bounds the calls themselves)


def build_checks(names: list[str] | None = None) -> list[Check]:
    """The configured checks (empty: all), in canonical order; unknown names are an error."""
    wanted = list(names or CHECK_NAMES)
    unknown = sorted(set(wanted) - set(CHECK_NAMES))
    if unknown:
        raise ValueError(f"unknown filter.checks {unknown}; known checks: {list(CHECK_NAMES)}")
    return [c() for c in ALL_CHECKS if c.name in wanted]


def verdict_schema(checks: list[Check]) -> pa.Schema:
    fields = [
        ("trajectory_id", pa.string()),
        ("task_id", pa.string()),
        ("category", pa.string()),
        ("teacher", pa.string()),
        ("source", pa.string()),
        ("status", pa.string()),
        ("tool_calls", pa.int32()),
        ("passed", pa.bool_()),
        ("score", pa.float64()),
        ("keep", pa.bool_()),
        ("reasons", pa.list_(pa.string())),
        *[(c.name, _CHECK_STRUCT) for c in checks],
    ]
    return pa.schema(fields, metadata={"trajforge.record": "FilterVerdicts", "trajforge.version": "2"})


@dataclass
class FilterOutcome:
    """What a filter run did; `report` is what lands in report.json["filter"]."""

    report: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)


# ------------------------------------------------------------------------------ raw reading


def iter_raw(store: RunStore, only: set[str] | None = None) -> Iterator[list[Trajectory]]:
    """Raw trajectories shard by shard, first copy of each id only (as RunStore reads them).

    `only`: these ids (and rows with no stored id, which get theirs on reading), picked out of
    each shard before any row becomes a record: the callers still match ids on the records."""
    seen: set[str] = set()
    wanted = None if only is None else pa.array(sorted(only), pa.string())
    for path in store.shard_paths("raw"):
        table = store.read_shard(path)
        if wanted is not None and "trajectory_id" in table.column_names:
            ids = table["trajectory_id"]
            table = table.filter(
                pc.or_kleene(pc.is_in(ids, value_set=wanted), pc.fill_null(pc.equal(ids, ""), True))
            )
        batch = [t for t in from_table(table, Trajectory) if t.trajectory_id not in seen]
        seen.update(t.trajectory_id for t in batch)
        if batch:
            yield batch


# ----------------------------------------------------------------------------------- checks


def rule_verdicts(trajectory: Trajectory, checks: list[Check], ctx: CheckContext) -> list[Verdict]:
    return [check.run(trajectory, ctx) for check in checks]


async def judged_verdicts(trajectory: Trajectory, checks: list[Check], ctx: CheckContext) -> list[Verdict]:
    """Rules first. Judges that may overturn a rule drop (an answer the rules could not match)
    go next; the other judges run only if nothing else dropped the trajectory (or `judge_all`)."""
    by_name = {v.check: v for v in rule_verdicts(trajectory, checks, ctx)}
    order = list(by_name)
    blocking = [n for n, v in by_name.items() if not v.keep and not _CHECKS_BY_NAME[n].rescuable]
    if blocking and not ctx.config.judge_all:
        return list(by_name.values())
    rescuers = [c for c in checks if c.judged and c.rescuable]
    others = [c for c in checks if c.judged and not c.rescuable]
    for verdict in await asyncio.gather(*(c.arun(trajectory, ctx) for c in rescuers)):
        by_name[verdict.check] = verdict
    if any(not v.keep for v in by_name.values()) and not ctx.config.judge_all:
        return [by_name[n] for n in order]
    for verdict in await asyncio.gather(*(c.arun(trajectory, ctx) for c in others)):
        by_name[verdict.check] = verdict
    return [by_name[n] for n in order]


async def _judge_batch(
    batch: list[Trajectory], checks: list[Check], ctx: CheckContext
) -> list[list[Verdict]]:
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(t: Trajectory) -> list[Verdict]:
        async with gate:
            return await judged_verdicts(t, checks, ctx)

    return await asyncio.gather(*(one(t) for t in batch))


def _row(trajectory: Trajectory, verdicts: list[Verdict]) -> dict[str, Any]:
    failed = [v for v in verdicts if not v.keep]
    row: dict[str, Any] = {
        "trajectory_id": trajectory.trajectory_id,
        "task_id": trajectory.task_id,
        "category": trajectory.category,
        "teacher": trajectory.teacher,
        "source": trajectory.source,
        "status": trajectory.status,
        "tool_calls": len(trajectory.tool_calls),
        "passed": not failed,
        "score": round(sum(v.score for v in verdicts) / max(len(verdicts), 1), 6),
        "keep": False,
        "reasons": [f"{v.check}: {v.reason or 'failed'}" for v in failed],
    }
    for v in verdicts:
        row[v.check] = {
            "keep": v.keep,
            "score": v.score,
            "reason": v.reason,
            "steps": [{"step": s.step, "ok": s.ok, "reason": s.reason} for s in v.steps],
        }
    return row


# ---------------------------------------------------------------------------------- outputs


def write_shards(store: RunStore, stage: str, table: pa.Table, rows_per_shard: int) -> list[str]:
    """Replace a stage's shards with `table`, split into deterministically named shards."""
    names: list[str] = []
    for number, start in enumerate(range(0, max(table.num_rows, 1), max(rows_per_shard, 1))):
        chunk = table.slice(start, rows_per_shard)
        if chunk.num_rows == 0 and number > 0:
            break
        buffer = io.BytesIO()
        pq.write_table(chunk, buffer, compression="zstd")
        name = f"{stage}-{number:05d}.parquet"
        store.write_bytes(f"{stage}/{name}", buffer.getvalue())
        names.append(name)
    for stale in store.shard_paths(stage):
        if stale.rsplit("/", 1)[-1] not in names:
            store.delete_shard(stale)
    return names


def _rate(rows: list[dict[str, Any]], check: str) -> float:
    return round(sum(r[check]["keep"] for r in rows) / len(rows), 4) if rows else 0.0


def build_report(rows: list[dict[str, Any]], checks: list[Check], extra: dict[str, Any]) -> dict[str, Any]:
    """Pass rate of each check per category and per teacher, tool-call histogram, drop reasons."""
    by: dict[str, dict[str, list[dict[str, Any]]]] = {
        "category": defaultdict(list),
        "teacher": defaultdict(list),
    }
    for row in rows:
        by["category"][row["category"]].append(row)
        by["teacher"][row["teacher"]].append(row)
    pass_rates = {
        c.name: {
            "all": _rate(rows, c.name),
            "by_category": {k: _rate(v, c.name) for k, v in sorted(by["category"].items())},
            "by_teacher": {k: _rate(v, c.name) for k, v in sorted(by["teacher"].items())},
        }
        for c in checks
    }
    drops: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        for c in checks:
            if not row[c.name]["keep"]:
                drops[c.name] += 1
                if len(examples[c.name]) < 3:
                    examples[c.name].append(f"{row['trajectory_id']}: {row[c.name]['reason'][:200]}")
    histogram = Counter(r["tool_calls"] for r in rows)
    kept_hist = Counter(r["tool_calls"] for r in rows if r["keep"])
    return {
        **extra,
        "pass_rate": pass_rates,
        "drops_by_check": dict(sorted(drops.items())),
        "example_drops": {k: examples[k] for k in sorted(examples)},
        "tool_calls_histogram": {str(k): histogram[k] for k in sorted(histogram)},
        "tool_calls_histogram_kept": {str(k): kept_hist[k] for k in sorted(kept_hist)},
    }


def judge_verdicts(stats: Counter[str], policy: str) -> dict[str, Any]:
    """Judge calls by verdict (pass / fail / unknown), what `judge_unknown` did with the unknowns,
    and whether the endpoint refused structured output (then the run asked without it)."""
    kinds = ("answer", "step", "image", "final")
    return {
        **{word: sum(stats[f"{k}_{word}"] for k in kinds) for word in ("pass", "fail", "unknown")},
        "unknown_by_kind": {k: stats[f"{k}_unknown"] for k in kinds if stats[f"{k}_unknown"]},
        "unknown_policy": policy,
        "unknown_kept": stats["unknown_kept"],
        "unknown_dropped": stats["unknown_dropped"],
        "structured_output_rejected": stats["structured_output_rejected"],
        # how each verdict was read: JSON, prose ("Yes, the step is consistent."), the answer to
        # the one re-ask, or not at all; and how many re-asks were sent
        "read_by": {way: stats[f"read.{way}"] for way in READ_BY},
        "reasks": stats["reasks"],
    }


def count_reading(trajectory: Trajectory, counts: Counter[str]) -> None:
    """Add how one trajectory's steps were read: normalised, repaired, re-asked, estimated tokens."""
    for step in trajectory.steps:
        counts["steps"] += 1
        counts["normalised_steps"] += bool(step.normalisations)
        counts["repaired_steps"] += bool(step.repairs)
        counts["reasks"] += step.reasks
        counts["estimated_token_steps"] += step.tokens_estimated
        counts.update(f"normalisations.{n}" for n in step.normalisations)
        counts.update(f"repairs.{n}" for n in step.repairs)


def reply_reading(counts: Counter[str]) -> dict[str, Any]:
    """The raw steps' reading as the report states it: lossless normalisations of the server's
    shape apart from repairs of what the model wrote (only repairs count toward
    filter.max_repairs), re-asks, and steps whose token counts are estimates (no usage sent)."""

    def by(prefix: str) -> dict[str, int]:
        return {k.removeprefix(prefix): v for k, v in sorted(counts.items()) if k.startswith(prefix)}

    return {
        "steps": counts["steps"],
        "normalised_steps": counts["normalised_steps"],
        "normalisations": by("normalisations."),
        "repaired_steps": counts["repaired_steps"],
        "repairs": by("repairs."),
        "reasks": counts["reasks"],
        "estimated_token_steps": counts["estimated_token_steps"],
    }


# ------------------------------------------------------------------------------------ run


def run_filter(
    store: RunStore,
    cfg: FilterConfig,
    *,
    judge: Judge | None = None,
    log: logging.Logger | None = None,
    progress: bool = True,
    leaks: LeakGuard | None = None,
    tools: ToolTable | None = None,
) -> FilterOutcome:
    """Filter `store/raw` into `store/verdicts` and `store/kept`; returns the report.

    `leaks` is the guard of the `leak` check (default: built from the run folder and its config);
    `tools` the tools calls are judged against (default: the ones the run recorded, `tools.json`).
    Garbage is collected per batch of raw trajectories (`pipeline.batch_gc`).
    """
    with collect_per_batch() as collect:
        return _filter(
            store, cfg, judge=judge, log=log, progress=progress, leaks=leaks, tools=tools, collect=collect
        )


def _filter(
    store: RunStore,
    cfg: FilterConfig,
    *,
    judge: Judge | None,
    log: logging.Logger | None,
    progress: bool,
    leaks: LeakGuard | None,
    tools: ToolTable | None,
    collect: Callable[[], int],
) -> FilterOutcome:
    from tqdm import tqdm

    start = time.perf_counter()
    log = log or logging.getLogger("trajforge.filter")
    check_quotas(cfg.quotas)
    checks = build_checks(cfg.checks)
    ctx = CheckContext(config=cfg, store=store, judge=judge, leaks=leaks, tools=tools)
    rows: list[dict[str, Any]] = []
    candidates: list[Candidate] = []
    plans: dict[str, Trajectory] = {}  # source trajectory id -> its plan sample
    plan_skips: Counter[str] = Counter()
    boxes = 0  # trajectories whose task names a target box (real sets such as V* do)
    reading: Counter[str] = Counter()  # how the raw steps were read (reply_reading in the report)
    bar = tqdm(desc="filter", unit="traj", disable=not progress)

    def consume(batch: list[Trajectory], results: list[list[Verdict]]) -> None:
        nonlocal boxes
        for trajectory, verdicts in zip(batch, results, strict=True):
            boxes += trajectory.gold_region is not None
            count_reading(trajectory, reading)
            row = _row(trajectory, verdicts)
            rows.append(row)
            if not row["passed"]:
                continue
            image = trajectory.images[0] if trajectory.images else None
            candidates.append(
                Candidate(
                    trajectory.trajectory_id,
                    trajectory.task_id,
                    trajectory.category,
                    row["score"],
                    row["tool_calls"],
                    trajectory.question,
                    image,
                )
            )
            if cfg.plan_samples and trajectory.mode != "plan":
                sample, why = plan_sample(trajectory, ctx.tool_table())
                if sample is None:
                    plan_skips[why.split(":")[0]] += 1
                else:
                    plans[trajectory.trajectory_id] = sample
        bar.update(len(batch))

    async def judged_pass(judge: Judge) -> None:
        try:
            for batch in iter_raw(store):
                consume(batch, await _judge_batch(batch, checks, ctx))
                del batch  # the collection below need not walk what is garbage already
                collect()
        finally:
            await judge.aclose()

    if judge is None:
        for batch in iter_raw(store):
            consume(batch, [rule_verdicts(t, checks, ctx) for t in batch])
            del batch  # the collection below need not walk what is garbage already
            collect()
    else:
        asyncio.run(judged_pass(judge))
    bar.close()
    checked_s = time.perf_counter() - start

    # -- selection: best rollouts per task, dedup, plan samples of the survivors, cap + quotas
    ranked, dropped = best_per_task(candidates, cfg.best_per_task)
    ranked, dupes = dedup(ranked, cfg, ctx.image_hash)
    dropped.update(dupes)
    pool = list(ranked)
    for c in ranked:
        sample = plans.get(c.trajectory_id)
        if sample is not None:
            pool.append(
                Candidate(sample.trajectory_id, sample.task_id, "plan", c.score, 0, c.question, c.image)
            )
    chosen, capped = cap_with_quotas(pool, cfg.cap, cfg.quotas)
    dropped.update(capped)
    chosen_ids = {c.trajectory_id for c in chosen}

    # -- pass 2: the kept set, plan samples included, in id order
    kept: list[Trajectory] = [s for s in plans.values() if s.trajectory_id in chosen_ids]
    for batch in iter_raw(store, only=chosen_ids):
        kept.extend(t for t in batch if t.trajectory_id in chosen_ids)
        del batch  # the collection below need not walk what is garbage already
        collect()
    kept.sort(key=lambda t: t.trajectory_id)

    for row in rows:
        row["keep"] = row["trajectory_id"] in chosen_ids
        if row["passed"] and not row["keep"]:
            row["reasons"] = [dropped.get(row["trajectory_id"], "not selected")]
        if not row["keep"]:
            log.info("drop %s [%s] %s", row["trajectory_id"], row["category"], " | ".join(row["reasons"]))
    rows.sort(key=lambda r: r["trajectory_id"])
    write_shards(store, "verdicts", pa.Table.from_pylist(rows, schema=verdict_schema(checks)), cfg.shard_rows)
    write_shards(store, "kept", to_table(kept, Trajectory), cfg.shard_rows)

    kept_categories = Counter(t.category for t in kept)
    extra = {
        "checks": [c.name for c in checks],
        "judge": "none" if judge is None else "on",
        "raw": len(rows),
        "passed_checks": len(candidates),
        "dropped_by_checks": len(rows) - len(candidates),
        "dropped_best_per_task": sum(1 for v in dropped.values() if v.startswith("best_per_task")),
        "dropped_duplicates": len(dupes),
        "dropped_cap": len(capped),
        "plan_samples_derived": len(plans),
        "plan_samples_skipped": dict(sorted(plan_skips.items())),
        "kept": len(kept),
        "kept_by_category": dict(sorted(kept_categories.items())),
        # every figure says whether target boxes were there to help the crop check
        "target_boxes": boxes,
        "use_gold_region": cfg.use_gold_region,
        "pass_rate_all": round(len(candidates) / len(rows), 4) if rows else 0.0,
        "ocr": ctx.ocr_summary(),  # engine, or why none (the image check then used its rules only)
        "check_s": round(checked_s, 3),
        "wall_s": round(time.perf_counter() - start, 3),
    }
    extra["reply_reading"] = reply_reading(reading)
    if judge is not None:
        extra["judge_stats"] = dict(sorted(judge.stats.items()))
        extra["judge_verdicts"] = judge_verdicts(judge.stats, cfg.judge_unknown)
    return FilterOutcome(report=build_report(rows, checks, extra), rows=rows)
