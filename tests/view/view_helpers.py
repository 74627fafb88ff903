"""A small run for the viewer tests: handmade raw trajectories filtered by the real filter (rules).

Two rollouts per task; one answers wrong (the answer check drops it), one hits a sandbox error
(the execution check drops it), the rest are clean, so the run has kept and dropped trajectories,
step images, code calls and verdicts with reasons, like a synth run but in about a second.
"""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.schema import Trajectory
from pipeline.store import RunStore
from tests.publish.publish_helpers import deepresearch, general

WRONG = "1234"


def make_view_run(root: Path) -> RunStore:
    store = RunStore(root)
    records: list[Trajectory] = []
    for n in range(1, 4):
        for rollout in range(2):
            t = deepresearch(store, n).model_copy(update={"rollout": rollout, "trajectory_id": ""})
            t.model_post_init(None)
            records.append(t)
    # task 1, rollout 1 answers wrong
    bad = records[1]
    bad.steps[-1].answer = WRONG
    bad.final_answer = WRONG
    for n in range(2):
        g = general(store, n)
        records.append(g)
    # a sandbox error in the general task's code step
    crashed = records[-1]
    crashed.steps[0].error = "NameError: name 'box' is not defined"
    crashed.steps[
        0
    ].observation_text = "Traceback (most recent call last):\nNameError: name 'box' is not defined"
    store.write_records("raw", records, Trajectory)
    result = CliRunner().invoke(app, ["filter", "--run", str(root), "--judge", "none", "--no-progress"])
    assert result.exit_code == 0, result.output
    return store
