"""Judge replies as real servers send them, over real HTTP (the loopback fake OpenAI server):
bare, fenced, prose then JSON, several objects, the verdict only in a reasoning field, structured
output asked for (and the 400 fallback), unreadable and truncated replies as `unknown`, handled
per `filter.judge_unknown` through the whole filter run."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from filters.judges import RESPONSE_FORMAT, Judge, build_judge
from filters.run_checks import run_filter
from pipeline.config import FilterConfig, TeacherConfig
from pipeline.schema import Step, Trajectory
from pipeline.store import RunStore
from stages.tools.registry import tool_table
from tests.fake_openai import Fault, completion

PAYLOAD = {"question": "Who?", "gold_answer": "New York City", "aliases": [], "predicted": "NYC"}


def make_judge(url: str, tmp_path: Path, teacher: dict[str, Any] | None = None, **filter_cfg: Any) -> Judge:
    cfg = FilterConfig(judge="custom", judge_base_url=url, judge_model="judge-m", **filter_cfg)
    teacher_cfg = TeacherConfig(**{"max_retries": 0, "timeout_s": 30, "cache": False, **(teacher or {})})
    return build_judge("custom", teacher_cfg, cfg, cache_dir=tmp_path / "cache")


def ask_all(judge: Judge, count: int = 1, kind: str = "answer") -> list[Any]:
    async def go() -> list[Any]:
        try:
            return [await judge.ask(kind, {**PAYLOAD, "n": n}) for n in range(count)]  # type: ignore[arg-type]
        finally:
            await judge.aclose()

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("reply", "verdict", "reason"),
    [
        ('{"verdict": "pass", "reason": "same city"}', "pass", "same city"),
        ('```json\n{"verdict": "fail", "reason": "other city"}\n```', "fail", "other city"),
        (
            "NYC is the usual short form of New York City, so they name the same place.\n\n"
            '{"verdict": "pass", "reason": "abbreviation"}',
            "pass",
            "abbreviation",
        ),
        (
            'First guess: {"verdict": "fail", "reason": "letters differ"}. Rethinking, NYC abbreviates it. '
            'Final: {"verdict": "correct", "reason": "abbreviation"}',
            "pass",
            "abbreviation",
        ),
    ],
)
def test_content_shapes(fake_teacher, tmp_path: Path, reply: str, verdict: str, reason: str) -> None:
    server = fake_teacher(lambda body: reply)
    [result] = ask_all(make_judge(server.base_url, tmp_path))
    assert (result.verdict, result.reason, result.passed) == (verdict, reason, verdict == "pass")
    [request] = server.requests
    assert request["max_tokens"] == 4096 and request["temperature"] == 0.0 and request["model"] == "judge-m"
    assert "response_format" not in request  # structured output is opt-in


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
@pytest.mark.parametrize("content", [None, "", "Looked at it."])
def test_verdict_only_in_reasoning(fake_teacher, tmp_path: Path, key: str, content: str | None) -> None:
    thinking = 'The predicted NYC abbreviates the gold answer.\n{"verdict": "pass", "reason": "abbreviation"}'
    server = fake_teacher(lambda body: completion(content, reasoning=thinking, reasoning_key=key))
    [result] = ask_all(make_judge(server.base_url, tmp_path))
    assert (result.verdict, result.reason) == ("pass", "abbreviation")
    assert "verdict_in_reasoning" in result.repairs


def test_verdict_in_reasoning_through_the_judge() -> None:
    """The reading path the reasoning fields take (runs before the teacher client exposes them)."""

    class Client:
        async def chat(self, messages: list[dict[str, Any]], **overrides: Any) -> Any:
            return dataclasses.make_dataclass("R", ["text", "reasoning", "finish_reason"])(
                "", 'hmm {"verdict": "no", "reason": "different"}', "stop"
            )

    result = asyncio.run(Judge(Client()).ask("answer", PAYLOAD))
    assert (result.verdict, result.reason, result.passed) == ("fail", "different", False)


@pytest.mark.parametrize(
    ("teacher", "judge_setting", "sent"),
    [
        ({"structured_output": True}, None, True),
        ({}, True, True),
        ({"structured_output": True}, False, False),
    ],
)
def test_response_format_is_sent_when_configured(
    fake_teacher, tmp_path: Path, teacher: dict, judge_setting: bool | None, sent: bool
) -> None:
    server = fake_teacher(lambda body: '{"verdict": "pass", "reason": "ok"}')
    judge = make_judge(server.base_url, tmp_path, teacher, judge_structured_output=judge_setting)
    [result] = ask_all(judge)
    assert result.passed
    [request] = server.requests
    assert (request.get("response_format") == RESPONSE_FORMAT) is sent
    if sent:
        schema = request["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["verdict"]["enum"] == ["pass", "fail"] and schema["required"]


def test_response_format_400_falls_back_once_for_the_run(fake_teacher, tmp_path: Path) -> None:
    def handler(body: dict) -> Any:
        if "response_format" in body:
            return Fault(400, body='{"error": {"message": "response_format json_schema is not supported"}}')
        return '{"verdict": "fail", "reason": "different"}'

    server = fake_teacher(handler)
    judge = make_judge(server.base_url, tmp_path, judge_structured_output=True)
    results = ask_all(judge, count=3)
    assert [r.verdict for r in results] == ["fail"] * 3
    # one refused request, its retry without response_format, then never again this run
    assert ["response_format" in r for r in server.requests] == [True, False, False, False]
    assert judge.stats["structured_output_rejected"] == 1 and not judge.structured


def test_an_unrelated_400_is_unknown_and_keeps_structured_output(fake_teacher, tmp_path: Path) -> None:
    server = fake_teacher(lambda body: Fault(400, body='{"error": {"message": "context too long"}}'))
    judge = make_judge(server.base_url, tmp_path, judge_structured_output=True)
    [result] = ask_all(judge)
    assert result.verdict == "unknown" and "judge call failed" in result.reason and not result.passed
    assert len(server.requests) == 2 and judge.structured  # retried once; not blamed on the format


@pytest.mark.parametrize("policy", ["keep", "drop"])
def test_unreadable_reply_is_unknown_per_policy(fake_teacher, tmp_path: Path, policy: str) -> None:
    server = fake_teacher(lambda body: "These look related but I am unsure how to rule on this one.")
    [result] = ask_all(make_judge(server.base_url, tmp_path, judge_unknown=policy))
    assert result.verdict == "unknown" and result.passed is (policy == "keep")
    assert f"filter.judge_unknown={policy}" in result.reason and "unsure how to rule" in result.reason


def test_truncated_reply_is_unknown_and_not_resent(fake_teacher, tmp_path: Path) -> None:
    server = fake_teacher(lambda body: completion("Let me compare the two names. NYC is", finish="length"))
    judge = make_judge(server.base_url, tmp_path, teacher={"max_retries": 3})
    [result] = ask_all(judge)
    assert (
        result.verdict == "unknown" and "max_tokens" in result.reason and "compare the two" in result.reason
    )
    assert len(server.requests) == 1  # at temperature 0 a resend would be cut the same way


def test_truncated_reply_with_a_verdict_is_read(fake_teacher, tmp_path: Path) -> None:
    server = fake_teacher(
        lambda body: completion('{"verdict": "pass", "reason": "NYC abbrev', finish="length")
    )
    [result] = ask_all(make_judge(server.base_url, tmp_path))
    assert result.verdict == "pass" and result.repairs


def test_failed_call_is_unknown_not_fail(fake_teacher, tmp_path: Path) -> None:
    server = fake_teacher(lambda body: Fault(503))
    judge = make_judge(server.base_url, tmp_path, judge_unknown="keep")
    [result] = ask_all(judge)
    assert result.verdict == "unknown" and result.passed and "judge call failed" in result.reason
    assert judge.stats["errors"] == 1 and judge.stats["unknown_kept"] == 1


# ----------------------------------------------------------------- through the filter run


QUESTIONS = {
    "a": "Which firm builds the drones in this photo?",
    "b": "Who owns the lighthouse pictured here?",
}


def _clean(case: str) -> Trajectory:
    steps = [
        Step(
            index=0,
            think="Search.",
            action="tool_call",
            tool_name="text_search",
            arguments=json.dumps({"queries": [f"q {case}"]}),
            observation_text="1. Velmora Dynamics builds drones",
        ),
        Step(index=1, think="The result shows Velmora Dynamics.", action="answer", answer="Velmora Dynamics"),
    ]
    return Trajectory(
        task_id=f"t-{case}",
        question=QUESTIONS[case],
        steps=steps,
        final_answer="Velmora Dynamics",
        gold_answer="Velmora Dynamics",
    )


@pytest.mark.parametrize("policy", ["keep", "drop"])
def test_filter_run_counts_unknowns_and_applies_the_policy(fake_teacher, tmp_path: Path, policy: str) -> None:
    """The step judge answers in prose with no verdict; the final judge answers properly."""

    def handler(body: dict) -> str:
        if "judge_step" in body["messages"][0]["content"]:
            return "The thought seems grounded, though I would want to read the page."
        return 'Checked the answer against the thought.\n{"verdict": "pass", "reason": "agree"}'

    server = fake_teacher(handler)
    store = RunStore(tmp_path / "run")
    store.write_records("raw", [_clean("a"), _clean("b")], Trajectory)
    cfg = FilterConfig(
        judge="custom",
        judge_base_url=server.base_url,
        plan_samples=False,
        judge_unknown=policy,
        best_per_task=2,
    )
    judge = build_judge("custom", TeacherConfig(max_retries=0), cfg, cache_dir=store.root / "cache")
    outcome = run_filter(store, cfg, judge=judge, progress=False, tools=tool_table())
    rows = {r["task_id"]: r for r in outcome.rows}
    counts = outcome.report["judge_verdicts"]
    assert counts["unknown"] == 2 and counts["unknown_by_kind"] == {"step": 2}
    assert counts[f"unknown_{'kept' if policy == 'keep' else 'dropped'}"] == 2
    grounding = rows["t-a"]["grounding"]
    if policy == "drop":
        assert not rows["t-a"]["keep"] and "judge verdict unknown, dropped" in grounding["reason"]
        assert "read the page" in grounding["reason"] and outcome.report["kept"] == 0
    else:
        assert rows["t-a"]["keep"] and outcome.report["kept"] == 2
        kept_note = [s["reason"] for s in grounding["steps"] if s["reason"]]
        assert kept_note and "judge verdict unknown, kept" in kept_note[0]
    assert counts["pass"] == 2 and counts["fail"] == 0  # the final judge, read after its prose
