"""Lenient reading of teacher text: every slip repaired and named, the unrepairable refused.

The canonical turn is what trajforge writes; each case below is the same turn as a real model
slips it. Reading a slipped turn must give the same parts (so rendering it gives back the
canonical text) and name exactly the repairs made.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.chat import trajectory_messages
from pipeline.format import NORMALISATIONS, REPAIRS, SLIPS, read_reply, read_trajectory, render_turn
from pipeline.schema import Step, Trajectory

CODE = "from PIL import Image\nimg = Image.open('/input/image_0.png')\nprint(img.size)"
CANONICAL = render_turn("Check the size.", tool_name="code", arguments={"code": CODE})
CALL = json.dumps({"name": "code", "arguments": {"code": CODE}})

SLIPPED = {
    "json_fence": f"<think>Check the size.</think><tool_call>```json\n{CALL}\n```</tool_call>",
    "raw_newline_in_string": (
        '<think>Check the size.</think><tool_call>{"name": "code", "arguments": {"code": "'
        + CODE.replace("'", "'")
        + '"}}</tool_call>'
    ),
    "trailing_comma": f"<think>Check the size.</think><tool_call>{CALL[:-1]},}}</tool_call>",
    "stray_brace": f"<think>Check the size.</think><tool_call>{CALL}</tool_call>}}",
    "arguments_as_string": "<think>Check the size.</think><tool_call>"
    + json.dumps({"name": "code", "arguments": json.dumps({"code": CODE})})
    + "</tool_call>",
    "parameters_key": "<think>Check the size.</think><tool_call>"
    + json.dumps({"name": "code", "parameters": {"code": CODE}})
    + "</tool_call>",
    "call_shape": "<think>Check the size.</think><tool_call>"
    + json.dumps({"type": "function", "function": {"name": "code", "arguments": {"code": CODE}}})
    + "</tool_call>",
    "prose_outside_tags": f"Sure. <think>Check the size.</think><tool_call>{CALL}</tool_call>",
    "closing_tag_opens_turn": f"</think>Check the size.</think><tool_call>{CALL}</tool_call>",
    "missing_think_open": f"Check the size.</think><tool_call>{CALL}</tool_call>",
    "missing_think_close": f"<think>Check the size.<tool_call>{CALL}</tool_call>",
    "missing_think_tags": f"Check the size.\n<tool_call>{CALL}</tool_call>",
    "untagged_tool_call": f"<think>Check the size.</think>\n```json\n{CALL}\n```",
    "unclosed_action": f"<think>Check the size.</think><tool_call>{CALL}",
    "own_observation": f"<think>Check the size.</think><tool_call>{CALL}</tool_call><observation>(2,2)</observation>",
    "extra_actions": f"<think>Check the size.</think><tool_call>{CALL}</tool_call><tool_call>{CALL}</tool_call>",
}


@pytest.mark.parametrize("kind", sorted(SLIPPED))
def test_each_slip_reads_as_the_canonical_turn_and_is_named(kind):
    parsed = read_reply(SLIPPED[kind])
    (turn,) = parsed.turns
    assert parsed.errors == []
    named = turn.normalisations if kind in NORMALISATIONS else turn.repairs
    assert kind in named and set(turn.repairs) <= set(REPAIRS)
    assert set(turn.normalisations) <= set(NORMALISATIONS)
    assert render_turn(turn.think, tool_name=turn.tool_name, arguments=turn.arguments) == CANONICAL


def test_canonical_text_needs_no_repair_and_every_slip_kind_is_a_repair_name():
    (turn,) = read_reply(CANONICAL).turns
    assert turn.repairs == [] and turn.arguments == {"code": CODE}
    # single_quotes has its own case below (the code here holds single quotes itself)
    assert set(SLIPS) <= set(REPAIRS) | set(NORMALISATIONS) and set(SLIPS) - {"single_quotes"} <= set(SLIPPED)
    assert not set(REPAIRS) & set(NORMALISATIONS)


def test_single_quoted_query_as_in_the_reports_figure():
    text = '<think>Search it.</think><tool_call>{"name": "text_search", "arguments": {"queries": [‘Meadow of Fugluth painter’]}}</tool_call>'
    (turn,) = read_reply(text).turns
    assert turn.arguments == {"queries": ["Meadow of Fugluth painter"]} and "single_quotes" in turn.repairs


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("I would crop the image now.", "no <tool_call> or <answer> found"),
        ("<think>Hmm.</think>", "no <tool_call> or <answer> found"),
        ("<think>x</think><tool_call>crop the image please</tool_call>", "unreadable tool_call JSON"),
        ('<think>x</think><tool_call>{"arguments": {"code": "1"}}</tool_call>', "no tool name"),
        (
            '<think>x</think><tool_call>{"name": "code", "arguments": "not json"}</tool_call>',
            "not a JSON object",
        ),
    ],
)
def test_what_cannot_be_repaired_is_an_error_to_reask(text, error):
    parsed = read_reply(text)
    assert parsed.turns[0].action == "invalid" or parsed.errors
    assert any(error in e for e in parsed.errors)


@pytest.mark.parametrize(
    "text",
    [
        f"<think>Check the size.</think><tool_call>{CALL}</tool_call><answer>big</answer>",
        f"<think>Check the size.</think><answer>big</answer><tool_call>{CALL}</tool_call>",
    ],
)
def test_a_turn_that_calls_a_tool_and_answers_is_an_error_not_a_repair(text):
    """The answer was written before the observation came back: a defect to re-ask (synth) or
    drop (import), never a slip the reader mends by keeping the first action."""
    parsed = read_reply(text)
    assert any("calls a tool and answers" in e for e in parsed.errors)
    native = read_reply(
        "<think>x</think><answer>big</answer>", tool_calls=[{"name": "code", "arguments": "{}"}]
    )
    assert any("calls a tool and answers" in e for e in native.errors)


def test_reasoning_field_and_native_calls():
    (turn,) = read_reply("\n\n<answer>42</answer>", reasoning="It reads 42.").turns
    assert (turn.think, turn.answer, turn.repairs) == ("It reads 42.", "42", [])
    assert turn.normalisations == ["reasoning_field"]
    calls = [
        {"id": "a", "name": "code", "arguments": json.dumps({"code": CODE})},
        {"id": "b", "name": "code", "arguments": "{}"},
    ]
    (turn,) = read_reply(None, reasoning="Check the size.", tool_calls=calls).turns
    assert render_turn(turn.think, tool_name=turn.tool_name, arguments=turn.arguments) == CANONICAL
    assert turn.repairs == ["extra_actions"]  # the second call is dropped, and said
    parsed = read_reply("", tool_calls=[{"id": "a", "name": "code", "arguments": "{'code': 1"}])
    assert parsed.turns[0].arguments == {"code": 1} and parsed.errors == []


# what the R1V4 report's own figures show (R1V4-REFERENCE.md): `</think>` opening the last
# turn, a stray `}` after `</tool_call>`, code with real line breaks, a single-quoted query
REPORT_STYLE = (
    "<think>I should zoom in on the sign first.</think>"
    '<tool_call>{"name": "code", "arguments": {"code": "from PIL import Image\nimg = Image.open(\'/input/image_0.png\')\n'
    "img.crop((0, 0, 10, 10)).save('/output/a.png')\"}} </tool_call>}"
    '<observation>{"result": "<sub-image 1>", "type": "code"}</observation>'
    "<think>Now search the name.</think>"
    '<tool_call>{"name": "text_search", "arguments": {"queries": [‘Meadow of Fugluth’]}}</tool_call>'
    '<observation>{"result": "1. Meadow of Fugluth ...", "type": "text_search"}</observation>'
    "</think>The page names the painter.</think><answer>Ola Fugluth</answer>"
)


def test_a_response_shaped_like_the_reports_figures_reads_every_step():
    parsed = read_trajectory(REPORT_STYLE)
    assert parsed.errors == []
    assert [t.action for t in parsed.turns] == ["tool_call", "tool_call", "answer"]
    assert parsed.turns[0].arguments["code"].count("\n") == 2
    assert parsed.turns[1].arguments == {"queries": ["Meadow of Fugluth"]}
    assert parsed.turns[2].answer == "Ola Fugluth"
    assert "stray_brace" in parsed.turns[0].repairs and "closing_tag_opens_turn" in parsed.turns[2].repairs


def test_import_reads_report_style_outputs(tmp_path: Path):
    from PIL import Image

    from pipeline.store import RunStore
    from stages.synth.imports.r1v4 import import_r1v4

    Image.new("RGB", (40, 30), (10, 20, 30)).save(tmp_path / "scene.png")
    record = {"id": "f6", "image": "scene.png", "question": "Who painted it?", "answer": "Ola Fugluth"}
    record["response"] = {"full_response": REPORT_STYLE}
    (tmp_path / "out.jsonl").write_text(json.dumps(record) + "\n")
    store = RunStore(tmp_path / "run")
    report = import_r1v4(tmp_path / "out.jsonl", store, progress=False)
    (trajectory,) = store.read_records("raw", Trajectory)
    assert report.imported == 1 and report.with_format_errors == 0
    assert [s.action for s in trajectory.steps] == ["tool_call", "tool_call", "answer"]
    assert trajectory.steps[0].repairs and trajectory.final_answer == "Ola Fugluth"


def test_repaired_and_clean_trajectories_render_byte_identical_training_text():
    """SFT samples and exports render from parsed parts: a slip never reaches training text."""

    def trajectory(replies: list[str]) -> Trajectory:
        steps = []
        for index, text in enumerate(replies):
            (turn,) = read_reply(text).turns
            steps.append(
                Step(
                    index=index,
                    raw=text,
                    think=turn.think or "",
                    action=turn.action,
                    tool_name=turn.tool_name,
                    arguments=json.dumps(turn.arguments) if turn.arguments is not None else None,
                    answer=turn.answer,
                    repairs=turn.repairs,
                    observation_text="(2, 2)" if turn.tool_name else None,
                )
            )
        return Trajectory(task_id="t", question="How big?", steps=steps, final_answer="2x2")

    answer = render_turn("It is 2x2.", answer="2x2")
    clean = trajectory([CANONICAL, answer])
    for slipped in SLIPPED.values():
        repaired = trajectory([slipped, "</think>It is 2x2.</think><answer>2x2</answer>}"])
        (first,) = read_reply(slipped).turns
        assert first.repairs or first.normalisations
        assert trajectory_messages(repaired, "S") == trajectory_messages(clean, "S")


# what real VLM teachers leak or write in their own formats (issue 25): each read as the
# canonical call, the repair or normalisation named
NATIVE_FORMS = {
    "glm_box_and_eot": (
        f"<think>Check the size.</think><tool_call>{CALL}</tool_call><|user|>",
        ["special_tokens"],
        [],
    ),
    "internlm_plugin_tokens": (
        "<think>Check the size.</think><|action_start|><|plugin|>\n"
        + json.dumps({"name": "code", "parameters": {"code": CODE}})
        + "<|action_end|><|im_end|>",
        ["special_tokens", "untagged_tool_call", "parameters_key"],
        [],
    ),
    "kimi_think_tokens": (
        f"\u25c1think\u25b7Check the size.\u25c1/think\u25b7<tool_call>{CALL}</tool_call>",
        [],
        ["kimi_think_tokens"],
    ),
    "glm_xml_call": (
        "<think>Check the size.</think><tool_call>code\n<arg_key>code</arg_key>\n<arg_value>"
        + CODE
        + "</arg_value>\n</tool_call>",
        ["xml_call_format"],
        [],
    ),
    "qwen3_coder_xml_call": (
        f"<think>Check the size.</think><tool_call>\n<function=code>\n<parameter=code>\n{CODE}\n</parameter>\n</function>\n</tool_call>",
        ["xml_call_format"],
        [],
    ),
    "llama_header_and_eot": (
        f"<|start_header_id|>assistant<|end_header_id|><think>Check the size.</think><tool_call>{CALL}</tool_call><|eot_id|>",
        ["special_tokens"],
        [],
    ),
}


@pytest.mark.parametrize("kind", sorted(NATIVE_FORMS))
def test_model_native_forms_read_as_the_canonical_turn(kind):
    text, repairs, normalisations = NATIVE_FORMS[kind]
    parsed = read_reply(text)
    (turn,) = parsed.turns
    assert parsed.errors == [] and turn.repairs == repairs and turn.normalisations == normalisations
    assert render_turn(turn.think, tool_name=turn.tool_name, arguments=turn.arguments) == CANONICAL


def test_a_trailing_sentencepiece_eos_is_a_token_but_html_in_an_argument_is_not():
    html = "print('<s>old</s> new')"
    text = (
        "<think>x</think><tool_call>"
        + json.dumps({"name": "code", "arguments": {"code": html}})
        + "</tool_call></s>"
    )
    (turn,) = read_reply(text).turns
    assert turn.arguments == {"code": html} and turn.repairs == ["special_tokens"]


def test_a_reasoning_field_that_keeps_its_tags_gives_the_inside():
    (turn,) = read_reply(f"<tool_call>{CALL}</tool_call>", reasoning="<think>Check the size.</think>\n").turns
    assert render_turn(turn.think, tool_name=turn.tool_name, arguments=turn.arguments) == CANONICAL
    assert turn.repairs == [] and turn.normalisations == ["reasoning_field"]
