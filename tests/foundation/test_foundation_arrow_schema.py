"""The Arrow schemas are derived from the pydantic records (`pipeline.schema.arrow_type`), so they
cannot drift from them; what these tests hold is the on-disk format: the derived schemas equal the
ones written to parquet so far (`data/arrow_schemas.txt`), and a field the rules cannot store is
an error at import, never a silently different column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipeline.schema import ARROW_SCHEMAS, Int64, Record, arrow_type, record_fields, record_schema

GOLDEN = Path(__file__).parent / "data" / "arrow_schemas.txt"


def _render(schemas: dict[type[Record], pa.Schema]) -> str:
    parts = []
    for model, schema in schemas.items():
        parts += [f"## {model.__name__}", schema.to_string(show_schema_metadata=True)]
    return "\n".join(parts) + "\n"


def test_derived_schemas_are_the_stored_format() -> None:
    """A change here changes what existing shards mean: bump the record's *_SCHEMA_VERSION (and
    teach readers the old one) before regenerating the golden file."""
    assert _render(ARROW_SCHEMAS) == GOLDEN.read_text()


def test_rules_for_each_kind_of_field() -> None:
    class Inner(Record):
        flag: bool

    class Stored(Record):
        name: str
        count: int
        tokens: Int64 = 0
        ratio: float | None = None
        tags: list[int] = []
        inner: list[Inner] = []
        params: dict[str, Any] = {}

    class Unstorable(Stored):
        kind: Any = None  # no rule: must fail, not guess

    with pytest.raises(TypeError, match="no Arrow rule"):
        record_fields(Unstorable)

    schema = record_schema(Stored, 7)
    assert schema.types == [
        pa.string(),
        pa.int32(),
        pa.int64(),
        pa.float64(),
        pa.list_(pa.int32()),
        pa.list_(pa.struct([("flag", pa.bool_())])),
        pa.string(),  # JSON text
    ]
    assert schema.metadata == {b"trajforge.record": b"Stored", b"trajforge.version": b"7"}


def test_a_union_beyond_optional_has_no_rule() -> None:
    with pytest.raises(TypeError, match="union"):
        arrow_type(int | str)


def test_a_version_3_trajectory_shard_reads_with_the_new_step_fields_defaulted(tmp_path) -> None:
    """Version 4 added Step.normalisations and Step.tokens_estimated: shards written before
    (steps without them) still read, as steps with no normalisation and measured tokens."""
    import pyarrow.parquet as pq

    from pipeline.schema import TRAJECTORY_ARROW, Step, Trajectory, from_table

    def without_new(field: pa.Field) -> pa.Field:
        if field.name != "steps":
            return field
        struct = field.type.value_type
        kept = [struct.field(i) for i in range(struct.num_fields)]
        kept = [f for f in kept if f.name not in ("normalisations", "tokens_estimated")]
        return pa.field("steps", pa.list_(pa.struct(kept)))

    old = pa.schema([without_new(f) for f in TRAJECTORY_ARROW], metadata={b"trajforge.version": b"3"})
    step = Step(index=0, think="t", action="answer", answer="a").model_dump()
    del step["normalisations"], step["tokens_estimated"]
    row = Trajectory(task_id="t", question="q").model_dump() | {"steps": [step], "schema_version": 3}
    pq.write_table(pa.Table.from_pylist([row], schema=old), tmp_path / "old.parquet")
    (read,) = from_table(pq.read_table(tmp_path / "old.parquet"), Trajectory)
    assert read.steps[0].normalisations == [] and read.steps[0].tokens_estimated is False
    assert read.steps[0].answer == "a"
