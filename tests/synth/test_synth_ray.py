"""The Ray path: actors run the same worker, shards land in the run, a rerun finds nothing to do."""

from __future__ import annotations

import collections

import pytest

from pipeline.schema import Trajectory
from stages.synth.runner import run_synth
from tests.synth.conftest import fake_tools, run_on_ray, scripted_agent
from tests.synth.test_synth_runner import make_run


def test_ray_workers_write_every_pair_once(fake_teacher, tmp_path):
    pytest.importorskip("ray")
    server = fake_teacher(scripted_agent)
    cfg, store, tasks = make_run(tmp_path, n_tasks=4, **{"synth.workers": 2, "synth.shard_size": 2})
    summary = run_on_ray(cfg, store, server.base_url)
    pairs = collections.Counter((t.task_id, t.rollout) for t in store.read_records("raw", Trajectory))
    assert set(pairs) == {(t.task_id, r) for t in tasks for r in range(4)} and set(pairs.values()) == {1}
    assert summary["trajectories"] == 16 and summary["statuses"] == {"answered": 16}
    assert {p.split("/")[-1].split("-")[0] for p in store.shard_paths("raw")} == {
        "w0",
        "w1",
    }  # both actors worked
    assert summary["teacher"]["calls"] == len(server.requests) == 4 + 16 * 3, summary["teacher"]
    again = run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    assert again["trajectories"] == 0 and again["already_done"] == 16
