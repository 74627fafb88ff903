"""Runner + executor + planner, in process, against the loopback fake teacher and fake tools."""

from __future__ import annotations

import asyncio
import collections
import io
import json
import random

import pytest
from PIL import Image

from pipeline.config import load_config
from pipeline.schema import Plan, Task, Trajectory
from pipeline.store import RunStore
from stages.synth.runner import run_synth
from tests.synth.conftest import PLAN, Fault, completion, fake_tools, scripted_agent


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (seed * 40 % 256, 90, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_run(tmp_path, n_tasks: int = 3, **overrides):
    # the fake teacher answers at once, but on a loaded 2-core box (Ray starting, the other test
    # worker busy) a reply can take over a second; a short timeout would then retry, and the tests
    # that count requests would see one call twice. Tests that inject hangs set their own timeout.
    sets = [
        f"run.root={tmp_path}",
        "run.name=r",
        "teacher.timeout_s=30.0",
        "teacher.max_retries=6",
        "synth.flush_s=0.2",
        *[f"{k}={v}" for k, v in overrides.items()],
    ]
    cfg = load_config(None, sets)
    store = RunStore(cfg.run.location)
    tasks = [
        Task(
            question=f"What is shown in picture {i}?",
            images=[store.images.put_bytes(_png(i))],
            gold_answer="x",
        )
        for i in range(n_tasks)
    ]
    store.write_records("tasks", tasks, Task)
    return cfg, store, tasks


def test_plan_execute_and_rerun_makes_zero_teacher_calls(fake_teacher, tmp_path):
    server = fake_teacher(scripted_agent)
    cfg, store, tasks = make_run(tmp_path, n_tasks=3)
    summary = run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    trajectories = store.read_records("raw", Trajectory)
    assert len(trajectories) == 3 * 4 and summary["trajectories"] == 12
    assert {(t.task_id, t.rollout) for t in trajectories} == {(t.task_id, r) for t in tasks for r in range(4)}
    traj = next(t for t in trajectories if t.rollout == 1)
    assert traj.status == "answered" and traj.final_answer == "answer-1"
    # a server's private reply fields (the world's truth) never reach the data
    assert "wrong_answer" not in traj.model_dump_json()
    assert [s.action for s in traj.steps] == ["tool_call", "tool_call", "answer"]
    assert [s.plan_step for s in traj.steps] == [1, 2, 3]  # each step records the plan step it serves
    assert traj.plan_valid and json.loads(traj.plan)[0]["tool_name"] == "code"
    crop = traj.steps[0]
    assert crop.observation_images and store.images.open(crop.observation_images[0]).size == (32, 48)
    assert traj.steps[1].observation_text == "1. Result for x"
    assert traj.teacher_calls == 3 and traj.prompt_tokens == 30
    assert all(s.teacher_latency_s > 0 for s in traj.steps)
    plans = store.read_records("plans", Plan)
    assert len(plans) == 3 and all(p.valid for p in plans)

    # the executor context: question verbatim, image names, the plan; rollout sent as seed
    first = next(r for r in server.requests if r["messages"][0]["content"].startswith("You are a multimodal"))
    user = first["messages"][1]["content"]
    text = next(part["text"] for part in user if part["type"] == "text")
    assert tasks[0].question in text or any(t.question in text for t in tasks)
    assert "image_0.png" in text and "Plan:" in text
    assert user[0]["type"] == "image_url" and user[0]["image_url"]["url"].startswith("data:image/")
    assert "seed" in first

    calls = len(server.requests)
    assert calls == 3 + 12 * 3
    # rerun: nothing pending; and after deleting the shards, everything comes from the replay cache
    again = run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    assert again["trajectories"] == 0 and len(server.requests) == calls
    for key in store.shard_paths("raw") + store.shard_paths("plans"):
        store.delete_shard(key)
    redo = run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    assert redo["trajectories"] == 12 and len(server.requests) == calls  # zero teacher calls
    assert redo["teacher"]["cache_hits"] == 3 + 12 * 3
    assert sorted(t.final_answer or "" for t in store.read_records("raw", Trajectory)) == sorted(
        t.final_answer or "" for t in trajectories
    )


def test_invalid_plan_retried_with_errors_then_recorded_failed(fake_teacher, tmp_path):
    def handler(body):
        system = body["messages"][0]["content"]
        if system.startswith("You are a planning agent"):
            return '[{"description": "only one", "tool_name": "fly", "parameters": {}}]'
        return "<think>ok</think><answer>a</answer>"

    server = fake_teacher(handler)
    cfg, store, _ = make_run(tmp_path, n_tasks=1, **{"synth.rollouts": 1, "synth.plan_retries": 2})
    run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    (plan,) = store.read_records("plans", Plan)
    assert not plan.valid and plan.attempts == 3
    assert any("fly" in e for e in plan.errors) and any("2 to 10" in e for e in plan.errors)
    retry = [
        r for r in server.requests if r["messages"][0]["content"].startswith("You are a planning agent")
    ][-1]
    assert "The plan is invalid" in retry["messages"][-1]["content"]  # the errors were shown
    (traj,) = store.read_records("raw", Trajectory)
    assert traj.status == "answered" and traj.plan is None and traj.plan_valid is False


def test_limits_unknown_tools_and_unreadable_turns(fake_teacher, tmp_path):
    def handler(body):
        seed = body.get("seed", 0)
        if seed == 0:  # loops forever on a tool that does not exist
            return '<think>hm</think><tool_call>{"name": "teleport", "arguments": {}}</tool_call>'
        if seed == 1:  # unreadable turns
            return "I think the answer is 4"
        return completion('<think>long</think><tool_call>{"name": "code", "arguments": {}}</tool_call>') | {
            "usage": {"prompt_tokens": 40_000, "completion_tokens": 5, "total_tokens": 40_005}
        }

    server = fake_teacher(handler)
    cfg, store, _ = make_run(
        tmp_path, n_tasks=1, **{"synth.rollouts": 3, "synth.plan": False, "synth.max_turns": 3}
    )
    run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    by_rollout = {t.rollout: t for t in store.read_records("raw", Trajectory)}
    assert by_rollout[0].status == "turn_limit" and len(by_rollout[0].steps) == 3
    assert "unknown tool 'teleport'" in by_rollout[0].steps[0].error
    assert by_rollout[1].status == "turn_limit" and by_rollout[1].steps[0].action == "invalid"
    assert by_rollout[1].format_errors and "unreadable turn" in by_rollout[1].steps[0].error
    assert by_rollout[2].status == "token_limit" and len(by_rollout[2].steps) == 1
    assert all(t.failure_reason for t in by_rollout.values())


def test_twenty_percent_faults_every_task_ends_with_a_reason(fake_teacher, tmp_path):
    rng = random.Random(7)
    faults = [
        Fault(429, {"Retry-After": "0.05"}),
        Fault(500),
        Fault(hang_s=3.0),
        Fault(200, body="{malformed"),
        Fault(503),
    ]

    def handler(body):
        if rng.random() < 0.2:
            return rng.choice(faults)
        return scripted_agent(body)

    server = fake_teacher(handler)
    cfg, store, tasks = make_run(
        tmp_path, n_tasks=4, **{"teacher.timeout_s": 0.4, "teacher.max_retries": 3, "synth.rollouts": 3}
    )
    summary = run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    trajectories = store.read_records("raw", Trajectory)
    pairs = collections.Counter((t.task_id, t.rollout) for t in trajectories)
    assert set(pairs) == {(t.task_id, r) for t in tasks for r in range(3)} and set(pairs.values()) == {1}
    for traj in trajectories:
        assert traj.status in ("answered", "failed"), traj.status
        if traj.status == "failed":
            assert traj.failure_reason and traj.failure_reason.startswith("teacher:")
    assert summary["teacher"]["retries"] > 0
    log = (store.root / "logs" / "synth.log").read_text() if summary["errors"] else ""
    assert summary["errors"] == 0 or "failed" in log


@pytest.mark.parametrize("role", ["user", "tool"])
def test_observation_role_reaches_the_teacher(fake_teacher, tmp_path, role):
    server = fake_teacher(scripted_agent)
    cfg, store, _ = make_run(
        tmp_path, n_tasks=1, **{"synth.rollouts": 1, "synth.plan": False, "synth.observation_role": role}
    )
    run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    last = server.requests[-1]["messages"]
    observation = last[3]
    assert observation["role"] == role
    if role == "user":
        parts = observation["content"]
        assert parts[0]["text"].startswith("<observation>")
    else:  # OpenAI takes only text in a tool message: the crop follows in a user message
        assert isinstance(observation["content"], str) and observation["content"]
        parts = last[4]["content"]
        assert last[4]["role"] == "user"
    assert any(p["type"] == "image_url" for p in parts)  # the crop goes back to the teacher
    assert PLAN  # the plan fixture stays importable for other tests


def test_each_trajectory_warms_its_tools_once_with_its_input_images(fake_teacher, tmp_path):
    """The hook that lets the code tool start its input copies while turn one is in flight."""
    from tests.synth.conftest import FakeCrop

    warmed: list[tuple[str, list[str], int]] = []
    server = fake_teacher(scripted_agent)

    class WarmCrop(FakeCrop):
        def warm(self, ctx) -> None:
            warmed.append((ctx.trajectory_id, [p.name for p in ctx.images.values()], len(server.requests)))

    cfg, store, tasks = make_run(tmp_path, n_tasks=2, **{"synth.rollouts": 2, "synth.plan": False})
    run_synth(
        cfg,
        store,
        teacher_base_url=server.base_url,
        use_ray=False,
        tools_factory=lambda *_: {"code": WarmCrop()},
        progress=False,
    )
    trajectories = store.read_records("raw", Trajectory)
    assert sorted(t for t, _, _ in warmed) == sorted(t.trajectory_id for t in trajectories)
    by_task = {t.task_id: t for t in tasks}
    for traj in trajectories:
        (names,) = [n for t, n, _ in warmed if t == traj.trajectory_id]
        assert names == [store.images.path(by_task[traj.task_id].images[0]).name]
    assert any(before == 0 for _, _, before in warmed)  # before the first teacher call went out


def test_modes_share_one_tool_per_name_and_every_tool_is_closed(fake_teacher, tmp_path):
    """General and DeepResearch tasks in one worker: one code tool (one sandbox pool), not two."""
    from tests.synth.conftest import FakeCrop, FakeSearch

    built: list = []
    closed: list = []
    used: list = []

    class Tracked:
        async def aclose(self) -> None:
            closed.append(self)

    class TrackedCrop(Tracked, FakeCrop):
        async def _run(self, arguments, ctx):
            used.append(self)
            return await super()._run(arguments, ctx)

    class TrackedSearch(Tracked, FakeSearch):
        pass

    on_loop: list[bool] = []

    def factory(cfg, mode, run_dir):
        try:  # loading a mode's tools (search indexes) must not hold up the trajectories in flight
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        tools = {"code": TrackedCrop()}
        if mode == "deepresearch":
            tools["text_search"] = TrackedSearch()
        built.extend(tools.values())
        return tools

    server = fake_teacher(scripted_agent)
    cfg, store, tasks = make_run(tmp_path, n_tasks=0, **{"synth.rollouts": 1, "synth.plan": False})
    tasks = [
        Task(question=f"q{i}", images=[store.images.put_bytes(_png(i))], gold_answer="x", mode=mode)
        for i, mode in enumerate(["general", "deepresearch", "general", "deepresearch"])
    ]
    store.write_records("tasks", tasks, Task)
    summary = run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=factory, progress=False
    )
    assert summary["statuses"] == {"answered": 4}
    codes = [t for t in built if isinstance(t, TrackedCrop)]
    assert len(codes) == 2  # each mode's factory call built one; the second mode reused the first's
    assert len(used) == 4 and {id(t) for t in used} == {id(codes[0])}  # all calls: the first mode's
    assert sorted(map(id, closed)) == sorted(map(id, built))  # the spare and the kept one, once each
    assert on_loop == [False, False]  # each mode built once, off the event loop


def test_trajectory_folder_is_made_only_when_a_tool_writes_and_removed_after(
    fake_teacher, tmp_path, monkeypatch
):
    """Making and removing a folder per trajectory cost a twentieth of a worker's CPU at a
    thousand in flight; most trajectories never write a file."""
    from pathlib import Path

    from tests.synth.conftest import FakeCrop, FakeSearch

    def agent(body):  # seed 0: search, then answer; seed 1: crop (writes a file), then answer
        turns = sum(1 for m in body["messages"] if m["role"] == "assistant")
        if turns:
            return "<think>Done.</think><answer>x</answer>"
        if body.get("seed") == 1:
            return '<think>Crop.</think><tool_call>{"name": "code", "arguments": {"code": "c"}}</tool_call>'
        return '<think>Look.</think><tool_call>{"name": "text_search", "arguments": {"queries": ["q"]}}</tool_call>'

    made: list[Path] = []
    real_mkdir = Path.mkdir

    def spy(self, *args, **kwargs):
        made.append(self)
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", spy)
    server = fake_teacher(agent)
    cfg, store, _ = make_run(tmp_path, n_tasks=2, **{"synth.rollouts": 2, "synth.plan": False})
    run_synth(
        cfg,
        store,
        teacher_base_url=server.base_url,
        use_ray=False,
        tools_factory=lambda *_: {"code": FakeCrop(), "text_search": FakeSearch()},
        progress=False,
    )
    trajectories = store.read_records("raw", Trajectory)
    assert len(trajectories) == 4 and {t.status for t in trajectories} == {"answered"}
    folders = {path.name for path in made}
    by_rollout = collections.defaultdict(set)
    for traj in trajectories:
        by_rollout[traj.rollout].add(traj.trajectory_id in folders)
    assert by_rollout == {0: {False}, 1: {True}}  # only the trajectories that wrote made one
    work = store.root / "cache" / "work"
    assert not [p for p in work.rglob("*") if p.is_file()]  # and those were removed


def test_start_up_objects_are_frozen_out_of_full_collections(fake_teacher, tmp_path):
    """Long-lived tools are what every full collection walked while the loop waited: frozen
    while the worker runs, and handed back to the collector when it closes."""
    import gc

    from tests.synth.conftest import FakeCrop

    built: list[FakeCrop] = []
    frozen_in_run: list[bool] = []

    class Checking(FakeCrop):
        async def _run(self, arguments, ctx):
            frozen_in_run.append(all(id(o) != id(self) for o in gc.get_objects(generation=2)))
            return await super()._run(arguments, ctx)

    def tools(*_):
        built.append(Checking())
        return {"code": built[-1]}

    server = fake_teacher(scripted_agent)
    cfg, store, _ = make_run(tmp_path, n_tasks=1, **{"synth.rollouts": 1, "synth.plan": False})
    gc.unfreeze()
    try:
        run_synth(
            cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=tools, progress=False
        )
        assert built and frozen_in_run and all(frozen_in_run)  # in the permanent generation
        assert gc.get_freeze_count() == 0  # the closed worker left nothing frozen
        assert any(o is built[0] for o in gc.get_objects())
    finally:
        gc.unfreeze()


def test_full_collections_are_rarer_while_a_worker_runs(fake_teacher, tmp_path):
    """Each full collection stops every trajectory in flight: a worker makes them a tenth as
    frequent while it runs, and gives the process its own thresholds back when it closes."""
    import gc

    from stages.synth.collector import FULL_COLLECTION_EVERY
    from tests.synth.conftest import FakeCrop

    seen: list[tuple[int, int, int]] = []

    class Watching(FakeCrop):
        async def _run(self, arguments, ctx):
            seen.append(gc.get_threshold())
            return await super()._run(arguments, ctx)

    server = fake_teacher(scripted_agent)
    cfg, store, _ = make_run(tmp_path, n_tasks=1, **{"synth.rollouts": 2, "synth.plan": False})
    before = gc.get_threshold()
    try:
        run_synth(
            cfg,
            store,
            teacher_base_url=server.base_url,
            use_ray=False,
            tools_factory=lambda *_: {"code": Watching()},
            progress=False,
        )
        assert seen and all(t[2] >= FULL_COLLECTION_EVERY > before[2] for t in seen)
        assert gc.get_threshold() == before
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


def test_a_trajectory_finds_its_images_off_the_event_loop(fake_teacher, tmp_path, monkeypatch):
    """Finding an image's file stats the disk, and on a run in object storage its first use
    downloads it: on the event loop either would hold every trajectory in flight."""
    from pipeline.store import ImageStore

    on_loop: list[bool] = []
    path = ImageStore.path

    def traced(self, ref):
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return path(self, ref)

    monkeypatch.setattr(ImageStore, "path", traced)
    server = fake_teacher(scripted_agent)
    cfg, store, _ = make_run(tmp_path, n_tasks=2, **{"synth.rollouts": 2, "synth.plan": False})
    summary = run_synth(
        cfg, store, teacher_base_url=server.base_url, use_ray=False, tools_factory=fake_tools, progress=False
    )
    assert summary["statuses"] == {"answered": 4}
    assert on_loop.count(False) >= 4 and True not in on_loop
