"""One reader for local datasets: the same rows in parquet, JSONL and a `save_to_disk` folder give the
same seeds (every `seeds.source`) and the same eval items, broken rows included."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from pipeline.config import load_config
from pipeline.schema import Task
from pipeline.store import RunStore
from stages.evaluate.benchmarks import BadRow, EvalItem, load_items
from stages.tasks.seeds import prepare_tasks

datasets = pytest.importorskip("datasets")
ROOT = Path(__file__).resolve().parents[2]


def _png(width: int, shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, 20), (shade, 60, 120)).save(buffer, format="PNG")
    return buffer.getvalue()


def _digest(image: bytes | Image.Image) -> str:
    opened = Image.open(io.BytesIO(image)) if isinstance(image, bytes) else image
    return hashlib.sha256(opened.convert("RGB").tobytes()).hexdigest()[:16]


#: FVQA rows (the layout both the `fvqa` seed preset and the `fvqa` eval format read); row 1's
#: answer is a list where the others have a string, and row 2 has no question (a broken row).
PROMPTS = ["<image>\nWho built this tower?", "Which river is this?", ""]
TRUTHS: list[str | list[str]] = ["Gustave Eiffel", ["Danube", "Donau"], "x"]


def _rows(image_cells: list) -> list[dict]:
    return [
        {
            "data_id": f"fvqa_{i}",
            "prompt": [{"role": "user", "content": prompt}],
            "images": [image_cells[i]],
            "reward_model": {"ground_truth": truth, "candidate_answers": [f"alias {i}"]},
        }
        for i, (prompt, truth) in enumerate(zip(PROMPTS, TRUTHS, strict=True))
    ]


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same rows as a parquet file, a JSONL file (images as paths next to it) and a
    `save_to_disk` folder, each in a folder of its own."""
    root = tmp_path_factory.mktemp("layouts")
    images = [_png(30 + i, 10 * i) for i in range(3)]
    # JSON has no bytes: answers as text for every row (a list where the row has one)
    (root / "jsonl" / "img").mkdir(parents=True)
    for i, data in enumerate(images):
        (root / "jsonl" / "img" / f"{i}.png").write_bytes(data)
    jsonl = root / "jsonl" / "fvqa_test.jsonl"
    lines = [json.dumps(r) for r in _rows([f"img/{i}.png" for i in range(3)])]
    jsonl.write_text("\n".join([lines[0], "{not json", lines[1], lines[2]]) + "\n")
    # parquet and save_to_disk hold the bytes; their answers are text, so the list row is JSON text
    table_rows = _rows([{"bytes": data, "path": None} for data in images])
    for row in table_rows:
        truth = row["reward_model"]["ground_truth"]
        row["reward_model"]["ground_truth"] = truth if isinstance(truth, str) else truth[0]
        row["reward_model"]["candidate_answers"] += [] if isinstance(truth, str) else truth[1:]
    dataset = datasets.Dataset.from_list(table_rows)
    (root / "parquet").mkdir()
    dataset.to_parquet(str(root / "parquet" / "fvqa_test.parquet"))
    dataset.save_to_disk(str(root / "saved"))
    return {"jsonl": jsonl, "parquet": root / "parquet" / "fvqa_test.parquet", "hf": root / "saved"}


def _seeds(tmp_path: Path, source: str, path: Path) -> tuple[list[Task], RunStore, dict]:
    sets = {"seeds.source": source, "seeds.path": str(path), "seeds.preset": "fvqa", "seeds.limit": "null"}
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=r", *[f"{k}={v}" for k, v in sets.items()]])
    store = RunStore(cfg.run.dir)
    stats = prepare_tasks(cfg, store, logging.getLogger("test"))
    return sorted(store.read_records("tasks", Task), key=lambda t: t.source_id), store, stats.summary()


def _seed_view(tasks: list[Task], store: RunStore) -> list[tuple]:
    return [
        (
            t.source_id,
            t.question,
            t.gold_answer,
            sorted(t.answer_aliases),
            [_digest(store.images.open(r)) for r in t.images],
        )
        for t in tasks
    ]


def _eval_view(items: list) -> list[tuple]:
    kept = sorted((i for i in items if isinstance(i, EvalItem)), key=lambda i: i.item_id)
    return [
        (
            i.item_id,
            i.question,
            i.answer,
            sorted(i.aliases),
            [_digest(x.read_bytes() if isinstance(x, Path) else x) for x in i.images],
        )
        for i in kept
    ]


EXPECTED = [
    ("fvqa_0", "Who built this tower?", "Gustave Eiffel", ["alias 0"]),
    ("fvqa_1", "Which river is this?", "Danube", ["Donau", "alias 1"]),
]


@pytest.mark.parametrize("layout", ["jsonl", "parquet", "hf"])
def test_seeds_and_eval_read_the_same_rows(tmp_path: Path, layouts: dict[str, Path], layout: str) -> None:
    path = layouts[layout]
    wanted_images = [[_digest(_png(30 + i, 10 * i))] for i in range(2)]
    expected = [(*row, images) for row, images in zip(EXPECTED, wanted_images, strict=True)]
    broken = 2 if layout == "jsonl" else 1  # the JSONL file also has a line that is not JSON
    # seeds: the layout's own source and `hub` with the local copy, one answer
    for source in (layout, "hub"):
        tasks, store, stats = _seeds(tmp_path / source, source, path)
        assert _seed_view(tasks, store) == expected, source
        assert stats["errors"] == broken and stats["written"] == 2, source
    # eval: the same rows through the FVQA format (a save_to_disk folder with --format fvqa)
    items = list(load_items(path, "fvqa", benchmark="fvqa"))
    assert _eval_view(items) == expected
    bad = {i.item_id for i in items if isinstance(i, BadRow)}
    assert bad == ({"line 2", "fvqa_2"} if layout == "jsonl" else {"fvqa_2"})  # JSONL: ids are lines


def test_jsonl_rows_are_lines_and_images_resolve_next_to_the_file(
    tmp_path: Path, layouts: dict[str, Path]
) -> None:
    from stages.tasks.seeds import iter_rows

    cfg = load_config(None, [f"run.root={tmp_path}", "seeds.source=jsonl", f"seeds.path={layouts['jsonl']}"])
    found = list(iter_rows(cfg))
    assert [row_id for row_id, _, _ in found] == ["line 1", "line 2", "line 3", "line 4"]
    assert "not valid JSON" in found[1][1]["__error__"]
    assert {base for _, _, base in found} == {layouts["jsonl"].parent}


def test_a_local_read_copies_nothing_and_imports_no_torch(tmp_path: Path, layouts: dict[str, Path]) -> None:
    """Even `streaming: false`, a local parquet file is read where it lies (no Arrow cache copy),
    and opening a stream does not import torch (1.5 s CPU that plain iteration never uses)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    code = (
        "import sys\n"
        "from stages.readers.rows import HubSource, rows\n"
        f"found = list(rows(HubSource({str(layouts['parquet'])!r}, streaming=False)))\n"
        "assert len(found) == 3, found\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "HF_DATASETS_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"
    # (streaming leaves an empty lock file there, nothing else)
    assert sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) == 0


def test_json_lines_keep_going_past_a_broken_line(tmp_path: Path) -> None:
    """Objects over several lines or back to back, a top-level array, a line that is not JSON or
    not UTF-8, and an object the file ends inside: each known by the line it starts on."""
    from stages.readers.json_lines import json_records

    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b'{"a": 1}\n\n{not json\n{"b": [1,\n  2]} {"c": 3}\n[{"d": 1}, {"e": 2}]\n\xff\xfe\n{"f": "g"'
    )
    assert [(where, value, bool(error)) for where, value, error in json_records(path)] == [
        ("line 1", {"a": 1}, False),
        ("line 3", None, True),
        ("line 4", {"b": [1, 2]}, False),
        ("line 5", {"c": 3}, False),
        ("line 6 item 0", {"d": 1}, False),
        ("line 6 item 1", {"e": 2}, False),
        ("line 7", None, True),
        ("line 8", None, True),
    ]
