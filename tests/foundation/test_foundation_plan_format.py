"""The planner format validator: schema, step count, tools, placeholders."""

from __future__ import annotations

import json

from pipeline.plan_format import parse_plan, placeholders, render_plan, validate_plan


def step(description: str, tool: str, **parameters: str) -> dict:
    return {"description": description, "tool_name": tool, "parameters": parameters}


GOOD = [
    step("Reverse-search the photo", "image_search", image_path="image_0.png"),
    step(
        "Search for [Person identified in Step 1]",
        "text_search",
        query="[Person identified in Step 1] birthplace",
    ),
    step("Read the page", "web_visit", url="[URL found in Step 2]"),
    step("Verify the birthplace", "none"),
]


def test_valid_plan_round_trips_through_render() -> None:
    steps, errors = validate_plan(GOOD)
    assert errors == []
    again, errors = parse_plan("Here is the plan:\n```json\n" + render_plan(steps) + "\n```")
    assert errors == [] and again == steps


def test_placeholder_must_point_to_an_earlier_step() -> None:
    bad = [GOOD[0], step("Use [Result from Step 3]", "text_search", query="[Result from Step 2]"), GOOD[3]]
    _, errors = validate_plan(bad)
    assert any("[Result from Step 3]" in e for e in errors)
    assert any("[Result from Step 2]" in e for e in errors)
    assert placeholders("see [Entity from step 12] and [x]") == [("[Entity from step 12]", 12)]


def test_schema_errors_are_reported_not_raised() -> None:
    assert validate_plan({"steps": []})[1] == ["plan must be a JSON array of steps"]
    _, errors = validate_plan([GOOD[3]])
    assert any("1 steps" in e for e in errors)
    _, errors = validate_plan([*GOOD[:3]] * 4)
    assert any("12 steps" in e for e in errors) and any("last step" in e for e in errors)
    _, errors = validate_plan([step("x", "browse", url="u"), {"description": "y"}, GOOD[3]])
    assert any("'browse'" in e for e in errors) and any("missing" in e for e in errors)
    _, errors = validate_plan([step("x", "text_search", url="u"), GOOD[3]])
    assert any("text_search takes parameters ['query']" in e for e in errors)
    assert parse_plan("not json at all")[1][0].startswith("plan is not valid JSON")
    assert json.loads(render_plan(validate_plan(GOOD)[0]))[1]["parameters"]["query"].startswith("[Person")
