"""What the viewer knows about a run, read through the run store and the record schema only.

The list index is built once from a few parquet columns (ids, status, category, question, the
tool name / action / repairs of each step), never from whole trajectories, so a run of 30,000
trajectories indexes in about a second; a trajectory page then reads one record from the one
shard that holds it. Filter outcomes come from `verdicts/` (one row per trajectory, one column
per check), the kept set from `kept/`, funnel counts from `report.json` where it has them.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.run_files import RunFiles, RunLocationError, is_remote
from pipeline.schema import Trajectory, from_table
from pipeline.store import RunStore

#: verdicts/ columns that describe the trajectory rather than one check (filters.run_checks.verdict_schema)
VERDICT_FIELDS = {
    "trajectory_id", "task_id", "category", "teacher", "source", "status", "tool_calls",
    "injected_defects", "passed", "score", "keep", "reasons",
}  # fmt: skip
_INDEX_COLUMNS = [
    "trajectory_id", "task_id", "rollout", "teacher", "category", "mode", "question", "status",
    "prompt_tokens", "completion_tokens", "teacher_calls",
    "steps.list.element.action", "steps.list.element.tool_name", "steps.list.element.repairs",
    "steps.list.element.reasks",
]  # fmt: skip


class ViewError(Exception):
    """A run the viewer cannot show, with what to do about it."""


@dataclass
class Entry:
    """One trajectory in the list index (a few fields, no text beyond the question)."""

    id: str
    task_id: str
    rollout: int
    teacher: str
    category: str
    mode: str
    question: str
    status: str
    turns: int
    tool_calls: int
    tools: dict[str, int]
    repairs: dict[str, int]
    reasks: int
    prompt_tokens: int
    completion_tokens: int
    teacher_calls: int
    stage: str  # "raw" or "kept" (a derived plan sample lives only in kept/)
    shard: str
    kept: bool | None = None  # None: the run was never filtered
    dropped_by: str = ""  # the check (or selection step) that dropped it
    reasons: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.kept is None:
            return "unfiltered"
        return "kept" if self.kept else f"dropped: {self.dropped_by}"


class RunData:
    """Lazy, thread-safe views of one run folder (the server answers pages from several threads)."""

    def __init__(self, location: str | Path):
        if not is_remote(location) and not Path(location).is_dir():
            raise ViewError(
                f"{location} is not a run folder; pass --run runs/<name> (made by synth or import)"
            )
        try:
            self.store = RunStore(location)
        except (RunLocationError, OSError) as exc:
            raise ViewError(str(exc)) from None
        self.root = self.store.root
        where = self.store.where()
        if not self.store.shard_paths("raw") and not self.store.shard_paths("kept"):
            raise ViewError(
                f"{where} has no raw/ or kept/ shards; run `trajforge synth --run {where}` "
                f"or `trajforge import r1v4 FILE --run {where}` first"
            )
        self._lock = threading.Lock()
        self._entries: list[Entry] | None = None
        self._by_id: dict[str, Entry] = {}
        self._by_task: dict[str, list[Entry]] = {}
        self.facets: dict[str, list[str]] = {}  # the list page's filter choices, set with the index

    # -- report and run-level facts ----------------------------------------------------------
    @functools.cached_property
    def report(self) -> dict[str, Any]:
        try:
            return self.store.read_report()
        except (OSError, ValueError):
            return {}

    @functools.cached_property
    def checks(self) -> list[str]:
        """The filter checks of this run, in the order the filter ran them."""
        table = self._verdict_table
        if table is None:
            return []
        return [name for name in table.column_names if name not in VERDICT_FIELDS]

    @functools.cached_property
    def _verdict_table(self) -> pa.Table | None:
        return self.store.read_table("verdicts")

    # -- the index ---------------------------------------------------------------------------
    @property
    def entries(self) -> list[Entry]:
        with self._lock:
            if self._entries is None:
                self._entries = self._build_index()
                self._by_id = {e.id: e for e in self._entries}
                for e in self._entries:
                    self._by_task.setdefault(e.task_id, []).append(e)
                self.facets = _facets(self._entries)
            return self._entries

    def entry(self, trajectory_id: str) -> Entry | None:
        _ = self.entries
        return self._by_id.get(trajectory_id)

    def task_entries(self, task_id: str) -> list[Entry]:
        _ = self.entries
        return sorted(self._by_task.get(task_id, []), key=lambda e: (e.rollout, e.id))

    def _build_index(self) -> list[Entry]:
        entries: list[Entry] = []
        seen: set[str] = set()
        for stage in ("raw", "kept"):
            for path in self.store.shard_paths(stage):
                entries.extend(self._read_entries(self.store.shard_file(path), path, stage, seen))
        outcomes = self._outcomes()
        kept_ids = self.kept_ids
        filtered = bool(outcomes) or bool(self.store.shard_paths("kept"))
        for e in entries:
            row = outcomes.get(e.id)
            if row is not None:
                e.kept, e.reasons = bool(row["keep"]), list(row["reasons"] or [])
            elif filtered:
                e.kept = e.id in kept_ids
                e.reasons = [] if e.kept else ["not in kept/ (no verdict recorded)"]
            if e.kept is False:
                e.dropped_by = (e.reasons[0].split(":", 1)[0] if e.reasons else "not selected").strip()
        entries.sort(key=lambda e: (e.stage != "raw", e.task_id, e.rollout, e.id))
        return entries

    @staticmethod
    def _read_entries(file: pq.ParquetFile, path: str, stage: str, seen: set[str]) -> list[Entry]:
        names = set(file.schema_arrow.names)
        wanted = [c for c in _INDEX_COLUMNS if c.split(".")[0] in names]
        out: list[Entry] = []
        for row in file.read(columns=wanted).to_pylist():
            tid = row["trajectory_id"]
            if tid in seen:
                continue
            seen.add(tid)
            steps = row.get("steps") or []
            tools = Counter(
                s["tool_name"] for s in steps if s.get("action") == "tool_call" and s.get("tool_name")
            )
            repairs = Counter(r for s in steps for r in (s.get("repairs") or []))
            out.append(
                Entry(
                    id=tid,
                    task_id=row.get("task_id") or "",
                    rollout=row.get("rollout") or 0,
                    teacher=row.get("teacher") or "",
                    category=row.get("category") or "other",
                    mode=row.get("mode") or "",
                    question=row.get("question") or "",
                    status=row.get("status") or "",
                    turns=len(steps),
                    tool_calls=sum(tools.values()),
                    tools=dict(tools),
                    repairs=dict(repairs),
                    reasks=sum(s.get("reasks") or 0 for s in steps),
                    prompt_tokens=row.get("prompt_tokens") or 0,
                    completion_tokens=row.get("completion_tokens") or 0,
                    teacher_calls=row.get("teacher_calls") or 0,
                    stage=stage,
                    shard=str(path),
                )
            )
        return out

    def _outcomes(self) -> dict[str, dict[str, Any]]:
        table = self._verdict_table
        if table is None or "keep" not in table.column_names:
            return {}
        rows = table.select(["trajectory_id", "keep", "reasons"]).to_pylist()
        return {r["trajectory_id"]: r for r in rows}

    @functools.cached_property
    def kept_ids(self) -> set[str]:
        return self.store.written_ids("kept", "trajectory_id")

    # -- one trajectory ----------------------------------------------------------------------
    def trajectory(self, trajectory_id: str) -> Trajectory | None:
        entry = self.entry(trajectory_id)
        if entry is None:
            return None
        table = _shard_table(self.store.files, entry.shard)
        table = table.filter(pc.equal(table["trajectory_id"], trajectory_id)).slice(0, 1)
        records = from_table(table, Trajectory)
        return records[0] if records else None

    def verdicts(self, trajectory_id: str) -> dict[str, dict[str, Any]]:
        """Each check's verdict on one trajectory: {check: {keep, score, reason, steps}}."""
        table = self._verdict_table
        if table is None:
            return {}
        match = table.filter(pc.equal(table["trajectory_id"], trajectory_id)).slice(0, 1).to_pylist()
        if not match:
            return {}
        return {c: match[0][c] for c in self.checks if match[0].get(c) is not None}

    # -- run-level counts --------------------------------------------------------------------
    def funnel(self) -> list[tuple[str, int | None]]:
        """seeds -> tasks -> valid plans -> rollouts -> answered -> kept (+ derived plan samples)."""
        report_tasks = self.report.get("tasks") or {}
        report_filter = self.report.get("filter") or {}
        raw = [e for e in self.entries if e.stage == "raw"]
        tasks = self._count("tasks", "task_id")
        if tasks is None and report_tasks:
            tasks = int(report_tasks.get("written", 0)) + int(report_tasks.get("already_written", 0))
        if tasks is None:  # an imported or handmade run: the tasks its rollouts answer
            tasks = len({e.task_id for e in raw})
        seeds = report_tasks.get("rows", tasks)
        plans = self.store.read_table("plans", columns=["valid"])
        valid_plans = None if plans is None else int(pc.sum(plans["valid"].cast(pa.int64())).as_py() or 0)
        filtered = bool(report_filter) or self._verdict_table is not None or bool(self.kept_ids)
        kept = sum(1 for e in raw if e.kept) if filtered else None
        samples = sum(1 for e in self.entries if e.stage == "kept") if filtered else None
        return [
            ("seeds", seeds),
            ("tasks", tasks),
            ("valid plans", valid_plans),
            ("rollouts", report_filter.get("raw", len(raw))),
            ("answered", sum(1 for e in raw if e.status == "answered")),
            ("kept trajectories", kept),
            ("plan samples (derived)", samples),
        ]

    def _count(self, stage: str, column: str) -> int | None:
        if not self.store.shard_paths(stage):
            return None
        return len(self.store.written_ids(stage, column))

    def drop_reasons(self) -> dict[str, Counter[str]]:
        """Per check, how many trajectories it failed and why (reasons with numbers blurred)."""
        table = self._verdict_table
        out: dict[str, Counter[str]] = {}
        if table is None:
            return out
        for check in self.checks:
            column = table[check]
            failed = column.filter(pc.invert(pc.fill_null(pc.struct_field(column, "keep"), True)))
            reasons = Counter(_reason_kind(r) for r in pc.struct_field(failed, "reason").to_pylist())
            if reasons:
                out[check] = reasons
        selection = Counter(
            _reason_kind(e.reasons[0]) for e in self.entries if e.kept is False and e.dropped_by not in out
        )
        if selection:
            out["selection"] = selection
        return out

    def eval_accuracy(self) -> list[tuple[str, float]]:
        """Accuracy per benchmark from `eval/` shards (a `correct` column) or report.json["eval"]."""
        table = self.store.read_table("eval")
        if table is not None and "correct" in table.column_names:
            names = table["benchmark"].to_pylist() if "benchmark" in table.column_names else None
            scores: dict[str, list[bool]] = {}
            for i, ok in enumerate(table["correct"].to_pylist()):
                scores.setdefault(str(names[i]) if names else "eval", []).append(bool(ok))
            return [(k, sum(v) / len(v)) for k, v in sorted(scores.items()) if v]
        section = self.report.get("eval") or {}
        found: list[tuple[str, float]] = []
        for name, value in sorted(section.items()) if isinstance(section, dict) else []:
            if isinstance(value, dict) and isinstance(value.get("accuracy"), int | float):
                found.append((name, float(value["accuracy"])))
            elif name == "accuracy" and isinstance(value, int | float):
                found.append(("eval", float(value)))
        return found

    def plan_steps(self, trajectory: Trajectory) -> list[dict[str, Any]]:
        """The plan the executor saw (JSON text in the record), as a list of step dicts."""
        if not trajectory.plan:
            return []
        try:
            steps = json.loads(trajectory.plan)
        except ValueError:
            return [{"description": trajectory.plan, "tool_name": "?", "parameters": {}}]
        return [s for s in steps if isinstance(s, dict)] if isinstance(steps, list) else []


def _facets(entries: list[Entry]) -> dict[str, list[str]]:
    """Every value the list page can filter by, computed once with the index."""
    outcomes = ["kept", "dropped", *sorted({e.outcome for e in entries if e.kept is False})]
    if any(e.kept is None for e in entries):
        outcomes.append("unfiltered")
    return {
        "outcomes": outcomes,
        "statuses": sorted({e.status for e in entries}),
        "categories": sorted({e.category for e in entries}),
        "tools": sorted({t for e in entries for t in e.tools}),
    }


@functools.lru_cache(maxsize=4)
def _shard_table(files: RunFiles, key: str) -> pa.Table:
    """A shard read whole, kept for the next page: a task's rollouts and a written site's
    pages mostly come from the shard just read."""
    return files.read_table(key)


def _reason_kind(reason: str | None) -> str:
    """A reason without the trajectory's particulars, so like drops count together."""
    text = (reason or "failed").strip()
    text = re.sub(r"^step \d+: ", "", text)
    text = re.sub(r"\bt-[0-9a-f]{6,}(-r\d+-[0-9a-f]+)?", "…", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", text)
    text = re.sub(r"\d+(\.\d+)?", "#", text)
    return text[:80]
