"""What real teachers send that the first round missed (issue 25), through real HTTP and the
whole executor: leaked template tokens, a call cut at max_tokens in either protocol, a thinking
model served without a reasoning parser, replies without usage, a call quoted in the think, a
call at the end of the reasoning field, GLM's own call format, OpenRouter's reasoning_details.
Each test scripts a loopback server the way such a server answers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from filters.base import CheckContext
from filters.format_check import FormatCheck
from pipeline.commands.synth import _summary_line
from pipeline.config import FilterConfig
from stages.tools.registry import tool_table
from tests.fake_openai import completion
from tests.synth.test_synth_reply_shapes import CROP, _run, _turns

CALL = "<tool_call>" + json.dumps(CROP) + "</tool_call>"


def _crop_runs(trajectory) -> int:
    return sum(1 for s in trajectory.steps if s.observation_text and s.observation_text.startswith("Saved"))


def test_glm_box_and_end_of_turn_tokens_are_stripped_and_named(fake_teacher, tmp_path):
    def handler(body):
        if _turns(body) == 0:
            return completion(f"<think>Crop it.<|im_end|></think>{CALL}<|endoftext|>")
        return completion(
            "<think>It reads 1813.</think><answer><|begin_of_box|>1813<|end_of_box|></answer><|user|>"
        )

    trajectory, summary = _run(fake_teacher(handler), tmp_path)
    assert trajectory.final_answer == "1813" and trajectory.steps[-1].answer == "1813"
    assert trajectory.steps[0].think == "Crop it."
    assert all("special_tokens" in s.repairs for s in trajectory.steps)
    assert summary["executor"]["repairs.special_tokens"] == 2


@pytest.mark.parametrize("protocol", ["text", "native"])
def test_a_call_from_a_reply_cut_at_max_tokens_is_reasked_never_run(fake_teacher, tmp_path, protocol):
    cut = {"code": "crop = crop.resize"}  # json-repair would close it into valid JSON

    def handler(body):
        if body["messages"][-1]["role"] == "user" and "cut off" in str(body["messages"][-1]):
            return completion(f"<think>Crop.</think>{CALL}")  # the re-ask: the whole call
        if _turns(body) == 0:
            if protocol == "native":
                call = {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "code", "arguments": '{"code": "crop = crop.resize'},
                }
                return completion(
                    None, message={"reasoning_content": "Crop.", "tool_calls": [call]}, finish="length"
                )
            return completion(
                '<think>Crop.</think><tool_call>{"name": "code", "arguments": '
                + json.dumps(cut)
                + "}</tool_call>",
                finish="length",
            )
        return completion("<think>Done.</think><answer>x</answer>")

    overrides = {"teacher.tool_protocol": "native"} if protocol == "native" else {}
    trajectory, summary = _run(fake_teacher(handler), tmp_path, **overrides)
    assert trajectory.status == "answered"
    first = trajectory.steps[0]
    assert first.reasks == 1 and first.arguments_dict() == {"code": "crop"}
    assert _crop_runs(trajectory) == 1  # only the whole call ran
    assert summary["executor"]["cut_calls"] == 1 and summary["executor"]["reasks"] == 1


def test_a_thinking_model_without_a_reasoning_parser_is_normalised_not_repaired(fake_teacher, tmp_path):
    turns = 6  # more turns than filter.max_repairs (4): each one used to count as a repair

    def handler(body):
        n = _turns(body)
        if n < turns:
            return completion(f"Step {n}: crop again.\n</think>\n\n{CALL}")
        return completion("The crops agree.\n</think>\n\n<answer>x</answer>")

    trajectory, summary = _run(fake_teacher(handler), tmp_path, **{"synth.max_turns": 10})
    assert trajectory.status == "answered" and len(trajectory.steps) == turns + 1
    assert all(s.repairs == [] and s.normalisations == ["missing_think_open"] for s in trajectory.steps)
    assert trajectory.steps[0].think == "Step 0: crop again."
    assert summary["executor"]["repaired_turns"] == 0
    assert summary["executor"]["normalised_turns"] == turns + 1
    assert f"0 repaired turns, {turns + 1} normalised (server shape" in _summary_line(summary, {})
    verdict = FormatCheck().run(trajectory, CheckContext(config=FilterConfig(), tools=tool_table()))
    assert verdict.keep, verdict.reason


def test_replies_without_usage_are_counted_and_estimated(fake_teacher, tmp_path):
    def handler(body):
        text = (
            f"<think>Crop first.</think>{CALL}"
            if _turns(body) == 0
            else "<think>Done.</think><answer>x</answer>"
        )
        reply = completion(text)
        if _turns(body) == 0:
            del reply["usage"]
        return reply

    trajectory, summary = _run(fake_teacher(handler), tmp_path)
    first, last = trajectory.steps
    assert first.tokens_estimated and not last.tokens_estimated
    # 4 characters a token: the prompt holds the system prompt, the question and one image
    assert first.prompt_tokens > 100 and first.completion_tokens == -(
        -len(f"<think>Crop first.</think>{CALL}") // 4
    )
    assert last.prompt_tokens == 10  # measured replies keep the server's figures
    assert summary["executor"]["estimated_token_replies"] == 1
    assert summary["teacher"]["usage_missing"] == 1
    assert summary["teacher"]["estimated_tokens"] == first.prompt_tokens + first.completion_tokens
    assert "1 without usage (tokens estimated at 4 characters a token)" in _summary_line(summary, {})


@pytest.mark.parametrize("opening", ["<think>", ""])
def test_a_call_quoted_in_the_think_is_never_run(fake_teacher, tmp_path, opening):
    draft = json.dumps({"name": "code", "arguments": {"code": "print('draft')"}})

    def handler(body):
        if _turns(body) == 0:
            return completion(
                f"{opening}I could write <tool_call>{draft}</tool_call> but first think.</think>{CALL}"
            )
        return completion("<think>Done.</think><answer>x</answer>")

    trajectory, _ = _run(fake_teacher(handler), tmp_path)
    first = trajectory.steps[0]
    assert first.arguments_dict() == {"code": "crop"} and "draft" in first.think
    assert "action_in_reasoning" not in first.repairs


@pytest.mark.parametrize("protocol", ["text", "native"])
def test_a_call_at_the_end_of_the_reasoning_field_is_recovered(fake_teacher, tmp_path, protocol):
    def handler(body):
        if _turns(body) == 0:  # the call was made before </think>: the parser filed it as reasoning
            return completion("", reasoning=f"I should crop the corner.\n\n{CALL}\n")
        return completion("<think>Done.</think><answer>x</answer>")

    overrides = {"teacher.tool_protocol": "native"} if protocol == "native" else {}
    server = fake_teacher(handler)
    trajectory, _ = _run(server, tmp_path, **overrides)
    first = trajectory.steps[0]
    assert (first.action, first.tool_name, first.reasks) == ("tool_call", "code", 0)
    assert first.think == "I should crop the corner." and "action_in_reasoning" in first.repairs
    assert len(server.requests) == 2 and _crop_runs(trajectory) == 1


def test_glm_call_format_and_openrouter_reasoning_details(fake_teacher, tmp_path):
    glm = "<tool_call>code\n<arg_key>code</arg_key>\n<arg_value>crop</arg_value>\n</tool_call>"

    def handler(body):
        details: list[dict[str, Any]] = [
            {"type": "reasoning.encrypted", "data": "opaque"},
            {"type": "reasoning.summary", "summary": "I should crop."},
        ]
        if _turns(body) == 0:
            return completion(glm, message={"reasoning": None, "reasoning_details": details})
        return completion("<think>Done.</think><answer>x</answer>")

    trajectory, _ = _run(fake_teacher(handler), tmp_path)
    first = trajectory.steps[0]
    assert (first.think, first.tool_name, first.arguments_dict()) == (
        "I should crop.",
        "code",
        {"code": "crop"},
    )
    assert "xml_call_format" in first.repairs and "reasoning_field" in first.normalisations


def test_native_arguments_sent_as_an_object_are_a_normalisation(fake_teacher, tmp_path):
    def handler(body):
        if _turns(body) == 0:  # some servers (and OpenAI-compatible proxies) send the object itself
            call = {
                "id": "c1",
                "type": "function",
                "function": {"name": "code", "arguments": {"code": "crop"}},
            }
            return completion(
                None, message={"reasoning_content": "Crop.", "tool_calls": [call]}, finish="tool_calls"
            )
        return completion("<think>Done.</think><answer>x</answer>")

    trajectory, summary = _run(fake_teacher(handler), tmp_path, **{"teacher.tool_protocol": "native"})
    first = trajectory.steps[0]
    assert first.arguments_dict() == {"code": "crop"} and first.repairs == []
    assert first.normalisations == ["arguments_as_object", "reasoning_field"]
    assert summary["executor"]["normalisations.arguments_as_object"] == 1
