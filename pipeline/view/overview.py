"""The overview page of a run: funnel, drops per check with reasons, tool mix, turns and calls,
categories, teacher calls and tokens, repairs by kind, eval accuracy (all as SVG charts)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from jinja2 import Environment

from pipeline.view import charts
from pipeline.view.data import RunData

TOP_REASONS = 6


def _histogram(values: list[int], cap: int = 12) -> list[tuple[str, float]]:
    counts = Counter(min(v, cap) for v in values)
    if not counts:
        return []
    return [(f"{k}+" if k == cap else str(k), counts.get(k, 0)) for k in range(min(counts), max(counts) + 1)]


def context(data: RunData) -> dict[str, Any]:
    entries = data.entries
    raw = [e for e in entries if e.stage == "raw"]
    kept = [e for e in entries if e.kept]
    tools_all: Counter[str] = Counter()
    tools_kept: Counter[str] = Counter()
    repairs: Counter[str] = Counter()
    for e in raw:
        tools_all.update(e.tools)
        repairs.update(e.repairs)
        if e.kept:
            tools_kept.update(e.tools)
    reasks = sum(e.reasks for e in raw)
    if reasks:
        repairs["re-asked replies"] = reasks
    drops = data.drop_reasons()
    by_teacher: Counter[str] = Counter()
    tokens: Counter[str] = Counter()
    for e in raw:
        by_teacher[e.teacher or "?"] += e.teacher_calls
        tokens[f"{e.teacher or '?'} prompt"] += e.prompt_tokens
        tokens[f"{e.teacher or '?'} completion"] += e.completion_tokens
    funnel = data.funnel()
    notes = []
    report_filter = data.report.get("filter") or {}
    if report_filter and report_filter.get("raw") not in (None, len(raw)):
        notes.append(
            f"report.json counts {report_filter['raw']} filtered rollouts but raw/ holds {len(raw)}: "
            "rerun `trajforge filter` to bring verdicts up to date"
        )
    accuracy = data.eval_accuracy()
    built = {
        "funnel": charts.funnel(funnel, title="Funnel: seeds to kept set"),
        "drops": charts.hbars(
            sorted(((k, sum(v.values())) for k, v in drops.items()), key=lambda kv: -kv[1]),
            title="Drops per check",
            color=charts.PALETTE[3],
        ),
        "reasons": [
            charts.hbars(v.most_common(TOP_REASONS), title=f"{check}: why", color=charts.PALETTE[1])
            for check, v in sorted(drops.items(), key=lambda kv: -sum(kv[1].values()))
        ],
        "tools_all": charts.donut(tools_all.most_common(), title="Tool mix, all rollouts"),
        "tools_kept": charts.donut(tools_kept.most_common(), title="Tool mix, kept trajectories"),
        "turns": charts.vbars(_histogram([e.turns for e in raw]), title="Turns per trajectory"),
        "calls": charts.vbars(
            _histogram([e.tool_calls for e in raw]),
            title="Tool calls per trajectory",
            color=charts.PALETTE[0],
        ),
        "categories": charts.hbars(
            Counter(e.category for e in raw).most_common(), title="Rollouts per category"
        ),
        "categories_kept": charts.hbars(
            Counter(e.category for e in kept).most_common(),
            title="Kept per category (plan samples included)",
            color=charts.PALETTE[2],
        ),
        "teacher_calls": charts.hbars(
            by_teacher.most_common(), title="Teacher calls per teacher", color=charts.PALETTE[4]
        ),
        "tokens": charts.hbars(sorted(tokens.items()), title="Tokens", color=charts.PALETTE[6]),
        "repairs": charts.hbars(
            repairs.most_common(), title="Repairs to teacher text, by kind", color=charts.PALETTE[5]
        ),
        "eval": charts.hbars(accuracy, title="Eval accuracy", percent=True) if accuracy else None,
    }
    tiles = [
        ("rollouts", f"{len(raw):,}"),
        ("kept (with plan samples)", f"{len(kept):,}"),
        ("tool calls", f"{sum(tools_all.values()):,}"),
        ("teacher calls", f"{sum(by_teacher.values()):,}"),
        ("tokens", f"{sum(tokens.values()):,}"),
        ("repairs", f"{sum(repairs.values()):,}"),
    ]
    return {"charts": built, "tiles": tiles, "notes": notes}


def render(env: Environment, data: RunData, base: dict[str, Any]) -> str:
    return env.get_template("overview.html").render(**base, **context(data))
