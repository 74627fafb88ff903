"""The synth summary sizes a run by Little's law from what it measured (issue 29)."""

from __future__ import annotations

import json
import math

from pipeline.schema import Trajectory
from stages.synth.runner import run_synth
from stages.synth.sizing import sizing
from tests.synth.conftest import fake_tools, scripted_agent
from tests.synth.test_synth_runner import make_run


def test_summary_says_how_many_in_flight_keep_a_configured_pace_busy(fake_teacher, tmp_path):
    server = fake_teacher(scripted_agent, latency_s=0.2)
    cfg, store, _ = make_run(
        tmp_path,
        n_tasks=2,
        **{"synth.rollouts": 2, "synth.plan": False, "synth.in_flight": 4, "teacher.requests_per_s": 500},
    )
    summary = run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    block = summary["sizing"]
    trajectories = store.read_records("raw", Trajectory)
    wall = sum(t.wall_s for t in trajectories) / len(trajectories)
    calls = sum(t.teacher_calls for t in trajectories) / len(trajectories)
    assert block["rate_from"] == "teacher.requests_per_s" and block["teacher_rate_per_s"] == 500
    assert block["calls_per_trajectory"] == round(calls, 2)
    assert abs(block["trajectory_wall_s"] - wall) < 0.01
    assert abs(block["in_flight_needed"] - math.ceil(500 * wall / calls)) <= 1
    assert block["teacher_latency_s"] >= 0.2 and block["teacher_calls_in_flight_needed"] >= 100
    assert block["configured_in_flight"] == 4 and "raise synth.in_flight" in block["note"]
    assert "rate x trajectory wall s / calls per trajectory" in block["formula"]


def test_a_stated_pace_sizes_the_run_and_an_unknown_one_says_what_is_missing():
    summary = {
        "wall_s": 100.0,
        "teacher": {"calls": 600, "mean_latency_s": 10.0, "stated_rate_per_s": 100.0},
        "executor": {"trajectories_timed": 100, "trajectory_wall_s": 6300.0},
    }
    stated = sizing(summary, requests_per_s=None, in_flight=512, workers=2)
    assert stated["rate_from"] == "the endpoint's rate-limit headers"
    assert stated["in_flight_needed"] == 1050 and stated["in_flight_needed_per_worker"] == 525
    assert stated["teacher_calls_in_flight_needed"] == 1000
    summary["teacher"]["stated_rate_per_s"] = None
    unknown = sizing(summary, requests_per_s=None, in_flight=512, workers=2)
    assert "in_flight_needed" not in unknown and "teacher.requests_per_s" in unknown["note"]
    assert unknown["reached_calls_per_s"] == 6.0


def _start_spread(tmp_path, fake_teacher, rate: float, name: str) -> float:
    server = fake_teacher(scripted_agent, latency_s=0.05)
    cfg, store, _ = make_run(
        tmp_path / name,
        n_tasks=2,
        **{"synth.rollouts": 8, "synth.plan": False, "synth.in_flight": 16, "synth.start_rate": rate},
    )
    run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    starts = sorted(json.loads(t.meta)["started_at"] for t in store.read_records("raw", Trajectory))
    assert len(starts) == 16
    return starts[-1] - starts[0]


def test_the_first_wave_starts_at_the_configured_rate(fake_teacher, tmp_path):
    """16 slots free at once: unpaced they all start in the same instant; at 40/s the 16 starts
    take about 15/40 s (a thousand at once stalled the loop 0.8 s opening their connections)."""
    assert _start_spread(tmp_path, fake_teacher, 0, "unpaced") < 0.25
    # the pacer spaces starts 25 ms apart (the second may follow the first at once: 14 x 25 ms)
    assert 0.34 <= _start_spread(tmp_path, fake_teacher, 40, "paced") < 2.0


def test_code_calls_queueing_for_a_full_sandbox_pool_are_said():
    summary = {
        "wall_s": 100.0,
        "teacher": {"calls": 600, "mean_latency_s": 10.0},
        "executor": {"trajectories_timed": 100, "trajectory_wall_s": 6300.0},
        "tools": {
            "code": {"calls": 63, "mean_queue_s": 11.8, "sandbox_workers": 4, "sandbox_workers_ceiling": 4}
        },
    }
    note = sizing(summary, requests_per_s=None, in_flight=512, workers=2)["sandbox_note"]
    assert "5.9 s" in note and "(2 per worker)" in note and "tools.code.max_workers" in note
    assert "(6% of a trajectory's wall)" in note  # 5.9 s x 0.63 calls of a 63 s trajectory
    summary["tools"]["code"]["sandbox_workers"] = 3  # the pool could still grow: no note
    assert "sandbox_note" not in sizing(summary, requests_per_s=None, in_flight=512, workers=2)
    summary["tools"]["code"].update(sandbox_workers=4, mean_queue_s=1.0)  # 0.5 s each: fine
    assert "sandbox_note" not in sizing(summary, requests_per_s=None, in_flight=512, workers=2)
