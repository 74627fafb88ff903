"""100 real trajectories of a real model (WebDancer's QwQ agent, `../shared/reference/webdancer/`):
the rules-only answer check agrees with a person's labels (tests/filters/data/), and the
last-thought and grounding rules do not drop trajectories a person reads as sound.

The loader here is deliberately minimal (think / tool call / observation / answer, in order): the
`chatml` importer is the real reader of this format; this test is about the checks.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from filters.answer_check import AnswerCheck
from filters.base import CheckContext
from filters.final_answer import FinalAnswerCheck
from filters.grounding import GroundingCheck
from pipeline.schema import Step, Trajectory
from tests.reference import reference

LABELS = Path(__file__).parent / "data" / "webdancer_answer_labels.json"
TOOLS = {"search": "text_search", "visit": "web_visit"}


def _tag(tag: str, text: str) -> str | None:
    found = re.findall(rf"<{tag}>(.*?)</{tag}>", text, re.S)
    return found[-1].strip() if found else None


def _trajectory(index: int, record: dict) -> Trajectory:
    messages = record["messages"]
    first_user = next(m["content"] for m in messages if m["role"] == "user")
    question = first_user.split("\nUser:")[-1].strip()
    steps: list[Step] = []
    for k, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        text = message["content"]
        step = Step(index=len(steps), think=_tag("think", text) or "", raw=text)
        if (call := _tag("tool_call", text)) is not None:
            parsed = json.loads(call)
            reply = messages[k + 1]["content"] if k + 1 < len(messages) else ""
            step.action, step.tool_name = "tool_call", TOOLS.get(parsed["name"], parsed["name"])
            step.arguments = json.dumps(parsed.get("arguments", {}))
            step.observation_text = _tag("tool_response", reply) or reply
        elif (answer := _tag("answer", text)) is not None:
            step.action, step.answer = "answer", answer
        steps.append(step)
    golds = record["answer"][0]
    return Trajectory(
        task_id=f"webdancer-{index}",
        question=question,
        gold_answer=golds[0],
        answer_aliases=golds[1:],
        steps=steps,
        final_answer=steps[-1].answer,
    )


@pytest.fixture(scope="module")
def trajectories() -> list[Trajectory]:
    path = reference("webdancer", "sample_traj.first100.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    return [_trajectory(i, json.loads(line)) for i, line in enumerate(lines) if line.strip()]


def test_rules_only_answer_check_agrees_with_hand_labels(trajectories: list[Trajectory]) -> None:
    labels = json.loads(LABELS.read_text(encoding="utf-8"))["labels"]
    assert len(trajectories) == len(labels) == 100
    ctx = CheckContext()
    disagree = []
    for i, trajectory in enumerate(trajectories):
        label = labels[str(i)]
        key = hashlib.sha256(f"{trajectory.question}\n{trajectory.final_answer}".encode()).hexdigest()[:16]
        assert key == label["key"], f"record {i} is not the one labelled (data changed?)"
        kept = AnswerCheck().run(trajectory, ctx).keep
        if kept != label["right"]:
            disagree.append(f"{i}: rules {kept}, label {label['right']} ({label['why']})")
    print(f"answer check agrees with the hand labels on {100 - len(disagree)}/100:", *disagree, sep="\n  ")
    assert len(disagree) <= 5, disagree


def test_last_thought_and_grounding_rules_keep_sound_real_trajectories(
    trajectories: list[Trajectory],
) -> None:
    # Read by hand: none of these states an answer its last thought contradicts, and every
    # quotation a thought says it read is on a page it saw (the rest are guesses and queries).
    ctx = CheckContext()
    stated = 0
    for trajectory in trajectories:
        for check in (FinalAnswerCheck(), GroundingCheck()):
            verdict = check.run(trajectory, ctx)
            assert verdict.keep, f"{trajectory.task_id}: {verdict.reason}"
        stated += "states no answer" not in (FinalAnswerCheck().run(trajectory, ctx).steps[-1].reason or "")
    assert stated >= 50  # the check did compare: most last thoughts state an answer
