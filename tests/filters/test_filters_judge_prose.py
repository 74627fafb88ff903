"""Judges that answer as real models do, over real HTTP (the loopback fake OpenAI server): a
verdict in one sentence, in GLM-4.5V's answer box, in the reasoning field's last line; a reply
with no verdict asked once more (the reply shown back, a stricter instruction); each way a
verdict was read counted, and the counts in the filter report."""

from __future__ import annotations

from pathlib import Path

import pytest

from filters.judges import REASK
from filters.run_checks import judge_verdicts
from stages.tools.registry import tool_table
from tests.fake_openai import completion
from tests.filters.test_filters_judge_replies import ask_all, make_judge


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        ("Yes, the step is consistent.", "pass"),
        ("No, the crop does not show the sign.", "fail"),
        ("**Fail**: the page names another painter.", "fail"),
        ("Supported. The observation lists the plate code.", "pass"),
        ("Not supported: the search returned nothing.", "fail"),
        ("The thought is consistent with the observation.", "pass"),
        ("Verdict: PASS", "pass"),
        ('<|begin_of_box|>{"verdict": "fail", "reason": "other city"}<|end_of_box|>', "fail"),
    ],
)
def test_a_verdict_in_a_sentence_is_read(fake_teacher, tmp_path: Path, reply: str, verdict: str) -> None:
    server = fake_teacher(lambda body: reply)
    judge = make_judge(server.base_url, tmp_path)
    [result] = ask_all(judge)
    assert result.verdict == verdict and result.passed == (verdict == "pass")
    assert len(server.requests) == 1  # read at once: no re-ask
    read = "json" if "{" in reply else "prose"
    assert result.read == read and judge.stats[f"read.{read}"] == 1


def test_a_verdict_on_the_reasoning_fields_last_line(fake_teacher, tmp_path: Path) -> None:
    thinking = (
        "No wait, compare the letters first.\nNYC abbreviates New York City.\nYes, they are the same city."
    )
    server = fake_teacher(lambda body: completion("", reasoning=thinking))
    [result] = ask_all(make_judge(server.base_url, tmp_path))
    assert (result.verdict, result.read) == ("pass", "prose")
    assert "verdict_in_reasoning" in result.repairs


def test_no_verdict_is_asked_once_more_with_the_reply_shown(fake_teacher, tmp_path: Path) -> None:
    def handler(body):
        if body["messages"][-1]["content"] == REASK:
            return '{"verdict": "pass", "reason": "abbreviation"}'
        return "Let me look at the two names once more before I decide."

    server = fake_teacher(handler)
    judge = make_judge(server.base_url, tmp_path)
    [result] = ask_all(judge)
    assert (result.verdict, result.reason, result.read) == ("pass", "abbreviation", "reask")
    first, second = server.requests
    assert second["messages"][: len(first["messages"])] == first["messages"]
    assert second["messages"][-2] == {
        "role": "assistant",
        "content": "Let me look at the two names once more before I decide.",
    }
    report = judge_verdicts(judge.stats, "drop")
    assert report["read_by"] == {"json": 0, "prose": 0, "reask": 1, "unknown": 0} and report["reasks"] == 1


def test_a_sentence_that_says_both_is_asked_again(fake_teacher, tmp_path: Path) -> None:
    def handler(body):
        if body["messages"][-1]["content"] == REASK:
            return '{"verdict": "fail", "reason": "the page says 1812"}'
        return "Yes, the thought mentions 1813, but the observation is not consistent with it."

    server = fake_teacher(handler)
    [result] = ask_all(make_judge(server.base_url, tmp_path))
    assert (result.verdict, result.read) == ("fail", "reask") and len(server.requests) == 2


def test_still_no_verdict_after_the_reask_is_unknown(fake_teacher, tmp_path: Path) -> None:
    server = fake_teacher(lambda body: "Hmm, hard to say.")
    judge = make_judge(server.base_url, tmp_path)
    [result] = ask_all(judge)
    assert result.unknown and not result.passed and "re-asked" in result.reason
    assert len(server.requests) == 2  # one re-ask, never more
    assert judge.stats["read.unknown"] == 1 and judge.stats["unknown_dropped"] == 1


def test_the_filter_report_and_summary_count_how_replies_and_verdicts_were_read(
    fake_teacher, tmp_path: Path
) -> None:
    from filters.judges import build_judge
    from filters.run_checks import run_filter
    from pipeline.commands.filter import summary_lines
    from pipeline.config import FilterConfig, TeacherConfig
    from pipeline.schema import Trajectory
    from pipeline.store import RunStore
    from tests.filters.test_filters_judge_replies import _clean

    def handler(body):
        if "judge_step" in body["messages"][0]["content"]:
            return "Yes, the result names Velmora Dynamics."
        if body["messages"][-1]["content"] == REASK:
            return '{"verdict": "pass", "reason": "agree"}'
        return "Let me compare them again."

    trajectories = [_clean("a"), _clean("b")]
    first = trajectories[0].steps[0]
    first.normalisations, first.repairs, first.tokens_estimated = (
        ["missing_think_open"],
        ["special_tokens"],
        True,
    )
    trajectories[0].steps[1].normalisations = ["missing_think_open"]
    store = RunStore(tmp_path / "run")
    store.write_records("raw", trajectories, Trajectory)
    cfg = FilterConfig(
        judge="custom", judge_base_url=fake_teacher(handler).base_url, plan_samples=False, best_per_task=2
    )
    judge = build_judge("custom", TeacherConfig(max_retries=0), cfg, cache_dir=store.root / "cache")
    report = run_filter(store, cfg, judge=judge, progress=False, tools=tool_table()).report
    assert report["kept"] == 2
    assert report["reply_reading"] == {
        "steps": 4,
        "normalised_steps": 2,
        "normalisations": {"missing_think_open": 2},
        "repaired_steps": 1,
        "repairs": {"special_tokens": 1},
        "reasks": 0,
        "estimated_token_steps": 1,
    }
    verdicts = report["judge_verdicts"]
    assert verdicts["read_by"]["prose"] == 2 and verdicts["read_by"]["reask"] == 2 and verdicts["reasks"] == 2
    text = "\n".join(summary_lines(report))
    assert (
        "2 of 4 steps normalised (server shape: missing_think_open 2), 1 repaired (special_tokens 1)" in text
    )
    assert "1 with estimated tokens" in text and "prose 2, after a re-ask 2 (2 re-asks)" in text
