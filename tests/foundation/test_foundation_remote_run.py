"""Runs on object storage: a real S3 server on loopback (moto), pyarrow's S3 client, no shared disk.

Each test gives every "node" (the driver, Ray workers, a later command) its own scratch folder, so
whatever a later step reads must have come through the bucket, as on a cluster without a shared disk.
"""

from __future__ import annotations

import collections
import random
import signal
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import prompts
from pipeline.cli import app
from pipeline.run_files import RunLocationError
from pipeline.schema import Task, Trajectory
from pipeline.store import RunStore
from stages.synth.runner import run_synth
from stages.tools.registry import tool_table
from tests.fake_openai import serve_fake_teachers
from tests.object_store import (
    apply_environment,
    bucket_keys,
    moto_server,
    new_bucket,
    pairs_in_shards,
    s3_environment,
)
from tests.synth.conftest import fake_tools, run_on_ray, scripted_agent
from tests.synth.test_synth_resume import start_synth_child
from tests.synth.test_synth_runner import make_run


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def fake_teacher():
    yield from serve_fake_teachers()


@pytest.fixture
def bucket(s3_endpoint, monkeypatch, tmp_path):
    apply_environment(monkeypatch, s3_endpoint)
    monkeypatch.setenv("TRAJFORGE_SCRATCH", str(tmp_path / "driver-scratch"))
    return new_bucket(s3_endpoint)


def test_a_run_written_on_one_node_reads_whole_on_another(bucket, monkeypatch, tmp_path):
    address = f"s3://{bucket}/runs/demo"
    writer = RunStore(address)
    assert writer.remote and writer.root == tmp_path / "driver-scratch" / writer.root.name
    image = writer.images.put_bytes(_png(3))
    tasks = [Task(question=f"q{i}", images=[image], gold_answer="a") for i in range(5)]
    writer.write_records("tasks", tasks[:3], Task)
    writer.write_records("tasks", tasks[3:], Task)
    writer.update_report("tasks", {"written": 5})
    writer.save_tool_table(tool_table())
    (writer.root / "prompts").mkdir(parents=True)
    (writer.root / "prompts" / "executor_general.custom.txt").write_text("mine\n")
    assert writer.push_folder("prompts") == 1

    monkeypatch.setenv("TRAJFORGE_SCRATCH", str(tmp_path / "other-node"))  # nothing on this disk yet
    reader = RunStore(address)
    assert reader.root != writer.root and not reader.root.exists()
    assert sorted(t.task_id for t in reader.read_records("tasks", Task)) == sorted(t.task_id for t in tasks)
    assert reader.written_ids("tasks", "task_id") == {t.task_id for t in tasks}
    assert reader.read_report() == {"tasks": {"written": 5}}
    assert reader.tool_table() == tool_table()
    assert reader.images.read_bytes(image) == _png(3)  # fetched into this node's scratch
    assert reader.images.path(image).is_relative_to(tmp_path / "other-node")
    assert (reader.pull_folder("prompts") / "executor_general.custom.txt").read_text() == "mine\n"
    assert reader.images.count() == 1
    keys = bucket_keys(*_endpoint_and(bucket))
    assert len([k for k in keys if k.startswith("runs/demo/tasks/")]) == 2
    assert not [k for k in keys if ".tmp-" in k], keys  # uploads are whole: no temporaries


def _endpoint_and(bucket: str) -> tuple[str, str]:
    import os

    return os.environ["AWS_ENDPOINT_URL"], bucket


def test_an_address_with_a_credential_is_refused_without_repeating_it(tmp_path):
    with pytest.raises(RunLocationError, match="AWS_SECRET_ACCESS_KEY") as caught:
        RunStore("s3://bucket/runs/x?secret_key=hunter2-hunter2&endpoint_override=127.0.0.1:9")
    assert "hunter2" not in str(caught.value)
    result = CliRunner().invoke(app, ["filter", "--run", "s3://bucket"])
    assert result.exit_code == 2 and "prefix inside the bucket" in result.output


def test_ray_workers_without_the_drivers_disk_write_every_pair_once(bucket, fake_teacher, tmp_path, request):
    pytest.importorskip("ray")
    server = fake_teacher(scripted_agent)
    address = f"s3://{bucket}/runs/ray"
    mine = tmp_path / "my_executor.txt"  # a prompt file only the driver's disk has
    mine.write_text(prompts.load_prompt("executor_deepresearch").text + "Cite the observation you rely on.\n")
    cfg, store, tasks = make_run(tmp_path, n_tasks=4, **{"run.root": f"s3://{bucket}/runs", "run.name": "ray",
                                                        "synth.workers": 2, "synth.shard_size": 2,
                                                        "prompts.executor_deepresearch": str(mine)})  # fmt: skip
    request.addfinalizer(lambda: prompts.use_texts({}))
    wanted_version = prompts.load_prompt("executor_deepresearch").id
    mine.unlink()
    assert store.location == address
    worker_env = {"TRAJFORGE_SCRATCH": str(tmp_path / "worker-node")}
    worker_env |= s3_environment(_endpoint_and(bucket)[0])
    summary = run_on_ray(cfg, store, server.base_url, worker_env)
    pairs = pairs_in_shards(store)
    assert set(pairs) == {(t.task_id, r) for t in tasks for r in range(4)} and set(pairs.values()) == {1}
    assert summary["trajectories"] == 16 and summary["written"] == 16
    versions = {t.prompt_version for t in store.read_records("raw", Trajectory)}
    assert versions == {wanted_version} and wanted_version != "executor_deepresearch.v2"
    assert (
        server.requests[-1]["messages"][0]["content"].rstrip().endswith("Cite the observation you rely on.")
    )
    assert {k.split("/")[-1].split("-")[0] for k in store.shard_paths("raw")} == {"w0", "w1"}
    assert not (store.root / "raw").exists(), "shards go to the bucket, not the driver's disk"
    assert (tmp_path / "worker-node").exists(), "the workers kept their caches on their own disk"
    keys = bucket_keys(*_endpoint_and(bucket))
    assert any(k.startswith("runs/ray/logs/synth.") for k in keys), "each node's log lands in the run"
    assert "runs/ray/tools.json" in keys


def test_kill_minus_nine_mid_run_then_rerun_loses_nothing_and_duplicates_nothing(
    bucket, fake_teacher, tmp_path
):
    server = fake_teacher(scripted_agent, latency_s=0.05)
    overrides = {"run.root": f"s3://{bucket}/runs", "run.name": "killed", "synth.shard_size": 3,
                 "synth.flush_s": 0.2, "synth.in_flight": 8, "synth.rollouts": 4}  # fmt: skip
    cfg, store, tasks = make_run(tmp_path, n_tasks=12, **overrides)
    child = start_synth_child(tmp_path, [f"{k}={v}" for k, v in overrides.items()], server.base_url)
    deadline = time.monotonic() + 60
    while not store.shard_paths("raw") and time.monotonic() < deadline:  # some shards are in the bucket
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.5))
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    before = pairs_in_shards(store)
    expected = {(t.task_id, r) for t in tasks for r in range(4)}
    assert before and set(before) < expected, "the run should have been killed mid-way"
    assert set(before.values()) == {1}, "duplicates before the rerun"

    summary = run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    after = pairs_in_shards(store)
    assert set(after) == expected and set(after.values()) == {1}, collections.Counter(after.values())
    assert summary["already_done"] == len(before) and summary["trajectories"] == len(expected) - len(before)
    records = store.read_records("raw", Trajectory)
    assert len(records) == len(expected) and all(r.status == "answered" for r in records)


def test_synth_filter_view_publish_against_the_bucket_each_from_a_fresh_disk(bucket, monkeypatch, tmp_path):
    address = f"s3://{bucket}/runs/cli"
    world = [
        "--set",
        f"world.dir={tmp_path / 'world'}",
        "--set",
        "world.entities=40",
        "--set",
        "world.tasks=8",
    ]
    common = [*world, "--set", "seeds.limit=4", "--set", "synth.rollouts=2"]

    def run(step: str, *args: str):
        monkeypatch.setenv("TRAJFORGE_SCRATCH", str(tmp_path / f"node-{step}"))  # a new machine each time
        result = CliRunner().invoke(app, list(args))
        assert result.exit_code == 0, result.output
        return result.output

    out = run("synth", "synth", "--run", address, "--no-ray", *common)
    assert f"raw trajectories in {address}/raw" in out
    out = run("filter", "filter", "--run", address, "--no-progress")
    store = RunStore(address)
    kept = store.read_records("kept", Trajectory)
    raw = store.read_records("raw", Trajectory)
    assert len(raw) == 8 and kept, out
    run("view", "view", "--run", address, "--out", str(tmp_path / "site"))
    pages = list((tmp_path / "site" / "t").glob("*.html"))
    assert len(pages) >= len(raw)
    images = {ref for t in raw for ref in t.images}
    assert len(list((tmp_path / "site" / "img").iterdir())) >= len(images)
    out = run(
        "publish",
        "publish",
        "--run",
        address,
        "--repo",
        "me/data",
        "--dry-run",
        "--out",
        str(tmp_path / "hub"),
    )
    assert f'"rows": {len(kept)}' in out
    evaluated = f"s3://{bucket}/runs/cli-eval"  # the oracle on the world tasks the run did not use
    run("eval", "eval", "--run", evaluated, "--train-run", address, *world, "--set", "tools.code.workers=1")
    report = RunStore(evaluated).read_report()["eval"]
    assert report["questions"] == 8 - 4 and report["accuracy"] == 1.0, report
    assert "cli-eval" in run("table", "eval-table", evaluated)
    keys = bucket_keys(*_endpoint_and(bucket))
    for wanted in ("config.yaml", "report.json", "tools.json"):
        assert f"runs/cli/{wanted}" in keys
    assert {"synth", "filter"} <= set(store.read_report())
    assert any(k.startswith("runs/cli/logs/filter.") for k in keys)


def _png(seed: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed * 20, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_addresses_split_and_join_as_folders_do() -> None:
    from pipeline.run_files import is_remote, join_location, split_location

    address = "s3://bucket/runs/demo?endpoint_override=127.0.0.1:9000&scheme=http"
    parent, name = split_location(address)
    assert (parent, name) == ("s3://bucket/runs?endpoint_override=127.0.0.1:9000&scheme=http", "demo")
    assert join_location(parent, name) == address
    assert split_location("file:///data/runs/demo") == ("/data/runs", "demo")
    assert not is_remote("file:///data/runs/demo") and not is_remote("runs/demo") and is_remote(address)
    assert RunStore("file:///tmp/x").root == Path("/tmp/x")
    with pytest.raises(RunLocationError, match="prefix inside the bucket"):
        split_location("s3://bucket")


def test_one_driver_per_run_in_a_bucket_across_machines(bucket, fake_teacher, tmp_path):
    import json

    from stages.synth.lease import LEASE_KEY, DriverLease, LeaseHeld

    server = fake_teacher(scripted_agent)
    cfg, store, _ = make_run(tmp_path, n_tasks=2, **{"run.root": f"s3://{bucket}/runs", "run.name": "lease"})
    other = {"host": "node-b", "pid": 4242, "token": "theirs", "beat": time.time()}
    store.write_bytes(LEASE_KEY, json.dumps(other).encode())
    with pytest.raises(LeaseHeld, match=r"node-b \(pid 4242\).*rerun in \d+s"):
        run_synth(
            cfg,
            store,
            teacher_base_url=server.base_url,
            use_ray=False,
            tools_factory=fake_tools,
            progress=False,
        )
    assert not server.requests and not store.shard_paths("raw"), "refused before any work"

    store.write_bytes(LEASE_KEY, json.dumps(other | {"beat": time.time() - 120}).encode())  # killed 2 min ago
    summary = run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    assert summary["trajectories"] == 2 * 4 and store.read_text(LEASE_KEY) is None, (
        "taken over, then released"
    )

    with DriverLease(store, settle_s=0.1, beat_s=0.1) as lease:  # a heartbeat keeps it fresh
        first = json.loads(store.read_text(LEASE_KEY))["beat"]
        time.sleep(0.5)
        held = json.loads(store.read_text(LEASE_KEY))
        assert held["token"] == lease.token and held["beat"] > first
        store.write_bytes(LEASE_KEY, json.dumps(other | {"token": "late"}).encode())  # lost a race
    assert json.loads(store.read_text(LEASE_KEY))["token"] == "late", "never deletes another driver's lease"


def test_any_fsspec_filesystem_holds_a_run_and_an_unknown_scheme_says_what_to_do(tmp_path) -> None:
    store = RunStore("memory://trajforge-test/runs/m")  # fsspec's in-memory filesystem, through pyarrow
    tasks = [Task(question=f"q{i}", gold_answer="a") for i in range(3)]
    store.write_records("tasks", tasks, Task)
    store.update_report("tasks", {"written": 3})
    again = RunStore("memory://trajforge-test/runs/m")
    assert again.written_ids("tasks", "task_id") == {t.task_id for t in tasks}
    assert again.read_report() == {"tasks": {"written": 3}}
    with pytest.raises(RunLocationError, match="install the fsspec package for its scheme"):
        RunStore("nosuchscheme://bucket/runs/x")
