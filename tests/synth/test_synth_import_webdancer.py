"""100 real WebDancer trajectories (QwQ with real Google results) import whole with `import auto`.

Every assistant message becomes a step, every tool step carries its observation, the gold answers
are kept, both rollouts of each repeated question become two trajectories, and the format check
judges the calls against the tools the records declared (all pass: they are well formed).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from typer.testing import CliRunner

from filters.base import CheckContext
from filters.format_check import FormatCheck
from pipeline.cli import app
from pipeline.schema import Trajectory
from pipeline.store import RunStore
from stages.tools.registry import tool_table
from tests.reference import reference


def test_webdancer_sample_imports_whole(tmp_path: Path) -> None:
    path = reference("webdancer", "sample_traj.first100.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    result = CliRunner().invoke(app, ["import", "auto", str(path), "--run", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert (
        "as chatml" in result.output
        and f"{len(records)} imported, 0 already present, 0 malformed" in result.output
    )
    trajectories = RunStore(tmp_path / "run").read_records("raw", Trajectory)
    assert len(trajectories) == len(records) == 100

    by_question = Counter(t.question for t in trajectories)
    repeated = {q for q, n in by_question.items() if n > 1}
    assert len(repeated) == 13 and all(by_question[q] == 2 for q in repeated)
    assert all(sorted(t.rollout for t in trajectories if t.question == q) == [0, 1] for q in repeated), (
        "both rollouts of a repeated question are kept, with their own indices"
    )

    golds = Counter(r["answer"][0][0] for r in records)
    assert Counter(t.gold_answer for t in trajectories) == golds
    assistant_turns = sum(1 for r in records for m in r["messages"] if m["role"] == "assistant")
    tool_turns = sum(
        1
        for r in records
        for m in r["messages"]
        if m["role"] == "user" and "<tool_response>" in m["content"][:20]
    )
    assert sum(len(t.steps) for t in trajectories) == assistant_turns
    calls = [s for t in trajectories for s in t.steps if s.action == "tool_call"]
    assert len(calls) == tool_turns == 105
    assert all(s.observation_text and len(s.observation_text) > 100 for s in calls)
    assert {s.tool_name for s in calls} == {"text_search", "web_visit"}
    assert all(
        t.final_answer and t.steps[-1].action == "answer" and not t.format_errors for t in trajectories
    )
    assert all(
        t.question and "<tools>" not in t.question and not t.question.startswith("User:")
        for t in trajectories
    )

    verdicts = [FormatCheck().run(t, CheckContext(tools=tool_table())) for t in trajectories]
    assert all(v.keep for v in verdicts), [v.reason for v in verdicts if not v.keep][:3]
