"""Seeds -> tasks: HF dataset folders, parquet, JSONL + image files, presets, filters, row errors."""

from __future__ import annotations

import io
import json
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline.config import load_config
from pipeline.schema import Task
from pipeline.store import RunStore
from stages.tasks.seeds import SeedError, prepare_tasks


def _png(w: int, h: int, shade: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (w, h), (shade, 100, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def _prepare(tmp_path, **sets):
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=r", *[f"{k}={v}" for k, v in sets.items()]])
    store = RunStore(cfg.run.dir)
    return cfg, store, prepare_tasks(cfg, store, logging.getLogger("test"))


def test_jsonl_with_image_files_min_resolution_dedupe_and_row_errors(tmp_path, caplog):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    (seeds / "big.png").write_bytes(_png(1200, 1100))
    (seeds / "big2.png").write_bytes(_png(1100, 1300, shade=9))
    (seeds / "small.png").write_bytes(_png(900, 2000))
    (seeds / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    rows = [
        {"image": "big.png", "question": "What is the plate?", "answer": "AB-1"},
        {"image": "big.png", "question": "what is the  plate?", "answer": "AB-1"},  # repeat: dropped
        {"image": "big2.png", "question": "Which colour?", "answer": ["blue", "blue", "navy"]},
        {"image": "small.png", "question": "Too small?", "answer": "x"},  # below 1024 on one side
        {"image": "missing.png", "question": "Where?", "answer": "x"},
        {"image": "broken.png", "question": "Broken?", "answer": "x"},
        {"image": "big.png", "question": "", "answer": "x"},
    ]
    lines = [json.dumps(r) for r in rows] + ["{not json"]
    (seeds / "seeds.jsonl").write_text("\n".join(lines) + "\n")
    with caplog.at_level(logging.WARNING):
        _, store, stats = _prepare(
            tmp_path,
            **{
                "seeds.source": "jsonl",
                "seeds.path": str(seeds / "seeds.jsonl"),
                "seeds.min_resolution": 1024,
            },
        )
    tasks = store.read_records("tasks", Task)
    assert sorted(t.question for t in tasks) == ["What is the plate?", "Which colour?"]
    colour = next(t for t in tasks if t.question == "Which colour?")
    assert colour.gold_answer == "blue" and colour.answer_aliases == ["navy"]  # majority answer first
    assert store.images.open(colour.images[0]).size == (1100, 1300)
    assert stats.dropped == {"duplicate": 1, "below_min_resolution": 1}
    assert stats.errors == 4
    messages = " ".join(r.getMessage() for r in caplog.records)
    for needle in ("missing.png", "not a readable image", "empty or non-text question", "not valid JSON"):
        assert needle in messages
    # a rerun with the same seeds config skips the stage and writes nothing new
    _, _, again = _prepare(
        tmp_path,
        **{"seeds.source": "jsonl", "seeds.path": str(seeds / "seeds.jsonl"), "seeds.min_resolution": 1024},
    )
    assert again.written == 0 and len(store.read_records("tasks", Task)) == 2


def test_parquet_with_hf_image_structs_and_column_mapping(tmp_path):
    table = pa.table(
        {
            "img": [{"bytes": _png(64, 64, s), "path": None} for s in range(3)],
            "prompt": ["Q0", "Q1", "Q2"],
            "label": ["a0", "a1", "a2"],
            "uid": ["u0", "u1", "u2"],
        }
    )
    pq.write_table(table, tmp_path / "seeds.parquet")
    _, store, stats = _prepare(
        tmp_path,
        **{
            "seeds.source": "parquet",
            "seeds.path": str(tmp_path / "seeds.parquet"),
            "seeds.columns": json.dumps(
                {"image": "img", "question": "prompt", "answer": "label", "id": "uid"}
            ),
            "seeds.limit": 2,
            "seeds.mode": "general",
        },
    )
    tasks = store.read_records("tasks", Task)
    assert stats.written == 2 and [t.source_id for t in tasks] == ["u0", "u1"]
    assert all(t.mode == "general" and t.gold_answer == "a" + t.question[1] for t in tasks)


def test_hf_dataset_folder_with_preset(tmp_path):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "hf"
    images = [Image.open(io.BytesIO(_png(32, 40, s))) for s in range(2)]
    ds = datasets.Dataset.from_dict(
        {
            "image": images,
            "question": ["A?", "B?"],
            "answers": [["x", "y", "x"], ["z"]],
            "question_id": [7, 8],
        },
        features=datasets.Features(
            {
                "image": datasets.Image(),
                "question": datasets.Value("string"),
                "answers": datasets.Sequence(datasets.Value("string")),
                "question_id": datasets.Value("int64"),
            }
        ),
    )
    ds.save_to_disk(str(folder))
    _, store, stats = _prepare(
        tmp_path, **{"seeds.source": "hf", "seeds.path": str(folder), "seeds.preset": "vqa"}
    )
    tasks = {t.question: t for t in store.read_records("tasks", Task)}
    assert stats.written == 2 and tasks["A?"].gold_answer == "x" and tasks["A?"].answer_aliases == ["y"]
    assert tasks["B?"].source_id == "8" and store.images.open(tasks["B?"].images[0]).size == (32, 40)


def test_bad_config_is_a_clear_error(tmp_path):
    with pytest.raises(SeedError, match=r"seeds\.path"):
        _prepare(tmp_path, **{"seeds.source": "jsonl"})
    with pytest.raises(SeedError, match=r"unknown seeds\.preset"):
        _prepare(tmp_path, **{"seeds.source": "jsonl", "seeds.path": str(tmp_path), "seeds.preset": "nope"})
