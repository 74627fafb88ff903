"""Seed rows that name things other than image files (issue 26): /dev/zero, a FIFO, a folder,
as a bare path or a Hub-style `{path: ...}` cell, and an oversized question. Each costs its row
only, quickly and without reading more than the byte limit."""

from __future__ import annotations

import io
import json
import logging
import os
import resource
import threading
import time

import pytest
from PIL import Image

from pipeline.config import load_config
from pipeline.images import ImageError, read_file_bytes, read_image
from pipeline.schema import Task
from pipeline.store import RunStore
from stages.readers.cells import SeedError, image_bytes
from stages.tasks.seeds import prepare_tasks


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 100, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.png"
    os.mkfifo(path)
    return path


@pytest.mark.timeout(20)
def test_non_files_are_refused_without_reading_them(tmp_path, fifo):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for path in ("/dev/zero", fifo, tmp_path):
        started = time.perf_counter()
        with pytest.raises(ImageError, match="not a regular file"):
            read_file_bytes(path)
        with pytest.raises(ImageError, match="not a regular file"):
            read_image(path)
        assert time.perf_counter() - started < 1.0
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 50_000  # /dev/zero was read up to memory exhaustion before


def test_a_file_over_the_limit_is_refused(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(b"\x89PNG" + bytes(5000))
    with pytest.raises(ImageError, match="exceeds the 1000-byte limit"):
        read_file_bytes(path, 1000)
    assert read_file_bytes(path, 10_000)[:4] == b"\x89PNG"


@pytest.mark.timeout(20)
def test_hub_style_path_cells_go_through_the_same_guard(tmp_path, fifo):
    for cell in ({"bytes": None, "path": "/dev/zero"}, {"path": str(fifo)}, "/dev/zero", str(tmp_path)):
        with pytest.raises(SeedError, match="not a regular file"):
            image_bytes(cell, tmp_path)


@pytest.mark.timeout(60)
def test_synth_seeds_skip_device_fifo_folder_and_huge_question_rows(tmp_path, fifo, caplog):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "ok.png").write_bytes(_png())
    rows = [
        {"image": "/dev/zero", "question": "Zero?", "answer": "x"},
        {"image": str(fifo), "question": "Pipe?", "answer": "x"},
        {"image": {"bytes": None, "path": "/dev/zero"}, "question": "Hub cell?", "answer": "x"},
        {"image": str(seeds), "question": "Folder?", "answer": "x"},
        {"image": "ok.png", "question": "Q" * 200_000, "answer": "x"},
        {"image": "ok.png", "question": "Which colour is the card?", "answer": "blue"},
    ]
    (seeds / "seeds.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    cfg = load_config(
        None,
        [f"run.root={tmp_path}", "run.name=r", "seeds.source=jsonl", f"seeds.path={seeds / 'seeds.jsonl'}"],
    )
    store = RunStore(cfg.run.dir)
    done = {}

    def prepare():
        done["stats"] = prepare_tasks(cfg, store, logging.getLogger("test"))

    with caplog.at_level(logging.WARNING):
        worker = threading.Thread(target=prepare, daemon=True)  # a FIFO once hung synth here
        worker.start()
        worker.join(30)
    assert "stats" in done, "seed preparation hung"
    assert [t.question for t in store.read_records("tasks", Task)] == ["Which colour is the card?"]
    assert done["stats"].errors == 5
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert messages.count("not a regular file") == 4
    assert "seeds.max_question_chars" in messages
