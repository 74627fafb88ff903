"""The planner format validator: schema, step count, tools, placeholders."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.plan_format import parse_plan, placeholders, read_plan, render_plan, validate_plan
from pipeline.schema import PlanStep
from stages.tools.registry import tool_table

TOOLS = tool_table()


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
    steps, errors = validate_plan(GOOD, TOOLS)
    assert errors == []
    again, errors = parse_plan("Here is the plan:\n```json\n" + render_plan(steps) + "\n```", TOOLS)
    assert errors == [] and again == steps


def test_placeholder_must_point_to_an_earlier_step() -> None:
    bad = [GOOD[0], step("Use [Result from Step 3]", "text_search", query="[Result from Step 2]"), GOOD[3]]
    _, errors = validate_plan(bad, TOOLS)
    assert any("[Result from Step 3]" in e for e in errors)
    assert any("[Result from Step 2]" in e for e in errors)
    assert placeholders("see [Entity from step 12] and [x]") == [("[Entity from step 12]", 12)]


def test_schema_errors_are_reported_not_raised() -> None:
    assert validate_plan({"steps": []}, TOOLS)[1] == ["plan must be a JSON array of steps"]
    _, errors = validate_plan([GOOD[3]], TOOLS)
    assert any("1 steps" in e for e in errors)
    _, errors = validate_plan([*GOOD[:3]] * 4, TOOLS)
    assert any("12 steps" in e for e in errors) and any("last step" in e for e in errors)
    _, errors = validate_plan([step("x", "browse", url="u"), {"description": "y"}, GOOD[3]], TOOLS)
    assert any("'browse'" in e for e in errors) and any("missing" in e for e in errors)
    _, errors = validate_plan([step("x", "text_search", url="u"), GOOD[3]], TOOLS)
    assert any("text_search takes parameters ['query']" in e for e in errors)
    assert parse_plan("not json at all", TOOLS)[1][0].startswith("plan is not valid JSON")
    assert json.loads(render_plan(validate_plan(GOOD, TOOLS)[0]))[1]["parameters"]["query"].startswith(
        "[Person"
    )


def test_plan_replies_as_real_planners_write_them() -> None:
    """Thinking aloud before the array, a fence, a trailing comma: read (the last plan-like array
    wins, placeholders inside strings never count as arrays); each repair named."""
    body = render_plan(validate_plan(GOOD, TOOLS)[0])
    with_comma = body[: body.rindex("}")] + "},\n]"
    reply = (
        "The photo shows a person; I need [Person identified in Step 1] first. A draft: [1, 2].\n"
        "Let me format this properly as a JSON array.\n```json\n"
        + with_comma
        + "\n```\nThis plan verifies at the end."
    )
    read = read_plan(reply)
    assert read.ok and read.value == GOOD
    assert {"prose_outside_json", "trailing_comma"} <= set(read.repairs)
    assert read_plan(body).repairs == [] and read_plan("```json\n" + body + "\n```").repairs == ["json_fence"]
    steps, errors = parse_plan(reply, TOOLS)
    assert errors == [] and [s.tool_name for s in steps] == [
        "image_search",
        "text_search",
        "web_visit",
        "none",
    ]


def test_numbered_list_plan_is_an_error_that_says_the_format() -> None:
    """R1V4's Figure 4: the planner promises JSON, then writes a numbered list."""
    reply = (
        "I'll format this properly as a JSON array.\n"
        '1. Reverse-search the photo: image_search, image_path = "image_0.png"\n'
        '2. Search [Person identified in Step 1]: text_search, query = "[Person identified in Step 1] birthplace"\n'
        "3. Verify: none"
    )
    steps, errors = parse_plan(reply, TOOLS)
    assert steps == [] and len(errors) == 1
    assert (
        "numbered list" in errors[0]
        and "JSON array of step objects" in errors[0]
        and '"tool_name"' in errors[0]
    )


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=16,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.text(), st.sampled_from(["text_search", "none"]), st.dictionaries(st.text(), _JSON)),
        max_size=5,
    )
)
def test_render_plan_is_exactly_the_stdlib_indented_dump(steps) -> None:
    plan = [PlanStep(description=d, tool_name=t, parameters=p) for d, t, p in steps]
    expected = json.dumps([s.model_dump() for s in plan], ensure_ascii=False, indent=2)
    assert render_plan(plan) == expected


def test_render_plan_falls_back_for_keys_that_are_not_strings() -> None:
    plan = [PlanStep(description="d", tool_name="code", parameters={"k": {1: "a", 2.5: [True, None]}})]
    assert render_plan(plan) == json.dumps([s.model_dump() for s in plan], ensure_ascii=False, indent=2)
