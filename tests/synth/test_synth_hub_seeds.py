"""`seeds.source: hub`: the R1V4 seed presets on files in their published layouts, read through
`datasets` from a local path with the network shut, and a Hub id asked for as the preset says."""

from __future__ import annotations

import base64
import io
import logging
import socket
from pathlib import Path

import pytest
from PIL import Image

from pipeline.config import load_config
from pipeline.schema import Task
from pipeline.store import RunStore
from stages.tasks.seeds import SeedError, prepare_tasks

datasets = pytest.importorskip("datasets")


def _png(w: int, h: int, shade: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (w, h), (shade, 80, 160)).save(buffer, format="PNG")
    return buffer.getvalue()


def _prepare(tmp_path: Path, **sets: object):
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=r", *[f"{k}={v}" for k, v in sets.items()]])
    store = RunStore(cfg.run.dir)
    return store, prepare_tasks(cfg, store, logging.getLogger("test"))


def _hub(tmp_path: Path, preset: str, path: Path | None = None, **more: object):
    """Seeds from `seeds.source: hub` with a preset (and a local copy at `path`)."""
    sets = {"seeds.source": "hub", "seeds.preset": preset, **more}
    if path is not None:
        sets["seeds.path"] = str(path)
    return _prepare(tmp_path, **sets)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every attempt to open a connection is recorded and refused."""
    attempts: list[object] = []

    def refuse(*args: object, **kwargs: object) -> None:
        attempts.append(args[1:] or kwargs)
        raise OSError("network is shut in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def _write(folder: Path, name: str, rows: dict, features: dict) -> Path:
    """A parquet file as `datasets` writes it (image structs {bytes, path}, HF features metadata)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    datasets.Dataset.from_dict(rows, features=datasets.Features(features)).to_parquet(str(path))
    return path


_IMAGES = datasets.List(datasets.Image())
_MESSAGES = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})


def test_thyme_rl_base64_images_from_a_local_copy(tmp_path: Path, no_network: list, caplog) -> None:
    b64 = [base64.b64encode(_png(1200, 1100, s)).decode() for s in range(2)]
    _write(
        tmp_path / "Thyme-RL" / "data",
        "train-00000-of-00002.parquet",
        {
            "messages": [[{"role": "user", "content": "<image>\nsandbox prompt"}]] * 3,
            "images": [[b64[0]], [b64[1]], ["@@not-an-image@@" * 40]],
            "question": ["What is written on the sign?", "How many birds?", "Broken?"],
            "solution": ["EXIT", "3", "x"],
        },
        {
            "messages": _MESSAGES,
            "images": datasets.List(datasets.Value("string")),
            "question": datasets.Value("string"),
            "solution": datasets.Value("string"),
        },
    )
    with caplog.at_level(logging.WARNING):
        store, stats = _hub(tmp_path, "thyme-rl", tmp_path / "Thyme-RL", **{"seeds.min_resolution": 1024})
    tasks = {t.question: t for t in store.read_records("tasks", Task)}
    assert sorted(tasks) == ["How many birds?", "What is written on the sign?"]
    sign = tasks["What is written on the sign?"]
    assert sign.gold_answer == "EXIT" and store.images.open(sign.images[0]).size == (1200, 1100)
    assert sign.mode == "general" and sign.category == "perception"  # R1V4: thinking with images
    assert stats.errors == 1 and "row 2" in caplog.text  # a bad row is skipped, counted and said
    assert not no_network


def test_finevision_first_turn_of_a_subset_folder(tmp_path: Path, no_network: list, caplog) -> None:
    texts = datasets.List({"user": datasets.Value("string"), "assistant": datasets.Value("string")})
    _write(
        tmp_path / "FineVision" / "CoSyn_400k",
        "train-00000-of-00001.parquet",
        {
            "images": [[{"bytes": _png(64, 48), "path": None}], [{"bytes": _png(30, 30, 9), "path": None}]],
            "texts": [
                [
                    {"user": "Which bar is tallest?", "assistant": "March"},
                    {"user": "And lowest?", "assistant": "May"},
                ],
                [],
            ],
            "source": ["CoSyn_400k", "CoSyn_400k"],
        },
        {"images": _IMAGES, "texts": texts, "source": datasets.Value("string")},
    )
    with caplog.at_level(logging.WARNING):
        store, stats = _hub(tmp_path, "finevision", tmp_path / "FineVision" / "CoSyn_400k")
    (task,) = store.read_records("tasks", Task)
    assert (task.question, task.gold_answer) == ("Which bar is tallest?", "March")
    assert store.images.open(task.images[0]).size == (64, 48)
    assert stats.errors == 1 and "texts.0.user" in caplog.text  # the row without turns, said
    assert not no_network
    # FineVision on the Hub has one subset per source: without seeds.subset it says so
    with pytest.raises(SeedError, match=r"seeds\.subset"):
        _hub(tmp_path / "b", "finevision")


def _fvqa(folder: Path, split: str, ids: list[int]) -> None:
    """`lmms-lab/FVQA`'s file layout: fvqa_<split>.parquet side by side, the split in the name."""
    reward = {
        "ground_truth": datasets.Value("string"),
        "candidate_answers": datasets.List(datasets.Value("string")),
        "style": datasets.Value("string"),
    }
    n = len(ids)
    _write(
        folder,
        f"fvqa_{split}.parquet",
        {
            "data_id": [f"fvqa_{split}_{i}" for i in ids],
            "data_source": [f"mmsearch_r1/fvqa_{split}"] * n,
            "prompt": [[{"role": "user", "content": f"Who designed building {i}?"}] for i in ids],
            "images": [[{"bytes": _png(20 + i, 20), "path": None}] for i in ids],
            "image_urls": [[] for _ in ids],
            "reward_model": [
                {"ground_truth": f"Architect {i}", "candidate_answers": [f"A. {i}"], "style": "rule"}
                for i in ids
            ],
            "category": ["search_required"] * n,
        },
        {
            "data_id": datasets.Value("string"),
            "data_source": datasets.Value("string"),
            "prompt": _MESSAGES,
            "images": _IMAGES,
            "image_urls": datasets.List(datasets.Value("string")),
            "reward_model": reward,
            "category": datasets.Value("string"),
        },
    )


def test_fvqa_train_split_through_the_fvqa_reader(tmp_path: Path, no_network: list) -> None:
    folder = tmp_path / "FVQA"
    _fvqa(folder, "train", [0, 1])
    _fvqa(folder, "test", [7])
    store, stats = _hub(tmp_path, "fvqa", folder)
    tasks = sorted(store.read_records("tasks", Task), key=lambda t: t.source_id)
    assert [t.source_id for t in tasks] == ["fvqa_train_0", "fvqa_train_1"]  # train only
    assert tasks[1].question == "Who designed building 1?"
    assert tasks[1].gold_answer == "Architect 1" and tasks[1].answer_aliases == ["A. 1"]
    assert store.images.open(tasks[1].images[0]).size == (21, 20)
    assert {(t.category, t.mode) for t in tasks} == {("search", "deepresearch")}
    assert stats.written == 2 and not no_network


def test_livevqa_flat_table_with_unzipped_images(tmp_path: Path, no_network: list, caplog) -> None:
    images = tmp_path / "unzipped" / "News_imgs"
    images.mkdir(parents=True)
    (images / "cnn_1.jpg").write_bytes(_png(50, 40))
    _write(
        tmp_path / "LiveVQA",
        "Dataset_viewer_flat.parquet",
        {
            "id": ["0_2025", "1_2025"],
            "question": ["Based on the image, what event is this?", "Who is on stage?"],
            "options": [["A. debate", "B. rally"], ["A. Dave", "B. John"]],
            "Ground_Truth": ["A", "A"],
            "Ground_Truth_List": [["CBS News vice presidential debate", "CBS debate"], ["Dave Smith"]],
            "img_path": ["News_imgs/cnn_1.jpg", "News_imgs/missing.png"],
            "level": [1, 1],
            "topic": ["politics", "music"],
            "source": ["CNN World", "BBC"],
        },
        {
            "id": datasets.Value("string"),
            "question": datasets.Value("string"),
            "options": datasets.List(datasets.Value("string")),
            "Ground_Truth": datasets.Value("string"),
            "Ground_Truth_List": datasets.List(datasets.Value("string")),
            "img_path": datasets.Value("string"),
            "level": datasets.Value("int64"),
            "topic": datasets.Value("string"),
            "source": datasets.Value("string"),
        },
    )
    with caplog.at_level(logging.WARNING):
        path = tmp_path / "LiveVQA" / "Dataset_viewer_flat.parquet"
        store, stats = _hub(tmp_path, "livevqa", path, **{"seeds.image_root": str(tmp_path / "unzipped")})
    (task,) = store.read_records("tasks", Task)
    assert task.source_id == "0_2025" and task.gold_answer == "CBS News vice presidential debate"
    assert task.answer_aliases == ["CBS debate"] and task.category == "interleaved"
    assert stats.errors == 1 and "missing.png" in caplog.text
    assert not no_network


def test_a_hub_id_is_asked_for_with_its_split_and_streamed(tmp_path: Path, monkeypatch) -> None:
    """The Hub boundary: `datasets.load_dataset` gets the preset's id, split and streaming; a local
    copy in the same layout stands in for the download."""
    folder = tmp_path / "FVQA"
    _fvqa(folder, "train", [3])
    calls: list[tuple] = []
    real = datasets.load_dataset

    def fake(path: str, name: str | None = None, **kwargs: object):
        calls.append((path, name, kwargs.get("split"), kwargs.get("streaming")))
        return real(str(folder), name, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", fake)
    store, _ = _hub(tmp_path, "fvqa", **{"seeds.limit": 1})
    assert calls == [("lmms-lab/FVQA", None, "train", True)]
    (task,) = store.read_records("tasks", Task)
    assert (task.source_id, task.source) == ("fvqa_train_3", "hub:lmms-lab/FVQA")
    assert store.read_report()["tasks"]["written"] == 1


def test_a_dataset_that_cannot_be_opened_is_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    def missing(path: str, name: str | None = None, **kwargs: object):
        raise datasets.exceptions.DatasetNotFoundError(f"Dataset '{path}' doesn't exist on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", missing)
    with pytest.raises(SeedError, match=r"cannot open Hub dataset someone/nothing \(split validation"):
        _prepare(
            tmp_path, **{"seeds.source": "hub", "seeds.path": "someone/nothing", "seeds.split": "validation"}
        )
    with pytest.raises(SeedError, match=r"needs seeds\.path"):
        _prepare(tmp_path / "b", **{"seeds.source": "hub"})
