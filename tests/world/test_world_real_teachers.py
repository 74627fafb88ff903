"""The world's teacher styles that imitate what real teachers send (issue 25), over real HTTP
with the unmodified openai client, each read back by the one lenient reader: a thinking model
without a reasoning parser, leaked template tokens, two calls in a turn, a call made before the
think closed, a draft call quoted in the think, replies without usage, judges that answer in a
sentence or not at all the first time, 503s and dropped connections, and `mixed`."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from test_world_styles import TOOLS, _executor, _gold, _task, client, server, style  # noqa: F401

from pipeline.format import read_reply
from world import WorldServer
from world.knobs import Knobs, TeacherStyle, clustered
from world.oracle import Reply
from world.style import (
    BOX_CLOSE,
    BOX_OPEN,
    DRAFT_CALL,
    END_TOKENS,
    JUDGE_VAGUE,
    SERVER_SHAPES,
    shape,
)


def _ask(client: openai.OpenAI, task, **request):  # noqa: F811
    return client.chat.completions.create(model="oracle", messages=_executor(task), seed=3, **request)


def _read(message) -> object:
    extra = message.model_extra or {}
    calls = [
        {"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
        for c in message.tool_calls or []
    ]
    reasoning = extra.get("reasoning_content") or extra.get("reasoning") or ""
    return read_reply(message.content, reasoning=reasoning, tool_calls=calls).turns[0]


def test_a_thinking_model_without_a_parser_opens_inside_the_think(server, client, small_world: Path) -> None:  # noqa: F811
    style(server, think_in_prompt=True)
    task = _task(small_world, "multihop")
    gold = _gold(task)[0]
    content = _ask(client, task).choices[0].message.content
    assert content.startswith(gold["think"]) and "<think>" not in content and "</think>" in content
    turn = _read(_ask(client, task).choices[0].message)
    assert (turn.tool_name, turn.arguments, turn.repairs) == (gold["tool_name"], gold["arguments"], [])
    assert turn.normalisations == ["missing_think_open"]


@pytest.mark.parametrize("protocol", ["text", "native"])
def test_end_of_turn_tokens_and_two_calls(server, client, small_world: Path, protocol: str) -> None:  # noqa: F811
    style(server, special_tokens=1.0, two_calls=1.0, tool_protocol=protocol)
    task = _task(small_world, "multihop")
    gold = _gold(task)[0]
    message = _ask(client, task, tools=TOOLS).choices[0].message
    assert any((message.content or "").endswith(token) for token in END_TOKENS)
    if protocol == "native":
        assert len(message.tool_calls) == 2
    else:
        assert message.content.count("<tool_call>") == 2
    turn = _read(message)
    assert (turn.tool_name, turn.arguments) == (gold["tool_name"], gold["arguments"])
    assert {"special_tokens", "extra_actions"} <= set(turn.repairs)


def test_glm_boxes_its_final_answer() -> None:
    turn = "<think>It reads 1813.</think><answer>1813</answer>"
    out = shape(Reply(turn, role="executor"), {"messages": []}, TeacherStyle(special_tokens=1.0), "s")
    assert out.text("content") == f"<think>It reads 1813.</think><answer>{BOX_OPEN}1813{BOX_CLOSE}</answer>"
    (read,) = read_reply(out.text("content")).turns
    assert read.answer == "1813" and read.repairs == ["special_tokens"]


@pytest.mark.parametrize("field", ["reasoning_content", "none"])
def test_a_call_made_before_the_think_closed(server, client, small_world: Path, field: str) -> None:  # noqa: F811
    style(server, reasoning_only=1.0, reasoning_field=field)
    task = _task(small_world, "multihop")
    gold = _gold(task)[0]
    message = _ask(client, task).choices[0].message
    if field == "none":
        assert message.content.rstrip().endswith("</tool_call></think>")
    else:
        assert not (message.content or "").strip() and message.model_extra[field].rstrip().endswith(
            "</tool_call>"
        )
    turn = _read(message)
    assert (turn.tool_name, turn.arguments, turn.think) == (
        gold["tool_name"],
        gold["arguments"],
        gold["think"],
    )
    assert "action_in_reasoning" in turn.repairs


def test_a_draft_call_quoted_in_the_think_is_not_the_action(server, client, small_world: Path) -> None:  # noqa: F811
    style(server, quoted_call=1.0)
    task = _task(small_world, "multihop")
    gold = _gold(task)[0]
    message = _ask(client, task).choices[0].message
    assert json.dumps(DRAFT_CALL["arguments"]) in message.content
    turn = _read(message)
    assert (turn.tool_name, turn.arguments) == (gold["tool_name"], gold["arguments"])


@pytest.mark.parametrize("stream", [False, True])
def test_replies_without_usage(server, client, small_world: Path, stream: bool) -> None:  # noqa: F811
    style(server, no_usage=1.0)
    task = _task(small_world, "multihop")
    if stream:
        chunks = list(
            client.chat.completions.create(
                model="oracle", messages=_executor(task), stream=True, stream_options={"include_usage": True}
            )
        )
        assert chunks and all(c.usage is None for c in chunks)
    else:
        assert _ask(client, task).usage is None


def test_judges_that_answer_in_a_sentence_or_not_at_all(server, client, small_world: Path) -> None:  # noqa: F811
    task = _task(small_world, "multihop")
    case = json.dumps({"question": task.question, "gold_answer": "7", "predicted": "7"})
    judge = [
        {"role": "system", "content": "Decide whether the prediction is right."},
        {"role": "user", "content": case},
    ]
    style(server, judge_sentence=1.0)
    said = client.chat.completions.create(model="oracle", messages=judge).choices[0].message.content
    assert said.startswith("Yes, ") and "{" not in said
    style(server, judge_vague=1.0)
    said = client.chat.completions.create(model="oracle", messages=judge).choices[0].message.content
    assert said == JUDGE_VAGUE
    again = [
        *judge,
        {"role": "assistant", "content": said},
        {"role": "user", "content": "Reply with the JSON only."},
    ]
    said = client.chat.completions.create(model="oracle", messages=again).choices[0].message.content
    assert json.loads(said)["verdict"] == "pass"


@pytest.mark.parametrize(
    ("kind", "error"), [("503", openai.InternalServerError), ("drop", openai.APIConnectionError)]
)
def test_overload_and_dropped_connections(small_world: Path, kind: str, error: type) -> None:
    with WorldServer(small_world, knobs=Knobs(errors={kind: 1.0})) as srv:
        client = openai.OpenAI(base_url=srv.openai_base_url, api_key="unused", max_retries=0)
        with pytest.raises(error) as caught:
            client.chat.completions.create(model="oracle", messages=[{"role": "user", "content": "hi"}])
        if kind == "503":
            assert caught.value.status_code == 503


def test_mixed_draws_the_server_shape_per_conversation(server, client, small_world: Path) -> None:  # noqa: F811
    style(server, mixed=True)
    task = _task(small_world, "multihop")
    seen = set()
    for seed in range(24):
        message = (
            client.chat.completions.create(model="oracle", messages=_executor(task), seed=seed)
            .choices[0]
            .message
        )
        extra = message.model_extra or {}
        field = next((f for f in ("reasoning_content", "reasoning") if extra.get(f)), "none")
        seen.add((field, field == "none" and not message.content.lstrip().startswith("<think>")))
        turn = _read(message)
        assert turn.tool_name is not None and turn.repairs == [], (seed, message)
    assert seen == set(SERVER_SHAPES)


def test_slips_cluster_once_a_conversation_has_slipped() -> None:
    rate, boost, turns = 0.1, 4.0, 12
    draws = [[clustered(rate, boost, "x", "s", f"q{c}", i) for i in range(turns)] for c in range(400)]
    after_slip = [d[i + 1] for d in draws for i in range(turns - 1) if d[i]]
    after_clean = [d[i + 1] for d in draws for i in range(turns - 1) if not d[i]]
    assert sum(after_clean) / len(after_clean) == pytest.approx(rate, abs=0.03)
    assert sum(after_slip) / len(after_slip) == pytest.approx(rate * boost, abs=0.08)
    assert draws == [[clustered(rate, boost, "x", "s", f"q{c}", i) for i in range(turns)] for c in range(400)]


def test_native_calls_from_a_thinking_model_without_a_parser(server, client, small_world: Path) -> None:  # noqa: F811
    style(server, think_in_prompt=True, tool_protocol="native")
    task = _task(small_world, "multihop")
    gold = _gold(task)[0]
    message = _ask(client, task, tools=TOOLS).choices[0].message
    assert message.content.startswith(gold["think"]) and "</think>" in message.content and message.tool_calls
    turn = _read(message)
    assert (turn.think, turn.tool_name, turn.arguments) == (
        gold["think"],
        gold["tool_name"],
        gold["arguments"],
    )
    assert turn.repairs == [] and turn.normalisations == ["missing_think_open"]
