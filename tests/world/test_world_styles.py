"""Teacher styles over real HTTP with the unmodified openai client, and roles read by structure.

One module-scoped world server; each test sets the style it needs at POST /admin/knobs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from test_world_oracle import _crop_uri
from world_agent import data_uri

from pipeline.config import load_config
from pipeline.format import SLIPS, parse_turn, render_turn
from pipeline.lenient import last_object, read_json
from prompts import load_prompt
from world import Knobs, WorldServer, load_tasks
from world.knobs import TeacherStyle
from world.style import REFUSAL

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"the {name} tool",
            "parameters": {
                "type": "object",
                "properties": {key: schema},
                "required": [key],
            },
        },
    }
    for name, key, schema in [
        ("code", "code", {"type": "string"}),
        ("image_search", "image_paths", {"type": "array", "items": {"type": "string"}}),
        ("text_search", "queries", {"type": "array", "items": {"type": "string"}}),
        ("web_visit", "urls", {"type": "array", "items": {"type": "string"}}),
    ]
]


@pytest.fixture(scope="module")
def server(small_world: Path):
    with WorldServer(small_world) as srv:
        yield srv


@pytest.fixture
def client(server: WorldServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.openai_base_url, api_key="unused", max_retries=0)


def style(server: WorldServer, **fields: Any) -> None:
    """Set the whole teacher style (unset fields back to their defaults)."""
    response = httpx.post(
        f"{server.url}/admin/knobs", json={"teacher_style": TeacherStyle(**fields).model_dump()}
    )
    assert response.status_code == 200, response.text


def _task(world: Path, category: str, kind: str | None = None):
    return next(
        t
        for t in load_tasks(world)
        if t.category == category and (kind is None or json.loads(t.meta).get("kind") == kind)
    )


def _gold(task) -> list[dict]:
    return json.loads(task.gold_path)


def _executor(task, system: str | None = None) -> list[dict]:
    user: list[dict] = [{"type": "text", "text": task.question}]
    if task.images:
        user.insert(0, {"type": "image_url", "image_url": {"url": data_uri(task.images[0])}})
    return [
        {"role": "system", "content": system or load_prompt("executor_deepresearch").text},
        {"role": "user", "content": user},
    ]


def _stream(client: openai.OpenAI, **request: Any) -> dict[str, Any]:
    """Reassemble a streamed reply: content, reasoning fields, refusal, tool calls, finish."""
    out: dict[str, Any] = {"content": "", "reasoning_content": "", "reasoning": "", "refusal": ""}
    calls: dict[int, dict[str, str]] = {}
    for chunk in client.chat.completions.create(stream=True, **request):
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        out["content"] += delta.content or ""
        out["refusal"] += delta.refusal or ""
        for key in ("reasoning_content", "reasoning"):
            out[key] += (delta.model_extra or {}).get(key) or ""
        for call in delta.tool_calls or []:
            slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            slot["id"] = call.id or slot["id"]
            if call.function is not None:
                slot["name"] = call.function.name or slot["name"]
                slot["arguments"] += call.function.arguments or ""
        out["finish"] = choice.finish_reason or out.get("finish")
    out["tool_calls"] = [calls[i] for i in sorted(calls)]
    return out


# ----------------------------------------------------------------------------- reply shapes


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_field_carries_the_think(
    server: WorldServer, client: openai.OpenAI, small_world: Path, field: str, stream: bool
) -> None:
    style(server, reasoning_field=field)
    task = _task(small_world, "multihop")
    gold = _gold(task)[0]
    request = {"model": "oracle", "messages": _executor(task), "seed": 3}
    if stream:
        got = _stream(client, **request)
        think, content = got[field], got["content"]
        other = got["reasoning" if field == "reasoning_content" else "reasoning_content"]
    else:
        message = client.chat.completions.create(**request).choices[0].message
        think, content = message.model_extra[field], message.content
        other = message.model_extra.get("reasoning" if field == "reasoning_content" else "reasoning_content")
    assert think == gold["think"] and not other
    assert "<think>" not in content and content.lstrip("\n").startswith("<tool_call>")
    turn = parse_turn(f"<think>{think}</think>{content.strip()}").turns[0]
    assert (turn.tool_name, turn.arguments) == (gold["tool_name"], gold["arguments"])
    # a reasoning judge: prose in the field, the JSON verdict alone in content
    judge = [
        {"role": "system", "content": "Decide whether the prediction is right."},
        {
            "role": "user",
            "content": json.dumps({"question": task.question, "gold_answer": "7", "predicted": "7"}),
        },
    ]
    if stream:
        got = _stream(client, model="oracle", messages=judge)
        verdict, prose = got["content"], got[field]
    else:
        message = client.chat.completions.create(model="oracle", messages=judge).choices[0].message
        verdict, prose = message.content, message.model_extra[field]
    assert json.loads(verdict)["verdict"] == "pass" and prose.startswith("Let me compare")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("field", ["none", "reasoning_content"])
def test_native_tool_calls_round_trip(
    server: WorldServer, client: openai.OpenAI, small_world: Path, field: str, stream: bool
) -> None:
    style(server, tool_protocol="native", reasoning_field=field)
    task = _task(small_world, "perception", "zoom")
    gold = _gold(task)
    messages = _executor(task)
    request = {"model": "oracle", "messages": messages, "tools": TOOLS, "tool_choice": "auto"}
    if stream:
        got = _stream(client, **request)
        call, finish = got["tool_calls"][0], got["finish"]
        content = got["content"] or None
        think = got[field] if field != "none" else content
    else:
        choice = client.chat.completions.create(**request).choices[0]
        function = choice.message.tool_calls[0].function
        call = {"id": choice.message.tool_calls[0].id, "name": function.name, "arguments": function.arguments}
        finish, content = choice.finish_reason, choice.message.content
        think = choice.message.model_extra[field] if field != "none" else content
    assert finish == "tool_calls" and call["id"].startswith("call_") and len(call["id"]) == 5 + 24
    assert call["name"] == "code" and json.loads(call["arguments"]) == gold[0]["arguments"]
    assert think == gold[0]["think"] and (content is None) == (field != "none")
    assert content is None or "<" not in content  # the think as plain prose, no tags

    def after(crop: str) -> list[dict]:
        assistant = {
            "role": "assistant",
            "content": content,
            "tool_calls": [
                {
                    "id": call["id"],
                    "type": "function",
                    "function": {"name": call["name"], "arguments": call["arguments"]},
                }
            ],
        }
        if field != "none":
            assistant[field] = think
        tool = {"role": "tool", "tool_call_id": call["id"], "content": "cropped\nSaved image_1.png"}
        images = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": crop}}]}
        return [*messages, assistant, tool, images]

    hit = client.chat.completions.create(model="oracle", messages=after(_crop_uri(task)), tools=TOOLS)
    choice = hit.choices[0]
    assert choice.finish_reason == "stop" and not choice.message.tool_calls
    text = choice.message.content
    if field != "none":
        text = f"<think>{choice.message.model_extra[field]}</think>{text.strip()}"
    assert parse_turn(text).turns[0].answer == task.gold_answer
    # the same history with a crop that missed: the oracle saw the image, so it crops again
    missed = client.chat.completions.create(
        model="oracle", messages=after(_crop_uri(task, dx=400)), tools=TOOLS
    )
    assert missed.choices[0].message.tool_calls[0].function.name == "code"
    if not stream and field == "none":  # tool_choice "none": the call comes back as text
        text = client.chat.completions.create(
            model="oracle", messages=messages, tools=TOOLS, tool_choice="none"
        ).choices[0]
        assert text.message.tool_calls is None and text.finish_reason == "stop"
        assert parse_turn(text.message.content).turns[0].tool_name == "code"


@pytest.mark.parametrize("shape", ["tool_inline_images", "text_with_reasoning_key", "canonical_text"])
def test_history_in_any_shape(
    server: WorldServer, client: openai.OpenAI, small_world: Path, shape: str
) -> None:
    style(server)
    task = _task(small_world, "perception", "zoom")
    first = _gold(task)[0]
    crop = {"type": "image_url", "image_url": {"url": _crop_uri(task)}}
    if shape == "tool_inline_images":
        arguments = json.dumps(first["arguments"])
        history = [
            {
                "role": "assistant",
                "content": first["think"],
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "code", "arguments": arguments}}
                ],
            },
            {
                "role": "tool",
                "tool_call_id": "call_1",
                "content": [{"type": "text", "text": "cropped\nSaved image_1.png: "}, crop],
            },
        ]
    elif shape == "text_with_reasoning_key":
        call = render_turn("x", tool_name="code", arguments=first["arguments"]).split("</think>", 1)[1]
        history = [
            {"role": "assistant", "content": "\n\n" + call, "reasoning_content": first["think"]},
            {"role": "tool", "tool_call_id": "call_1", "content": "cropped\nSaved image_1.png"},
            {"role": "user", "content": [crop]},
        ]
    else:
        history = [
            {
                "role": "assistant",
                "content": render_turn(first["think"], tool_name="code", arguments=first["arguments"]),
            },
            {
                "role": "user",
                "content": [{"type": "text", "text": "<observation>Saved image_1.png: </observation>"}, crop],
            },
        ]
    reply = client.chat.completions.create(model="oracle", messages=[*_executor(task), *history])
    assert parse_turn(reply.choices[0].message.content).turns[0].answer == task.gold_answer


def test_real_client_parameters_are_accepted(
    server: WorldServer, client: openai.OpenAI, small_world: Path
) -> None:
    style(server)
    task = _task(small_world, "multihop")
    reply = client.chat.completions.create(
        model="oracle",
        messages=_executor(task),
        tools=TOOLS,
        tool_choice="auto",
        parallel_tool_calls=False,
        stop=["<observation>"],
        max_completion_tokens=1024,
        reasoning_effort="low",
        response_format={"type": "text"},
        seed=1,
    )
    turn = parse_turn(reply.choices[0].message.content).turns[0]
    assert turn.tool_name == _gold(task)[0]["tool_name"]


# ----------------------------------------------------------------------------------- slips


def _slipped(client: openai.OpenAI, server: WorldServer, task, kind: str, **request: Any):
    style(server, slips={kind: 1.0})
    reply = client.chat.completions.create(model="oracle", messages=_executor(task), seed=5, **request)
    return reply.choices[0], reply.model_extra["trajforge"]


def _body(content: str) -> str:
    return content.split("<tool_call>", 1)[1].split("</tool_call>", 1)[0]


@pytest.mark.parametrize("kind", SLIPS)
def test_each_slip_is_written_as_real_models_write_it(
    server: WorldServer, client: openai.OpenAI, small_world: Path, kind: str
) -> None:
    task = (
        _task(small_world, "perception", "zoom")
        if kind == "raw_newline_in_string"
        else _task(small_world, "multihop")
    )
    gold = _gold(task)[0]
    choice, record = _slipped(client, server, task, kind)
    text = choice.message.content
    assert record["slips"] == [kind] and record["slips_sent"] == [kind]
    if kind in ("json_fence", "raw_newline_in_string", "trailing_comma", "single_quotes"):
        body = _body(text)
        with pytest.raises(ValueError):
            json.loads(body)
        read = read_json(body, expect=dict)  # the one lenient reader repairs it, naming the slip
        assert read.value == {"name": gold["tool_name"], "arguments": gold["arguments"]}
        assert kind in read.repairs
    checks = {
        "json_fence": lambda: "<tool_call>\n```json\n{" in text,
        "raw_newline_in_string": lambda: (
            "\n" in json.loads(_body(text), strict=False)["arguments"]["code"] and "\\n" not in _body(text)
        ),
        "trailing_comma": lambda: _body(text).endswith(",}"),
        "single_quotes": lambda: f"‘{gold['arguments']['queries'][0]}’" in text,
        "stray_brace": lambda: text.endswith("</tool_call>}"),
        "arguments_as_string": lambda: json.loads(json.loads(_body(text))["arguments"]) == gold["arguments"],
        "parameters_key": lambda: json.loads(_body(text))["parameters"] == gold["arguments"],
        "prose_outside_tags": lambda: not (text.startswith("<think>") and text.endswith("</tool_call>")),
        "closing_tag_opens_turn": lambda: text.startswith(f"</think>{gold['think']}</think><tool_call>"),
        "missing_think_open": lambda: text.startswith(f"{gold['think']}</think><tool_call>"),
        "missing_think_close": lambda: text.startswith("<think>") and "</think>" not in text,
        "untagged_tool_call": lambda: (
            "<tool_call>" not in text
            and json.loads(text.split("```json\n", 1)[1].split("\n```", 1)[0])["arguments"]
            == gold["arguments"]
        ),
        "own_observation": lambda: text.count("<observation>") == 1 and text.endswith("</observation>"),
    }
    assert checks[kind](), text


def test_stop_cuts_the_teachers_own_observation(
    server: WorldServer, client: openai.OpenAI, small_world: Path
) -> None:
    task = _task(small_world, "multihop")
    choice, record = _slipped(client, server, task, "own_observation", stop=["<observation>"])
    assert "<observation>" not in choice.message.content and choice.finish_reason == "stop"
    assert choice.message.content.rstrip().endswith("</tool_call>")
    assert (
        record["slips"] == ["own_observation"]
        and record["slips_sent"] == []
        and record["stopped"] == "<observation>"
    )


@pytest.mark.parametrize("kind", ["json_fence", "raw_newline_in_string", "trailing_comma", "single_quotes"])
def test_native_argument_slips(
    server: WorldServer, client: openai.OpenAI, small_world: Path, kind: str
) -> None:
    task = (
        _task(small_world, "perception", "zoom")
        if kind == "raw_newline_in_string"
        else _task(small_world, "multihop")
    )
    gold = _gold(task)[0]
    style(server, tool_protocol="native", slips={kind: 1.0})
    reply = client.chat.completions.create(model="oracle", messages=_executor(task), tools=TOOLS)
    arguments = reply.choices[0].message.tool_calls[0].function.arguments
    assert reply.model_extra["trajforge"]["slips"] == [kind]
    with pytest.raises(ValueError):
        json.loads(arguments)
    read = read_json(arguments, expect=dict)
    assert read.value == gold["arguments"] and kind in read.repairs


def test_slips_are_reproducible_and_follow_the_rate(
    server: WorldServer, client: openai.OpenAI, small_world: Path
) -> None:
    style(server, slips={"stray_brace": 0.5})
    task = _task(small_world, "multihop")
    drawn = []
    for seed in range(12):
        replies = [
            client.chat.completions.create(model="oracle", messages=_executor(task), seed=seed)
            for _ in range(2)
        ]
        assert replies[0].choices[0].message.content == replies[1].choices[0].message.content
        drawn.append(bool(replies[0].model_extra["trajforge"]["slips"]))
    assert 0 < sum(drawn) < 12


# ------------------------------------------------------------------- refusal, truncation, limits


def test_refusal_in_both_shapes(server: WorldServer, client: openai.OpenAI, small_world: Path) -> None:
    style(server, refusal=1.0)
    task = _task(small_world, "multihop")
    shapes = {}
    for seed in range(10):
        reply = client.chat.completions.create(model="oracle", messages=_executor(task), seed=seed)
        shapes.setdefault(reply.model_extra["trajforge"]["refusal"], (seed, reply.choices[0].message))
    assert set(shapes) == {"field", "content"}
    seed, message = shapes["field"]
    assert message.refusal == REFUSAL and message.content is None
    assert _stream(client, model="oracle", messages=_executor(task), seed=seed)["refusal"] == REFUSAL
    _, message = shapes["content"]
    assert message.content == REFUSAL and message.refusal is None
    # only the first turn refuses
    gold = _gold(task)[0]
    later = [
        *_executor(task),
        {
            "role": "assistant",
            "content": render_turn(gold["think"], tool_name=gold["tool_name"], arguments=gold["arguments"]),
        },
        {"role": "user", "content": "<observation>no results</observation>"},
    ]
    reply = client.chat.completions.create(model="oracle", messages=later, seed=seed)
    assert reply.choices[0].message.refusal is None and "refusal" not in reply.model_extra["trajforge"]


def test_truncation_cuts_at_half_and_a_reask_draws_anew(
    server: WorldServer, client: openai.OpenAI, small_world: Path
) -> None:
    task = _task(small_world, "multihop")
    style(server)
    whole = (
        client.chat.completions.create(model="oracle", messages=_executor(task), seed=0)
        .choices[0]
        .message.content
    )
    style(server, truncate=1.0)
    choice = client.chat.completions.create(model="oracle", messages=_executor(task), seed=0).choices[0]
    assert choice.finish_reason == "length" and choice.message.content == whole[: len(whole) // 2]
    streamed = _stream(client, model="oracle", messages=_executor(task), seed=0)
    assert streamed["finish"] == "length" and streamed["content"] == choice.message.content
    style(server, truncate=0.5)
    reask = [{"role": "user", "content": "Your reply was cut off; answer again."}]
    outcomes = set()
    for seed in range(16):
        first = client.chat.completions.create(model="oracle", messages=_executor(task), seed=seed)
        again = client.chat.completions.create(model="oracle", messages=_executor(task), seed=seed)
        assert first.choices[0].finish_reason == again.choices[0].finish_reason  # reproducible
        longer = client.chat.completions.create(
            model="oracle", messages=[*_executor(task), *reask], seed=seed
        )
        outcomes.add((first.choices[0].finish_reason, longer.choices[0].finish_reason))
    assert ("length", "stop") in outcomes  # one more message: a fresh draw


def test_max_tokens_cuts_with_finish_length(
    server: WorldServer, client: openai.OpenAI, small_world: Path
) -> None:
    style(server)
    task = _task(small_world, "multihop")
    choice = client.chat.completions.create(model="oracle", messages=_executor(task), max_tokens=10).choices[
        0
    ]
    assert choice.finish_reason == "length" and len(choice.message.content) == 40


# --------------------------------------------------------------------------------- judges


def _judge_messages(task, predicted: str) -> list[dict]:
    payload = {
        "question": task.question,
        "gold_answer": task.gold_answer,
        "aliases": [],
        "predicted": predicted,
    }
    return [
        {"role": "system", "content": load_prompt("judge_answer").text},
        {"role": "user", "content": "```json\n" + json.dumps(payload) + "\n```"},
    ]


def test_judge_prose_fenced_or_bare_and_response_format(
    server: WorldServer, client: openai.OpenAI, small_world: Path
) -> None:
    style(server, judge_prose=1.0)
    task = _task(small_world, "multihop")
    fenced = set()
    for predicted in [task.gold_answer, "something else", "42", "no idea", "the " + task.gold_answer, "x"]:
        reply = client.chat.completions.create(model="oracle", messages=_judge_messages(task, predicted))
        text = reply.choices[0].message.content
        assert text.startswith("Let me compare") and reply.model_extra["trajforge"]["judge_prose"]
        verdict = last_object(text, has_key="verdict").value
        assert verdict["verdict"] == ("pass" if task.gold_answer in predicted else "fail")
        fenced.add("```json" in text)
        structured = client.chat.completions.create(
            model="oracle",
            messages=_judge_messages(task, predicted),
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "verdict", "schema": {"type": "object"}},
            },
        )
        assert json.loads(structured.choices[0].message.content) == verdict
    assert fenced == {True, False}


# ------------------------------------------------------------------------ roles by structure

PLANNER = """Plan mode. Read the picture and the question, then break the work into steps.
Write your plan as a JSON list; every step is an object with "description", "tool_name" and "parameters".
Use image_search, text_search, web_visit, code or none as tool_name; finish with a none step."""
EXECUTOR = """Assistant for visual questions. Reason first, then act.
Wrap your reasoning in <think></think> and then either call a tool as <tool_call>{"name": ..., "arguments": ...}</tool_call>
or finish with <answer></answer>. If a plan is provided, follow it."""
JUDGE = """Grading assistant. Below is a case in JSON.
Reply with {"verdict": "pass" or "fail", "reason": "..."}."""


def test_rewritten_prompts_still_get_the_right_role(
    server: WorldServer, client: openai.OpenAI, small_world: Path
) -> None:
    style(server)
    task = _task(small_world, "multihop")
    plan = client.chat.completions.create(
        model="oracle",
        messages=[{"role": "system", "content": PLANNER}, {"role": "user", "content": task.question}],
    )
    assert plan.model_extra["trajforge"]["role"] == "planner"
    assert json.loads(plan.choices[0].message.content) == json.loads(task.gold_plan)
    first = client.chat.completions.create(model="oracle", messages=_executor(task, EXECUTOR))
    assert first.model_extra["trajforge"]["role"] == "executor"
    assert parse_turn(first.choices[0].message.content).turns[0].tool_name == _gold(task)[0]["tool_name"]
    payload = {"question": task.question, "last_thought": "So it is 12.", "answer": "12"}
    verdict = client.chat.completions.create(
        model="oracle",
        messages=[
            {"role": "system", "content": JUDGE},
            {"role": "user", "content": "Case:\n" + json.dumps(payload)},
        ],
    )
    assert verdict.model_extra["trajforge"]["role"] == "judge"
    assert json.loads(verdict.choices[0].message.content)["verdict"] == "pass"
    # an executor turn whose user text carries the plan is still the executor
    with_plan = _executor(task, EXECUTOR)
    with_plan[1]["content"][0]["text"] += "\n\nPlan:\n" + task.gold_plan
    again = client.chat.completions.create(model="oracle", messages=with_plan)
    assert again.model_extra["trajforge"]["role"] == "executor"


def test_teacher_style_is_settable_from_the_cli_config() -> None:
    cfg = load_config(
        None,
        [
            "world.knobs.teacher_style.reasoning_field=reasoning_content",
            "world.knobs.teacher_style.slips.trailing_comma=0.3",
        ],
    )
    knobs = Knobs(**cfg.world.knobs)
    assert knobs.teacher_style.reasoning_field == "reasoning_content"
    assert knobs.teacher_style.slips == {"trailing_comma": 0.3}
    with pytest.raises(ValueError, match="known"):
        Knobs(teacher_style={"slips": {"fence": 0.3}})


def test_a_defective_turn_still_goes_through_the_reasoning_parser(
    server: WorldServer, client: openai.OpenAI, small_world: Path
) -> None:
    task = _task(small_world, "multihop")
    knobs = {"defects": {"format_error": 1.0}, "teacher_style": {"reasoning_field": "reasoning"}}
    assert httpx.post(f"{server.url}/admin/knobs", json=knobs).status_code == 200
    try:
        reply = client.chat.completions.create(model="oracle", messages=_executor(task), seed=2)
    finally:
        httpx.post(f"{server.url}/admin/knobs", json={"defects": {}})
    message = reply.choices[0].message
    assert reply.model_extra["trajforge"]["injected"] == ["format_error"]
    assert message.model_extra["reasoning"] == _gold(task)[0]["think"]
    assert message.content.startswith("<tool_call>") and parse_turn(message.content).errors
