"""Run store: atomic shards survive a killed writer; resume completes without duplicates; image guards."""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import signal
import time
from pathlib import Path

import pytest
from PIL import Image

from pipeline.images import ImageError, decode_image, read_image
from pipeline.schema import Task, Trajectory, from_table, to_table
from pipeline.store import RunStore

N_TASKS = 400


def tasks(n: int = N_TASKS) -> list[Task]:
    return [Task(question=f"question {i} " + "padding " * 200, source="test") for i in range(n)]


def _writer(root: str, batch: int) -> None:
    """Writes shards of tasks not yet written, slowly, until done (a stage that resumes)."""
    store = RunStore(root)
    done = store.written_ids("tasks", "task_id")
    todo = [t for t in tasks() if t.task_id not in done]
    for start in range(0, len(todo), batch):
        store.write_records("tasks", todo[start : start + batch], Task)


def test_killed_writer_leaves_no_partial_shard_and_rerun_completes(tmp_path: Path) -> None:
    root = str(tmp_path / "run")
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_writer, args=(root, 5))
    proc.start()
    store = RunStore(root)
    deadline = time.time() + 60
    while len(store.shard_paths("tasks")) < 3 and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join()
    written_before = len(store.written_ids("tasks", "task_id"))
    assert 0 < written_before < N_TASKS, "the writer should have been killed mid-way"
    for path in store.shard_paths("tasks"):  # every visible shard is complete and readable
        assert from_table(store.read_shard(path), Task)
    store.clear_temporaries()
    assert not list((tmp_path / "run" / "tasks").glob(".tmp-*"))
    _writer(root, 50)  # the rerun
    table = store.read_table("tasks")
    ids = table.column("task_id").to_pylist()
    assert len(ids) == N_TASKS == len(set(ids))


def test_records_round_trip_through_arrow(tmp_path: Path) -> None:
    from pipeline.schema import Step

    trajectory = Trajectory(
        task_id="t-1",
        question="q",
        rollout=2,
        teacher="oracle",
        prompt_version="v1",
        steps=[Step(index=0, think="a", action="tool_call", tool_name="code", arguments='{"code": "1"}')],
        final_answer="x",
    )
    again = from_table(to_table([trajectory], Trajectory), Trajectory)
    assert again == [trajectory]
    assert trajectory.trajectory_id.startswith("t-1-r2-")
    other = Trajectory(task_id="t-1", question="q", rollout=2, teacher="gpt", prompt_version="v1")
    assert other.trajectory_id != trajectory.trajectory_id
    assert Task(question="q", images=["a"]).task_id == Task(question="q", images=["a"]).task_id
    assert Task(question="q", images=["a"]).task_id != Task(question="q", images=["b"]).task_id


def test_image_store_is_content_addressed(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    image = Image.new("RGB", (32, 16), (200, 10, 10))
    ref = store.images.put_image(image)
    assert store.images.put_image(image) == ref and len(ref) == 64
    assert store.images.open(ref).size == (32, 16)


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", size).save(buffer, format="PNG")  # 1-bit: a huge canvas in a few KB
    return buffer.getvalue()


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    bomb = _png((20_000, 20_000))
    assert len(bomb) < 200_000
    with pytest.raises(ImageError, match=r"bomb\.png: .*decompression bomb"):
        decode_image(bomb, name="bomb.png")
    big = tmp_path / "big.png"
    big.write_bytes(_png((9_000, 9_000)))  # 81 MP: under PIL's own alarm, over our limit
    with pytest.raises(ImageError, match="pixels exceeds the limit"):
        RunStore(tmp_path).images.put_file(big)
    assert decode_image(_png((64, 64))).size == (64, 64)


def test_truncated_jpeg_and_non_images_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.effect_noise((256, 256), 64).convert("RGB").save(buffer, format="JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated"):
        read_image(path)
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        read_image(text)
    with pytest.raises(ImageError, match="cannot read"):
        read_image(tmp_path / "missing.png")
