"""Typed records that flow between stages, each with one versioned Arrow schema.

Every record is a pydantic model (validation at the boundary) and its Arrow schema (what lands in
parquet) is derived from it by one set of rules (`arrow_type`), so the two cannot drift: str and
string literals are strings, int is int32 unless annotated `Int64`, float is float64, lists are
lists, nested records are structs. JSON-shaped payloads (tool arguments, plan parameters,
metadata) are stored as JSON text so the Arrow schema never depends on what a teacher wrote.

Image fields hold image *references* (sha256 hex of the bytes, see `pipeline.store.ImageStore`),
never bytes; exported shards embed bytes later.
"""

from __future__ import annotations

import hashlib
import json
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal, TypeVar

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

TASK_SCHEMA_VERSION = 1
PLAN_SCHEMA_VERSION = 2  # 2: repairs
#: 2: steps carry repairs, reasks, call_id, finish_reason; 3: no simulator truth; 4: steps carry
#: normalisations and tokens_estimated (older shards read with their defaults: none, measured)
TRAJECTORY_SCHEMA_VERSION = 4
VERDICT_SCHEMA_VERSION = 1

Category = Literal["perception", "search", "interleaved", "multihop", "general", "plan", "other"]
Mode = Literal["deepresearch", "general", "plan"]
TrajectoryStatus = Literal[
    "answered", "failed", "turn_limit", "token_limit", "imported", "refused", "truncated"
]

#: An int stored as int64 (token counters); every other int is stored as int32.
Int64 = Annotated[int, pa.int64()]


def canonical_json(value: Any) -> str:
    """One JSON spelling for hashing and storage: sorted keys, no ASCII escaping."""
    return _CANONICAL.encode(value)


# json.dumps with these options would build an encoder on every call
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def stable_hash(*parts: Any, length: int = 16) -> str:
    """Short, stable content hash used for ids (sha256 over canonical JSON)."""
    return hashlib.sha256(canonical_json(list(parts)).encode("utf-8")).hexdigest()[:length]


class Record(BaseModel):
    """Base for stored records: strict about unknown fields, cheap to copy."""

    model_config = ConfigDict(extra="forbid", validate_assignment=False)


# --------------------------------------------------------------------------------------- Task


class Task(Record):
    """A question about one or more images, with an optional gold answer and gold solution."""

    task_id: str = ""
    source: str = "unknown"
    source_id: str = ""
    category: Category = "other"
    mode: Mode = "deepresearch"
    question: str
    images: list[str] = Field(default_factory=list)
    gold_answer: str | None = None
    answer_aliases: list[str] = Field(default_factory=list)
    gold_plan: str | None = None  # JSON text in the planner format
    gold_path: str | None = None  # JSON text: gold solution steps (tool, arguments, expect), if known
    gold_region: list[float] | None = None  # [x0, y0, x1, y1] in pixels of images[0]
    meta: str = "{}"  # JSON text
    schema_version: int = TASK_SCHEMA_VERSION

    def model_post_init(self, _context: Any) -> None:
        if not self.task_id:
            self.task_id = task_id_for(self.question, self.images, self.gold_answer, self.source)


def task_id_for(question: str, images: Sequence[str], gold_answer: str | None, source: str) -> str:
    """A task id hashes its content, so the same seed always gets the same id."""
    return "t-" + stable_hash(source, question.strip(), list(images), gold_answer)


# --------------------------------------------------------------------------------------- Plan


class PlanStep(Record):
    """One planner step: R1V4's `{description, tool_name, parameters}`."""

    description: str
    tool_name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class Plan(Record):
    """The teacher's plan for a task, valid or not (invalid plans are recorded with errors)."""

    task_id: str
    steps: list[PlanStep] = Field(default_factory=list)
    raw_text: str = ""
    repairs: list[str] = Field(default_factory=list)  # slips the lenient reader mended (pipeline.lenient)
    valid: bool = False
    errors: list[str] = Field(default_factory=list)
    attempts: int = 0
    teacher: str = ""
    prompt_version: str = ""
    schema_version: int = PLAN_SCHEMA_VERSION


# ------------------------------------------------------------------------- Observation / Step


class Observation(Record):
    """What a tool returned. A failure is an observation with `error` set, never an exception.

    `images` are files the tool has already read through `pipeline.images` (guarded decode), so
    the executor stores them without decoding them again.
    """

    text: str = ""
    images: list[str] = Field(default_factory=list)
    error: str | None = None
    latency_s: float = 0.0
    meta: dict[str, Any] = Field(default_factory=dict)


class Step(Record):
    """One assistant turn and, for a tool call, what the tool returned.

    `arguments` is JSON text. `raw` is what the teacher sent for the turn, kept for audit: its
    content as is, or (when a server split the turn into reasoning, content and native tool
    calls) those parts as JSON. Nothing downstream renders from `raw`: history, SFT samples and
    exports render the parsed parts canonically. `repairs` names every slip the lenient reader
    mended (`pipeline.format.REPAIRS`); `normalisations` names the lossless reshapings of how
    the server sent the turn (`pipeline.format.NORMALISATIONS`), which are no slip of the model;
    `reasks` counts replies the teacher was asked to redo. `tokens_estimated`: the server sent
    no `usage`, so the token counts are the client's estimate (`pipeline.teacher.usage`).
    """

    index: int
    think: str = ""
    action: Literal["tool_call", "answer", "invalid"] = "invalid"
    tool_name: str | None = None
    arguments: str | None = None
    answer: str | None = None
    raw: str = ""
    format_errors: list[str] = Field(default_factory=list)
    observation_text: str | None = None
    observation_images: list[str] = Field(default_factory=list)
    error: str | None = None  # tool error of the observation
    tool_latency_s: float = 0.0
    plan_step: int | None = None  # 1-based plan step this turn serves
    teacher_latency_s: float = 0.0
    prompt_tokens: Int64 = 0
    completion_tokens: Int64 = 0
    repairs: list[str] = Field(default_factory=list)
    reasks: int = 0
    call_id: str | None = None  # a native tool call's id (sent back with its result)
    finish_reason: str | None = None
    normalisations: list[str] = Field(default_factory=list)
    tokens_estimated: bool = False

    def arguments_dict(self) -> dict[str, Any]:
        """Arguments parsed from JSON text; {} when absent or unreadable."""
        return parse_arguments(self.arguments)


def parse_arguments(text: str | None) -> dict[str, Any]:
    """A call's JSON arguments text as an object; {} when absent, unreadable or not an object."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# --------------------------------------------------------------------------------- Trajectory


class Trajectory(Record):
    """One rollout of one task: the plan it followed, every step, and how it ended."""

    trajectory_id: str = ""
    task_id: str
    rollout: int = 0
    teacher: str = ""
    prompt_version: str = ""
    source: str = ""
    source_id: str = ""
    category: Category = "other"
    mode: Mode = "deepresearch"
    question: str
    images: list[str] = Field(default_factory=list)
    gold_answer: str | None = None
    answer_aliases: list[str] = Field(default_factory=list)
    gold_region: list[float] | None = None
    plan: str | None = None  # JSON text of the plan steps the executor saw
    plan_valid: bool | None = None
    steps: list[Step] = Field(default_factory=list)
    final_answer: str | None = None
    status: TrajectoryStatus = "answered"
    failure_reason: str | None = None
    format_errors: list[str] = Field(default_factory=list)
    prompt_tokens: Int64 = 0
    completion_tokens: Int64 = 0
    teacher_calls: int = 0
    wall_s: float = 0.0
    meta: str = "{}"
    schema_version: int = TRAJECTORY_SCHEMA_VERSION

    def model_post_init(self, _context: Any) -> None:
        if not self.trajectory_id:
            self.trajectory_id = trajectory_id_for(
                self.task_id, self.rollout, self.teacher, self.prompt_version
            )

    @property
    def tool_calls(self) -> list[Step]:
        return [s for s in self.steps if s.action == "tool_call"]


def trajectory_id_for(task_id: str, rollout: int, teacher: str, prompt_version: str) -> str:
    """Task id + rollout index + teacher + prompt version: reruns land on the same id."""
    return f"{task_id}-r{rollout}-" + stable_hash(teacher, prompt_version, length=8)


# ------------------------------------------------------------------------------------ Verdict


class StepVerdict(Record):
    """A check's opinion of one step (index into `Trajectory.steps`; -1 for the whole)."""

    step: int
    ok: bool
    reason: str = ""


class Verdict(Record):
    """One check's result for one trajectory: keep or drop, with a reason on every drop."""

    trajectory_id: str
    check: str
    keep: bool
    score: float = 1.0
    reason: str = ""
    steps: list[StepVerdict] = Field(default_factory=list)
    schema_version: int = VERDICT_SCHEMA_VERSION


# ------------------------------------------------------------------------ Arrow conversions

R = TypeVar("R", bound=Record)

_SCALARS: dict[Any, pa.DataType] = {str: pa.string(), bool: pa.bool_(), int: pa.int32(), float: pa.float64()}


def arrow_type(annotation: Any, metadata: Sequence[Any] = ()) -> pa.DataType:
    """The Arrow type a field with this annotation is stored as: the one rule set for every record."""
    for item in metadata:  # `Int64` and any other Annotated[..., pa.DataType] choose their own
        if isinstance(item, pa.DataType):
            return item
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        inner, *extra = typing.get_args(annotation)
        return arrow_type(inner, extra)
    if origin in (typing.Union, types.UnionType):  # Optional: Arrow fields are nullable anyway
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"no Arrow rule for the union {annotation!r}: store it as JSON text")
        return arrow_type(args[0])
    if origin is list:
        (item,) = typing.get_args(annotation)
        return pa.list_(arrow_type(item))
    if origin is dict:  # canonical JSON text (`_to_row`)
        return pa.string()
    if origin is Literal and all(isinstance(v, str) for v in typing.get_args(annotation)):
        return pa.string()
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct(record_fields(annotation))
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    raise TypeError(f"no Arrow rule for {annotation!r}")


def record_fields(model: type[BaseModel]) -> list[pa.Field]:
    """A record's Arrow fields, in its field order."""
    return [
        pa.field(name, arrow_type(info.annotation, info.metadata))
        for name, info in model.model_fields.items()
    ]


def record_schema(model: type[Record], version: int) -> pa.Schema:
    """A record's versioned Arrow schema (its name and version in the schema metadata)."""
    return pa.schema(
        record_fields(model), metadata={"trajforge.record": model.__name__, "trajforge.version": str(version)}
    )


TASK_ARROW = record_schema(Task, TASK_SCHEMA_VERSION)
PLAN_ARROW = record_schema(Plan, PLAN_SCHEMA_VERSION)
TRAJECTORY_ARROW = record_schema(Trajectory, TRAJECTORY_SCHEMA_VERSION)
VERDICT_ARROW = record_schema(Verdict, VERDICT_SCHEMA_VERSION)

ARROW_SCHEMAS: dict[type[Record], pa.Schema] = {
    Task: TASK_ARROW,
    Plan: PLAN_ARROW,
    Trajectory: TRAJECTORY_ARROW,
    Verdict: VERDICT_ARROW,
}


def _to_row(record: Record) -> dict[str, Any]:
    row = record.model_dump()
    if isinstance(record, Plan):
        row["steps"] = [{**s, "parameters": canonical_json(s["parameters"])} for s in row["steps"]]
    return row


def _from_row(model: type[R], row: dict[str, Any]) -> R:
    if model is Plan:
        row = {
            **row,
            "steps": [{**s, "parameters": json.loads(s["parameters"] or "{}")} for s in row["steps"]],
        }
    return model.model_validate(row)


def to_table(records: Iterable[Record], model: type[Record]) -> pa.Table:
    """Records of one type -> an Arrow table with that type's versioned schema."""
    return pa.Table.from_pylist([_to_row(r) for r in records], schema=ARROW_SCHEMAS[model])


def from_table(table: pa.Table, model: type[R]) -> list[R]:
    """Arrow table (or the columns of it this version knows) -> records."""
    known = [name for name in ARROW_SCHEMAS[model].names if name in table.column_names]
    return [_from_row(model, row) for row in table.select(known).to_pylist()]
