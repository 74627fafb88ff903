"""The Arrow schemas written beside the pydantic records cannot drift from them: same field
names, in the same order, and an Arrow type of the same kind for every field (nested records
as structs, lists as lists), checked all the way down."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import pyarrow as pa
import pytest
from pydantic import BaseModel

from pipeline.schema import ARROW_SCHEMAS, Record

SCALARS: dict[type, Any] = {
    str: pa.types.is_string,
    bool: pa.types.is_boolean,
    int: pa.types.is_integer,
    float: pa.types.is_floating,
}


def _strip_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        assert len(args) == 1, f"unions other than Optional need an explicit rule: {annotation}"
        return args[0]
    return annotation


def drift(model: type[BaseModel], fields: list[pa.Field], where: str) -> list[str]:
    """Every disagreement between a pydantic model and the Arrow fields meant to store it."""
    names = list(model.model_fields)
    arrow = {f.name: f.type for f in fields}
    if names != [f.name for f in fields]:
        return [f"{where}: fields {names} vs Arrow {[f.name for f in fields]}"]
    problems: list[str] = []
    for name, info in model.model_fields.items():
        problems += _type_drift(_strip_optional(info.annotation), arrow[name], f"{where}.{name}")
    return problems


def _type_drift(annotation: Any, arrow_type: pa.DataType, where: str) -> list[str]:
    origin = typing.get_origin(annotation)
    if origin is list:
        if not pa.types.is_list(arrow_type):
            return [f"{where}: a list stored as {arrow_type}"]
        (item,) = typing.get_args(annotation)
        return _type_drift(_strip_optional(item), arrow_type.value_type, f"{where}[]")
    if origin is Literal:
        kinds = {type(v) for v in typing.get_args(annotation)}
        return [] if kinds == {str} and pa.types.is_string(arrow_type) else [f"{where}: {arrow_type}"]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not pa.types.is_struct(arrow_type):
            return [f"{where}: a record stored as {arrow_type}"]
        return drift(annotation, list(arrow_type), where)
    if origin is dict:  # stored as canonical JSON text (pipeline.schema._to_row)
        return [] if pa.types.is_string(arrow_type) else [f"{where}: a dict stored as {arrow_type}"]
    check = SCALARS.get(annotation)
    if check is None:
        return [f"{where}: no rule for {annotation}"]
    return [] if check(arrow_type) else [f"{where}: {annotation.__name__} stored as {arrow_type}"]


@pytest.mark.parametrize("model", list(ARROW_SCHEMAS), ids=lambda m: m.__name__)
def test_arrow_schema_matches_the_model(model: type[Record]) -> None:
    assert drift(model, list(ARROW_SCHEMAS[model]), model.__name__) == []


def test_drift_is_caught() -> None:
    class Probe(Record):
        name: str
        tags: list[int]

    good = [pa.field("name", pa.string()), pa.field("tags", pa.list_(pa.int32()))]
    assert drift(Probe, good, "Probe") == []
    assert drift(Probe, good[:1], "Probe")  # a field missing from the Arrow side
    assert drift(Probe, [good[0], pa.field("tags", pa.list_(pa.string()))], "Probe")  # wrong item type
