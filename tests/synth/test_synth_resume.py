"""Crash safety: kill -9 a synth run at a random moment, rerun, every (task, rollout) exactly once."""

from __future__ import annotations

import collections
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq

from pipeline.schema import Trajectory
from pipeline.teacher import request_key
from stages.synth.runner import run_synth
from tests.synth.conftest import fake_tools, scripted_agent
from tests.synth.test_synth_runner import make_run

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from pipeline.config import load_config
    from stages.synth.runner import run_synth
    from pipeline.store import RunStore
    from tests.synth.conftest import fake_tools
    cfg = load_config(None, {sets!r})
    print("started", flush=True)
    run_synth(cfg, RunStore(cfg.run.location), teacher_base_url={url!r}, use_ray=False,
              tools_factory=fake_tools, progress=False)
    print("finished", flush=True)
    """
)


def start_synth_child(tmp_path: Path, sets: list[str], url: str) -> subprocess.Popen:
    """A synth run with these config overrides in a child process, returned once it has started
    (so the caller can kill -9 it mid-run)."""
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(repo=str(REPO), sets=sets, url=url))
    child = subprocess.Popen(
        [sys.executable, str(script)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == b"started"
    return child


def _pairs_in_shards(folder: Path) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for path in sorted(folder.glob("*.parquet")):
        if path.name.startswith(".tmp-"):
            continue  # a writer's temporary (readers ignore them; the rerun clears them)
        table = pq.read_table(path)  # a corrupt shard raises here
        for task_id, rollout in zip(
            table.column("task_id").to_pylist(), table.column("rollout").to_pylist(), strict=True
        ):
            counts[(task_id, rollout)] += 1
    return counts


def test_kill_minus_nine_then_rerun_writes_each_pair_exactly_once(fake_teacher, tmp_path):
    server = fake_teacher(scripted_agent, latency_s=0.05)
    overrides = {"synth.shard_size": 3, "synth.flush_s": 0.2, "synth.in_flight": 8, "synth.rollouts": 4}
    cfg, store, tasks = make_run(tmp_path, n_tasks=12, **overrides)
    sets = [f"run.root={tmp_path}", "run.name=r", *[f"{k}={v}" for k, v in overrides.items()]]
    child = start_synth_child(tmp_path, sets, server.base_url)
    moment = random.uniform(0.2, 1.5)
    time.sleep(moment)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    before = _pairs_in_shards(store.root / "raw")
    assert set(before.values()) <= {1}, f"duplicates before rerun (killed at {moment:.2f}s)"
    calls_before = len(server.requests)

    summary = run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    after = _pairs_in_shards(store.root / "raw")
    expected = {(t.task_id, r) for t in tasks for r in range(4)}
    assert set(after) == expected and set(after.values()) == {1}, (
        f"killed at {moment:.2f}s: {collections.Counter(after.values())}"
    )
    assert summary["already_done"] == len(before) and summary["trajectories"] == len(expected) - len(before)
    # answered calls are never paid twice: the rerun repeats at most the calls in flight at the kill
    answered_before = {request_key(body) for body in server.requests[:calls_before]}
    repeated = [body for body in server.requests[calls_before:] if request_key(body) in answered_before]
    assert len(repeated) <= 8 + 4, f"{len(repeated)} calls repeated (in flight: 8 rollouts + 4 plans)"
    assert not list((store.root / "raw").glob(".tmp-*")), "temporaries are cleared or never left"
    records = store.read_records("raw", Trajectory)
    assert all(r.status == "answered" for r in records)
