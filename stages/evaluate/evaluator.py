"""Eval: a model behind any OpenAI-compatible endpoint, through the very executor synth uses.

Each benchmark item becomes a `Task` (images in the run's store, the options shown in the
question); `stages.synth.execute.Executor` runs it with the same tools, sandbox and lenient reading as
synthesis, the endpoint under test in the teacher's seat (no plan: the model is on its own).
Each answer is scored by `pipeline.answers.score` (letters for multiple choice, normalised text,
aliases and numbers otherwise), optionally with an answer judge for open answers the rules call
wrong. Trajectories go to `RUN/eval/*.parquet` in the trajectory schema plus the per-item columns
`EVAL_COLUMNS`, so filters and viewers read them like any run. Resumable: ids already written are
skipped (and the replay cache makes a rerun's turns free).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipeline.answers import score
from pipeline.config import Config
from pipeline.schema import Step, Task, Trajectory, stable_hash, to_table, trajectory_id_for
from pipeline.store import RunStore
from pipeline.teacher import TeacherClient
from pipeline.tool_spec import ToolTable
from stages.evaluate.benchmarks import BadRow, EvalItem
from stages.synth import Executor, executor_prompt
from stages.tools.registry import run_tools, tool_table

STAGE = "eval"
#: Per-item columns beside the trajectory schema.
EVAL_COLUMNS = pa.schema(
    [
        ("benchmark", pa.string()),
        ("split", pa.string()),  # the benchmark's category, level or split
        ("options", pa.string()),  # JSON {letter: text}; "{}" for open questions
        ("prediction", pa.string()),
        ("correct", pa.bool_()),
        ("judged", pa.bool_()),  # the answer judge (not the rules) said correct
    ]
)

ToolsFactory = Callable[[Config, str, Path], dict[str, Any]]


@dataclass
class Scored:
    """One finished rollout with its score."""

    trajectory: Trajectory
    item: EvalItem
    prediction: str | None
    correct: bool
    judged: bool = False


@dataclass
class EvalRun:
    """What one `run_eval` call did (the report is computed from every shard, old and new)."""

    scored: int = 0
    already: int = 0
    bad_rows: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    teacher: dict[str, Any] = field(default_factory=dict)


def task_for(item: EvalItem, store: RunStore, mode: str | None = None) -> Task:
    """The item as a task: images into the store, the question as the model sees it."""
    refs = []
    for image in item.images:
        refs.append(
            store.images.put_file(image) if isinstance(image, Path) else store.images.put_bytes(image)
        )
    return Task(
        source=f"eval:{item.benchmark}",
        source_id=item.item_id,
        category=item.category,  # type: ignore[arg-type]
        mode=(mode or item.mode),  # type: ignore[arg-type]
        question=item.question,
        images=refs,
        gold_answer=item.answer,
        answer_aliases=list(item.aliases),
        meta=json.dumps({"benchmark": item.benchmark, "split": item.split}),
        task_id=stable_hash("eval", item.benchmark, item.item_id, item.question, refs),
    )


def failed_turn(traj: Trajectory) -> None:
    """A turn the server could not give back (transformers serve answers 500 when the model
    wrote malformed tool-call JSON) is the model's failed turn: recorded as an unreadable step,
    so format-valid shares count it (the rollout has already ended as `failed`)."""
    if traj.status != "failed" or not (traj.failure_reason or "").startswith("teacher:"):
        return
    traj.steps.append(
        Step(
            index=len(traj.steps),
            action="invalid",
            format_errors=[f"no reply from the server: {traj.failure_reason[:300]}"],
        )
    )


def eval_ids(
    task: Task, model: str, protocol: str, rollouts: int, tools: ToolTable | None = None
) -> dict[int, str]:
    """Rollout -> trajectory id (task + rollout + model + prompt: what resume checks)."""
    prompt_id = executor_prompt(task.mode, protocol, tools).id  # type: ignore[arg-type]
    return {r: trajectory_id_for(task.task_id, r, model, prompt_id) for r in range(rollouts)}


def eval_table(scored: list[Scored]) -> pa.Table:
    """Trajectories in their schema, plus the per-item eval columns."""
    table = to_table([s.trajectory for s in scored], Trajectory)
    columns = {
        "benchmark": [s.item.benchmark for s in scored],
        "split": [s.item.split for s in scored],
        "options": [json.dumps(s.item.options, ensure_ascii=False) for s in scored],
        "prediction": [s.prediction for s in scored],
        "correct": [s.correct for s in scored],
        "judged": [s.judged for s in scored],
    }
    for name in EVAL_COLUMNS.names:
        table = table.append_column(
            EVAL_COLUMNS.field(name), pa.array(columns[name], EVAL_COLUMNS.field(name).type)
        )
    return table


class Evaluator:
    """Runs items through one executor with bounded concurrency; writes shards as it goes."""

    def __init__(
        self,
        cfg: Config,
        store: RunStore,
        *,
        base_url: str | None,
        tools_factory: ToolsFactory | None = None,
        judge: Any = None,
        log: logging.Logger | None = None,
    ):
        self.cfg, self.store, self.judge = cfg, store, judge
        self.base_url = base_url
        self.tools_factory = tools_factory or run_tools
        self.log = log or logging.getLogger("trajforge.eval")
        self._tools: dict[str, dict[str, Any]] = {}
        self._buffer: list[Scored] = []

    def _tools_for(self, mode: str) -> None:
        """A mode's tools on first use; a tool of the same name is shared across modes."""
        if mode in self._tools:
            return
        built = self.tools_factory(self.cfg, mode, self.store.root)
        for tools in self._tools.values():
            for name in built.keys() & tools.keys():
                built[name] = tools[name]
        self._tools[mode] = built

    async def run(
        self,
        items: Iterable[EvalItem | BadRow],
        *,
        rollouts: int = 1,
        mode: str | None = None,
        limit: int | None = None,
        in_flight: int = 8,
        shard_size: int = 64,
    ) -> EvalRun:
        """Evaluate the items not yet scored in this run folder."""
        result = EvalRun()
        start, cpu = time.perf_counter(), time.process_time()
        written = self.store.written_ids(STAGE, "trajectory_id")
        teacher = TeacherClient(
            self.cfg.teacher, cache_dir=self.store.root / "cache" / "teacher", base_url=self.base_url
        )
        executor = Executor(
            teacher=teacher,
            tools=self._tools,
            store=self.store,
            synth=self.cfg.synth,
            teacher_cfg=self.cfg.teacher,
            work_root=self.store.root / "cache" / "work" / f"eval-{os.getpid()}",
            tool_table=tool_table(self.cfg.tools),
        )
        slots = asyncio.Semaphore(max(1, in_flight))
        pending: set[asyncio.Task[None]] = set()

        async def one(task: Task, item: EvalItem, rollout: int) -> None:
            async with slots:
                traj = await executor.run(task, rollout, None)
            failed_turn(traj)
            self._buffer.append(await self._score(traj, item))
            result.scored += 1
            if len(self._buffer) >= shard_size:
                await self._flush()

        async def prepared(item: EvalItem) -> None:
            """Store the item's images (in a thread, items side by side), then run what is missing."""
            try:
                task = await asyncio.to_thread(task_for, item, self.store, mode)
            except Exception as exc:  # an unreadable image is that item's problem
                result.bad_rows.append(f"{item.item_id}: {exc}")
                self.log.warning("eval item %s skipped: %s", item.item_id, exc)
                return
            self._tools_for(task.mode)
            ids = eval_ids(
                task,
                self.cfg.teacher.model,
                self.cfg.teacher.tool_protocol,
                rollouts,
                tool_table(self.cfg.tools),
            )
            todo = [r for r, tid in ids.items() if tid not in written]
            result.already += len(ids) - len(todo)
            await asyncio.gather(*(one(task, item, r) for r in todo))

        try:
            taken = 0
            for item in items:
                if limit is not None and taken >= limit:
                    break
                if isinstance(item, BadRow):
                    result.bad_rows.append(item.reason)
                    self.log.warning("eval item %s skipped: %s", item.item_id, item.reason)
                    continue
                taken += 1
                # bounded: items stream in; a few more prepared than slots keep every slot busy
                while len(pending) >= max(2, 2 * in_flight // rollouts):
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                    self._settle(done)
                pending.add(asyncio.create_task(prepared(item)))
            while pending:
                done, pending = await asyncio.wait(pending)
                self._settle(done)
        finally:
            for task in pending:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*pending, return_exceptions=True)
            await self._flush()
            result.teacher = teacher.stats()
            await teacher.aclose()
            closed: set[int] = set()
            for tools in self._tools.values():
                for tool in tools.values():
                    if id(tool) not in closed:
                        closed.add(id(tool))
                        with contextlib.suppress(Exception):
                            await tool.aclose()
        result.wall_s = time.perf_counter() - start
        result.cpu_s = time.process_time() - cpu
        return result

    async def _score(self, traj: Trajectory, item: EvalItem) -> Scored:
        prediction = traj.final_answer
        correct = score(prediction, item.answer, item.aliases, item.options, self.cfg.filter.number_tolerance)
        judged = False
        if (
            not correct
            and self.judge is not None
            and not item.options
            and item.answer
            and (prediction or "").strip()
        ):
            verdict = await self.judge.ask(
                "answer",
                {
                    "question": traj.question,
                    "gold_answer": item.answer,
                    "aliases": list(item.aliases),
                    "predicted": prediction,
                },
            )
            correct = judged = bool(verdict.passed) and not verdict.unknown
        return Scored(traj, item, prediction, correct, judged)

    def _settle(self, done: set[asyncio.Task[None]]) -> None:
        """A rollout that raised (a bug, a judge or disk failure) is logged; the run goes on."""
        for task in done:
            if not task.cancelled() and (exc := task.exception()) is not None:
                self.log.error("eval rollout failed: %s: %s", type(exc).__name__, exc)

    async def _flush(self) -> None:
        """Write the buffer as one shard; a failed write keeps it for the next flush."""
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        try:
            await asyncio.to_thread(self.store.write_table, STAGE, eval_table(batch), prefix="eval")
        except Exception as exc:
            self._buffer[:0] = batch
            self.log.error("eval shard write failed (kept for the next flush; a rerun redoes them): %s", exc)


# -------------------------------------------------------------------------------- report


def _share(n: int, d: int) -> float:
    return round(n / d, 4) if d else 0.0


def report_from(store: RunStore) -> dict[str, Any]:
    """The eval report, computed from every shard in `RUN/eval/` (so resumed runs add up)."""
    table = store.read_table(STAGE)
    if table is None or table.num_rows == 0:
        return {"questions": 0, "trajectories": 0, "accuracy": 0.0}
    rows = table.select(
        [
            "task_id",
            "rollout",
            "benchmark",
            "split",
            "correct",
            "status",
            "steps",
            "wall_s",
            "prompt_tokens",
            "completion_tokens",
        ]
    ).to_pylist()
    return summarise(rows)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy (overall, per benchmark, per benchmark/split), Avg@K and pass@K, turns, tools,
    format-valid turns, refused/failed shares, seconds per question, tokens."""
    by_task: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in rows:
        by_task[row["task_id"]].append(row)
    k = max(len(v) for v in by_task.values())
    turns = [s for r in rows for s in r["steps"]]
    calls = [s for s in turns if s["action"] == "tool_call"]
    statuses = collections.Counter(r["status"] for r in rows)
    tool_mix = collections.Counter(s["tool_name"] for s in calls)

    def accuracy(group: list[dict[str, Any]]) -> float:
        return _share(sum(bool(r["correct"]) for r in group), len(group))

    out: dict[str, Any] = {
        "questions": len(by_task),
        "trajectories": len(rows),
        "rollouts": k,
        "accuracy": accuracy(rows),
        "by_benchmark": {},
        "by_split": {},
        "mean_turns": round(len(turns) / len(rows), 3),
        "mean_tool_calls": round(len(calls) / len(rows), 3),
        "tool_mix": {name: _share(n, len(calls)) for name, n in tool_mix.most_common()},
        # a turn the strict format reads as it is (no repair, a tool call or an answer)
        "format_valid_turns": _share(
            sum(s["action"] != "invalid" and not s["repairs"] for s in turns), len(turns)
        ),
        # a turn the lenient reader could use (repaired or not)
        "readable_turns": _share(sum(s["action"] != "invalid" for s in turns), len(turns)),
        "valid_tool_calls": _share(sum(not s["error"] for s in calls), len(calls)),
        "answered": _share(statuses.get("answered", 0), len(rows)),
        "refused": _share(statuses.get("refused", 0), len(rows)),
        "failed": _share(len(rows) - statuses.get("answered", 0) - statuses.get("refused", 0), len(rows)),
        "statuses": dict(statuses),
        "seconds_per_question": round(sum(r["wall_s"] for r in rows) / len(rows), 3),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
    }
    groups: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
    for row in rows:
        groups[(row["benchmark"], "")].append(row)
        if row["split"]:
            groups[(row["benchmark"], row["split"])].append(row)
    for (bench, split), group in sorted(groups.items()):
        target = out["by_benchmark"] if not split else out["by_split"]
        target[bench if not split else f"{bench}/{split}"] = {"n": len(group), "accuracy": accuracy(group)}
    if k > 1:
        tasks = list(by_task.values())
        out[f"avg@{k}"] = round(sum(accuracy(t) for t in tasks) / len(tasks), 4)
        out[f"pass@{k}"] = _share(sum(any(r["correct"] for r in t) for t in tasks), len(tasks))
    return out


def _name(tool: str, width: int = 24) -> str:
    """A tool name as the table shows it: one line, cut (a weak model names tools with code)."""
    flat = " ".join(tool.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _mix(shares: dict[str, float], top: int = 4) -> str:
    """The `top` most used tools, the rest as `other`."""
    ranked = sorted(shares.items(), key=lambda kv: -kv[1])
    cells = [f"{_name(t)} {v:.0%}" for t, v in ranked[:top]]
    if rest := sum(v for _, v in ranked[top:]):
        cells.append(f"other {rest:.0%}")
    return ", ".join(cells) or "-"


def table_lines(reports: dict[str, dict[str, Any]]) -> list[str]:
    """Reports side by side (one column each): the figures a person compares."""
    rows = [
        ("questions", "questions", "{}"),
        ("accuracy", "accuracy", "{:.1%}"),
        ("format_valid_turns", "format-valid turns", "{:.1%}"),
        ("readable_turns", "readable turns", "{:.1%}"),
        ("valid_tool_calls", "valid tool calls", "{:.1%}"),
        ("mean_turns", "turns / question", "{:.2f}"),
        ("mean_tool_calls", "tool calls / question", "{:.2f}"),
        ("refused", "refused", "{:.1%}"),
        ("failed", "failed (no answer)", "{:.1%}"),
        ("seconds_per_question", "seconds / question", "{:.2f}"),
    ]
    names = list(reports)
    body: list[list[str]] = []
    for key, label, fmt in rows:
        body.append([label, *(fmt.format(r.get(key, 0)) if key in r else "-" for r in reports.values())])
    extra = sorted({k for r in reports.values() for k in r if k.startswith(("avg@", "pass@"))})
    for key in extra:
        body.append([key, *(f"{r[key]:.1%}" if key in r else "-" for r in reports.values())])
    mixes = [r.get("tool_mix", {}) for r in reports.values()]
    body.append(["tool mix", *(_mix(m) for m in mixes)])
    splits = sorted(
        {s for r in reports.values() for s in {**r.get("by_benchmark", {}), **r.get("by_split", {})}}
    )
    for split in splits:
        cells = []
        for r in reports.values():
            entry = {**r.get("by_benchmark", {}), **r.get("by_split", {})}.get(split)
            cells.append(f"{entry['accuracy']:.1%} ({entry['n']})" if entry else "-")
        body.append([f"  {split}", *cells])
    header = ["", *names]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    render = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()  # noqa: E731
    return [render(header), render(["-" * w for w in widths]), *(render(r) for r in body)]
