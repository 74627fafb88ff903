"""The R1V4 text format: parse/render identity on well-formed text, errors (not exceptions) otherwise."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.format import (
    Turn,
    parse_trajectory,
    parse_turn,
    render_observation,
    render_trajectory,
    render_turn,
)

# Text that may contain anything except our own closing tags (the renderer neutralises those).
texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
tool_names = st.sampled_from(["code", "image_search", "text_search", "web_visit"])


@st.composite
def trajectories(draw) -> list[Turn]:
    turns = [
        Turn(
            think=draw(texts),
            tool_name=draw(tool_names),
            arguments=draw(st.dictionaries(st.text(max_size=8), json_values, max_size=3)),
            observation=draw(texts),
        )
        for _ in range(draw(st.integers(0, 5)))
    ]
    turns.append(Turn(think=draw(texts), answer=draw(texts)))
    return turns


@settings(max_examples=300, deadline=None)
@given(trajectories())
def test_parse_then_render_is_identity(turns: list[Turn]) -> None:
    text = render_trajectory(turns)
    parsed = parse_trajectory(text)
    assert parsed.errors == []
    assert render_trajectory(parsed.turns) == text
    assert len(parsed.turns) == len(turns)
    for got, want in zip(parsed.turns, turns, strict=True):
        assert got.tool_name == want.tool_name
        assert got.arguments == want.arguments
    assert parsed.final_answer is not None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_parser_never_raises_on_arbitrary_text(text: str) -> None:
    result = parse_trajectory(text)
    assert isinstance(result.errors, list)
    parse_turn(text)


def test_closing_tag_inside_content_cannot_end_the_segment() -> None:
    page = "a page that mentions </observation> and <think> literally"
    text = render_turn("t", tool_name="web_visit", arguments={"urls": ["u"]}) + render_observation(page)
    text += render_turn("done", answer="x")
    parsed = parse_trajectory(text)
    assert parsed.errors == []
    assert "&lt;/observation&gt;" in parsed.turns[0].observation


CALL = '<tool_call>{"name": "code", "arguments": {"code": "print(1)"}}</tool_call>'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>looking" + CALL, "unclosed <think>"),
        ("<think>a</think><tool_call>{not json}</tool_call>", "bad tool_call JSON"),
        ('<think>a</think><tool_call>{"arguments": {}}</tool_call>', "missing string 'name'"),
        (
            '<think>a</think><tool_call>{"name": "code", "arguments": [1]}</tool_call>',
            "must be a JSON object",
        ),
        ("<think>a</think>" + CALL + "<answer>7</answer>", "two actions in one turn"),
        (CALL + "<observation>1</observation><think>b</think><answer>1</answer>", "missing <think>"),
        ("<think>a</think>" + CALL + "<observation>x</observation>", "does not end with an <answer>"),
        ("<think>a</think><answer>1", "unclosed <answer>"),
        ("hello <think>a</think><answer>1</answer>", "stray text"),
        (
            "<think>a</think>" + CALL + "<think>b</think><answer>1</answer>",
            "tool_call without an <observation>",
        ),
    ],
)
def test_malformed_text_yields_format_errors(text: str, expected: str) -> None:
    result = parse_trajectory(text)
    assert any(expected in error for error in result.errors), result.errors


def test_parse_turn_reads_one_action_and_tolerates_whitespace() -> None:
    text = '<think>crop it</think>\n<tool_call>\n{"name": "code", "arguments": {"code": "x=1"}}\n</tool_call>'
    result = parse_turn(text)
    assert result.errors == []
    (turn,) = result.turns
    assert (turn.action, turn.tool_name, turn.arguments) == ("tool_call", "code", {"code": "x=1"})
    assert parse_turn("no tags at all").errors


def test_render_turn_requires_exactly_one_action() -> None:
    with pytest.raises(ValueError):
        render_turn("t")
    with pytest.raises(ValueError):
        render_turn("t", tool_name="code", answer="x")
    assert json.loads(
        render_turn("t", tool_name="code", arguments={"a": "é"})[len("<think>t</think><tool_call>") : -12]
    )
