"""Every reply shape real servers send, through real HTTP and the whole executor.

Reasoning fields (vLLM/SGLang `reasoning_content`, OpenRouter `reasoning`), native tool calls
with `tool_call_id` round trips, streaming deltas, refusals, truncation, stop sequences,
slips and re-asks: each test scripts a loopback server the way such a server answers and
checks what the run recorded and what the teacher was sent back.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from pipeline.schema import Trajectory
from stages.synth.runner import run_synth
from tests.synth.conftest import completion, fake_tools
from tests.synth.test_synth_runner import make_run

CROP = {"name": "code", "arguments": {"code": "crop"}}


def _turns(body: dict[str, Any]) -> int:
    return sum(1 for m in body["messages"] if m["role"] == "assistant")


def _run(server, tmp_path, **overrides) -> tuple[Trajectory, dict[str, Any]]:
    sets = {"synth.rollouts": 1, "synth.plan": False, **overrides}
    cfg, store, _ = make_run(tmp_path, n_tasks=1, **sets)
    summary = run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    (trajectory,) = store.read_records("raw", Trajectory)
    return trajectory, summary


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_field_becomes_the_think_and_history_is_canonical(fake_teacher, tmp_path, field):
    def handler(body):
        if _turns(body) == 0:
            return completion(
                "\n\n<tool_call>" + json.dumps(CROP) + "</tool_call>", message={field: "I should crop first."}
            )
        return completion("\n\n<answer>x</answer>", message={field: "The crop shows it."})

    server = fake_teacher(handler)
    trajectory, _ = _run(server, tmp_path)
    assert trajectory.status == "answered" and trajectory.final_answer == "x"
    first, last = trajectory.steps
    assert (first.think, first.tool_name, first.repairs) == ("I should crop first.", "code", [])
    assert last.think == "The crop shows it."
    assert json.loads(first.raw)["reasoning"] == "I should crop first."  # kept for audit, as sent
    sent_back = server.requests[-1]["messages"][2]
    assert sent_back == {
        "role": "assistant",
        "content": '<think>I should crop first.</think><tool_call>{"name": "code", "arguments": {"code": "crop"}}</tool_call>',
    }


@pytest.mark.parametrize("stream", [False, True])
def test_native_tool_calls_round_trip_with_their_ids(fake_teacher, tmp_path, stream):
    call_id = "call_7f3a9c"

    def handler(body):
        assert body["tools"][0]["type"] == "function" and body["tools"][0]["function"]["name"] == "code"
        assert body.get("stream", False) is stream
        if _turns(body) == 0:
            message = {
                "reasoning_content": "Crop the corner.",
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": "code", "arguments": '{"code": "crop"}'},
                    }
                ],
            }
            if not stream:
                return completion(None, message=message, finish="tool_calls")
            base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "fake"}

            def chunk(delta, finish=None):
                return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

            return [
                chunk({"role": "assistant", "content": None}),
                chunk({"reasoning_content": "Crop the "}),
                chunk({"reasoning_content": "corner."}),
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": call_id,
                                "type": "function",
                                "function": {"name": "code", "arguments": ""},
                            }
                        ]
                    }
                ),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"code": '}}]}),
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"crop"}'}}]}),
                chunk({}, "tool_calls"),
                {
                    **base,
                    "choices": [],
                    "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
                },
            ]
        messages = body["messages"]
        assistant, tool, images = messages[2], messages[3], messages[4]
        assert assistant["tool_calls"][0]["id"] == call_id and assistant["content"] == "Crop the corner."
        assert tool["role"] == "tool" and tool["tool_call_id"] == call_id and "Saved" in tool["content"]
        assert images["role"] == "user" and images["content"][0]["type"] == "image_url"
        return completion("<think>Seen.</think><answer>x</answer>")

    server = fake_teacher(handler)
    trajectory, _ = _run(server, tmp_path, **{"teacher.tool_protocol": "native", "teacher.stream": stream})
    assert trajectory.status == "answered", trajectory.failure_reason
    step = trajectory.steps[0]
    assert (step.think, step.tool_name, step.arguments_dict(), step.call_id) == (
        "Crop the corner.",
        "code",
        {"code": "crop"},
        call_id,
    )
    assert trajectory.prompt_version.startswith("executor_deepresearch_native.")
    if stream:
        assert step.prompt_tokens == 7 and server.requests[0]["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    "message",
    [
        {"content": None, "refusal": "I'm sorry, but I can't help with that."},
        {"content": "I'm sorry, but I can't help with that."},
    ],
)
def test_a_refusal_ends_the_rollout_after_one_call(fake_teacher, tmp_path, message):
    server = fake_teacher(lambda body: completion(message.get("content"), message=message))
    trajectory, summary = _run(server, tmp_path)
    assert trajectory.status == "refused" and "can't help" in (trajectory.failure_reason or "")
    assert len(server.requests) == 1  # no retries, no re-asks
    assert summary["executor"]["refusals"] == 1


def test_truncated_turn_is_reasked_never_resent_byte_identical(fake_teacher, tmp_path):
    def handler(body):
        if _turns(body) == 0:
            return completion('<think>Crop.</think><tool_call>{"name": "code", "argu', finish="length")
        if (
            _turns(body) == 1
            and body["messages"][-1]["role"] == "user"
            and "cut off" in str(body["messages"][-1])
        ):
            return completion("<think>Crop.</think><tool_call>" + json.dumps(CROP) + "</tool_call>")
        return completion("<think>Done.</think><answer>x</answer>")

    server = fake_teacher(handler)
    trajectory, summary = _run(server, tmp_path)
    assert trajectory.status == "answered"
    bodies = [json.dumps(b, sort_keys=True) for b in server.requests]
    assert len(bodies) == len(set(bodies)) == 3
    assert trajectory.steps[0].reasks == 1 and trajectory.steps[0].tool_name == "code"
    assert summary["executor"]["truncations"] == 1 and summary["executor"]["reasks"] == 1
    # the history after a re-ask holds the good turn only, never the cut one
    assert "argu'" not in json.dumps(server.requests[-1]["messages"])


def test_truncation_policy_fail_ends_the_rollout_as_truncated(fake_teacher, tmp_path):
    server = fake_teacher(lambda body: completion("<think>I am still thinking about", finish="length"))
    trajectory, _ = _run(server, tmp_path, **{"teacher.on_truncated": "fail"})
    assert trajectory.status == "truncated" and len(server.requests) == 1


def test_slips_are_repaired_recorded_and_never_sent_back(fake_teacher, tmp_path):
    slipped = (
        "</think>The plate is small.</think><tool_call>```json\n"
        '{"name": "code", "parameters": {"code": "crop",}}\n```</tool_call>}'
        "<observation>made up</observation>"
    )

    def handler(body):
        assert body["stop"] == ["<observation>"]
        return completion(slipped if _turns(body) == 0 else "<think>Done.</think><answer>x</answer>")

    server = fake_teacher(handler)
    trajectory, summary = _run(server, tmp_path)
    step = trajectory.steps[0]
    assert step.tool_name == "code" and step.arguments_dict() == {"code": "crop"}
    assert set(step.repairs) >= {
        "json_fence",
        "trailing_comma",
        "parameters_key",
        "stray_brace",
        "own_observation",
        "closing_tag_opens_turn",
    }
    assert step.raw == slipped and step.format_errors == []
    assert server.requests[-1]["messages"][2]["content"] == (
        '<think>The plate is small.</think><tool_call>{"name": "code", "arguments": {"code": "crop"}}</tool_call>'
    )
    assert summary["executor"]["repaired_turns"] == 1
    assert summary["executor"]["repairs.json_fence"] == 1


def test_unreadable_reply_is_shown_back_then_becomes_an_unreadable_step(fake_teacher, tmp_path):
    def handler(body):
        last = body["messages"][-1]
        if last["role"] == "user" and "could not be used" in str(last["content"]):
            return completion("Still just prose, no tags at all.")
        if _turns(body) == 0:
            return completion("I would crop the image now.")
        return completion("<think>Giving up.</think><answer>x</answer>")

    server = fake_teacher(handler)
    trajectory, summary = _run(server, tmp_path, **{"synth.format_retries": 1})
    first = trajectory.steps[0]
    assert (
        first.action == "invalid"
        and first.reasks == 1
        and "no <tool_call> or <answer>" in first.format_errors[0]
    )
    reask = server.requests[1]["messages"][-1]["content"]
    assert "no <tool_call> or <answer> found" in reask and "<think>" in reask
    assert trajectory.status == "answered" and summary["executor"]["reasks"] == 1


def test_a_reply_that_calls_a_tool_and_answers_is_reasked(fake_teacher, tmp_path):
    """The answer came before the observation: synthesis re-asks instead of keeping the call."""

    def handler(body):
        last = body["messages"][-1]
        if last["role"] == "user" and "could not be used" in str(last["content"]):
            return completion("<think>Crop first.</think><tool_call>" + json.dumps(CROP) + "</tool_call>")
        if _turns(body) == 0:
            return completion(
                "<think>Crop; it is x.</think><tool_call>"
                + json.dumps(CROP)
                + "</tool_call><answer>x</answer>"
            )
        return completion("<think>The crop shows x.</think><answer>x</answer>")

    server = fake_teacher(handler)
    trajectory, summary = _run(server, tmp_path)
    first = trajectory.steps[0]
    assert first.reasks == 1 and first.tool_name == "code" and first.format_errors == []
    assert "calls a tool and answers" in str(server.requests[1]["messages"][-1]["content"])
    assert trajectory.status == "answered" and summary["executor"]["reasks"] == 1
