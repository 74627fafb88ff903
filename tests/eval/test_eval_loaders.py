"""Each benchmark loader on a small file in its published layout (images decode, options shown)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from stages.evaluate.benchmarks import BadRow, EvalItem, detect_format, load_items
from stages.readers.items import ANSWER_WITH_LETTER
from stages.readers.vlmeval_tsv import load as load_tsv


def png(width: int, height: int, colour: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def size(image: bytes | Path) -> tuple[int, int]:
    data = image.read_bytes() if isinstance(image, Path) else image
    with Image.open(io.BytesIO(data)) as opened:
        return opened.size


def split(results: list) -> tuple[list[EvalItem], list[BadRow]]:
    return [r for r in results if isinstance(r, EvalItem)], [r for r in results if isinstance(r, BadRow)]


def write_tsv(path: Path) -> None:
    """VLMEvalKit's MCQ TSV: base64 images, a shared image by index, a list cell, options, hint."""
    b64 = base64.b64encode(png(40, 30)).decode()
    pair = str([base64.b64encode(png(8, 8)).decode(), base64.b64encode(png(9, 9)).decode()])
    header = ["index", "image", "question", "hint", "A", "B", "C", "D", "answer", "category", "l2-category"]
    rows = [
        [
            "1",
            b64,
            "What colour is the car?",
            "Look left",
            "red",
            "blue",
            "green",
            "",
            "B",
            "direct_attributes",
            "x",
        ],
        ["2", "1", "Is the car left of the tree?", "", "yes", "no", "", "", "A", "relative_position", "x"],
        ["3", pair, "Which image is larger?", "", "first", "second", "", "", "B", "pairs", "x"],
        ["4", "99", "Dangling image reference", "", "a", "b", "", "", "A", "broken", "x"],
    ]
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n", encoding="utf-8")


def test_vlmeval_tsv(tmp_path: Path) -> None:
    path = tmp_path / "VStarBench.tsv"
    write_tsv(path)
    assert detect_format(path) == "vlmeval-tsv"
    items, bad = split(list(load_items(path)))
    assert [i.item_id for i in items] == ["1", "2", "3"]
    first, second, third = items
    assert first.benchmark == "VStarBench" and first.split == "direct_attributes" and first.mode == "general"
    assert first.options == {"A": "red", "B": "blue", "C": "green"}  # the empty D is no option
    assert first.answer == "B"
    # the options (and hint) are shown to the model, as VLMEvalKit lays them out
    assert first.question == (
        "Hint: Look left\nQuestion: What colour is the car?\nOptions:\nA. red\nB. blue\nC. green\n"
        + ANSWER_WITH_LETTER
    )
    assert [size(i) for i in first.images] == [(40, 30)]
    assert [size(i) for i in second.images] == [(40, 30)]  # "1": row 1's image
    assert [size(i) for i in third.images] == [(8, 8), (9, 9)]
    assert len(bad) == 1 and bad[0].item_id == "4" and "99" in bad[0].reason


def test_vlmeval_tsv_with_image_paths(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(png(12, 10))
    path = tmp_path / "TreeBench.tsv"
    path.write_text(
        "index\timage_path\tquestion\tA\tB\tanswer\tcategory\n0\timgs/a.png\tWhere?\tleft\tright\tA\tspatial\n"
    )
    items, bad = split(list(load_tsv(path, "TreeBench")))
    assert (
        not bad and size(items[0].images[0]) == (12, 10) and items[0].options == {"A": "left", "B": "right"}
    )


def test_mmsearch_end2end(tmp_path: Path) -> None:
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "sample_id": ["news_0", "news_1"],
            "query": ["Who designed this logo?", "When did the event happen?"],
            "query_image": pa.array([{"bytes": png(20, 20), "path": "q.png"}, None], image),
            "image_search_result": pa.array([None, None], image),
            "area": ["news", "knowledge"],
            "subfield": ["tech", "sports"],
            "timestamp": ["2024-05", "2024-06"],
            "gt_requery": ["logo designer", "event date"],
            "gt_answer": ["Ada Lovelace", "2024"],
            "alternative_gt_answers": [["A. Lovelace"], []],
        }
    )
    path = tmp_path / "end2end.parquet"
    pq.write_table(table, path)
    assert detect_format(path) == "mmsearch"
    items, bad = split(list(load_items(path, benchmark="mmsearch")))
    assert not bad and [i.item_id for i in items] == ["news_0", "news_1"]
    assert items[0].answer == "Ada Lovelace" and items[0].aliases == ["A. Lovelace"]
    assert [size(i) for i in items[0].images] == [(20, 20)] and items[1].images == []
    assert items[0].split == "news" and items[0].mode == "deepresearch" and not items[0].options


def test_fvqa_test_parquet(tmp_path: Path) -> None:
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    message = pa.struct([("content", pa.string()), ("role", pa.string())])
    reward = pa.struct(
        [("ground_truth", pa.string()), ("candidate_answers", pa.list_(pa.string())), ("style", pa.string())]
    )
    table = pa.table(
        {
            "data_id": ["fvqa_1", "fvqa_2"],
            "data_source": ["mmsearch_r1/fvqa_test", "mmsearch_r1/fvqa_test"],
            "image_urls": [[], []],
            "prompt": pa.array(
                [
                    [{"role": "user", "content": "<image>\nWhat breed is this dog?"}],
                    [{"role": "user", "content": ""}],
                ],
                pa.list_(message),
            ),
            "images": pa.array([[{"bytes": png(16, 12), "path": None}], []], pa.list_(image)),
            "reward_model": pa.array(
                [
                    {
                        "ground_truth": "Shiba Inu",
                        "candidate_answers": ["shiba", "Shiba Inu"],
                        "style": "rule",
                    },
                    {"ground_truth": "x"},
                ],
                reward,
            ),
            "category": ["search_required", "search_free"],  # train has it; test has none
        }
    )
    path = tmp_path / "fvqa_test.parquet"
    pq.write_table(table, path)
    assert detect_format(path) == "fvqa"
    items, bad = split(list(load_items(path, benchmark="fvqa")))
    assert [i.item_id for i in items] == ["fvqa_1"] and [b.item_id for b in bad] == ["fvqa_2"]
    item = items[0]
    assert item.question == "What breed is this dog?"  # the <image> placeholder is not question text
    assert item.answer == "Shiba Inu" and item.aliases == ["shiba"]
    assert [size(i) for i in item.images] == [(16, 12)] and item.split == "search_required"


def test_browsecomp_vl_jsonl(tmp_path: Path) -> None:
    (tmp_path / "image" / "level2").mkdir(parents=True)  # as in WebWatcher/benchmark/
    (tmp_path / "image" / "level2" / "level2_1.jpg").write_bytes(png(30, 20))
    first = {
        "question": "Who founded it?",
        "image_path": "image/level2/level2_1.jpg",
        "answers": ["Jo", "J."],
        "domain": "Music",
    }
    second = {
        "question": "Which city?",
        "image_path": "image/level2/level2_1.jpg",
        "answer": "Oslo",
        "domain": "Geo",
    }
    text = (
        json.dumps(first) + "\n" + "{not json\n" + json.dumps(second, indent=2) + "\n"
    )  # back-to-back objects
    path = tmp_path / "bc_vl_level2.jsonl"
    path.write_text(text)
    assert detect_format(path) == "browsecomp-vl"
    items, bad = split(list(load_items(path, benchmark="browsecomp-vl")))
    assert [i.answer for i in items] == ["Jo", "Oslo"] and items[0].aliases == ["J."]
    assert all(i.split == "level2" for i in items) and [size(i.images[0]) for i in items] == [(30, 20)] * 2
    assert len(bad) == 1 and "not valid JSON" in bad[0].reason


def test_unknown_layouts_say_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1]}), path)
    with pytest.raises(ValueError, match="--format"):
        detect_format(path)
    with pytest.raises(ValueError, match="does not exist"):
        detect_format(tmp_path / "missing.tsv")


# ----------------------------------------------------------------- named benchmarks (--bench)


def _hub_standin(monkeypatch: pytest.MonkeyPatch, folder: Path, calls: list) -> None:
    """`datasets.load_dataset` records what it was asked for and reads a local copy of the files."""
    datasets = pytest.importorskip("datasets")
    real = datasets.load_dataset

    def fake(path: str, name: str | None = None, **kwargs):
        calls.append((path, name, kwargs.get("split"), kwargs.get("streaming")))
        files = {kwargs["split"]: str(next(folder.glob("*.parquet")))}
        return real(
            "parquet", data_files=files, split=kwargs["split"], streaming=kwargs.get("streaming", False)
        )

    monkeypatch.setattr(datasets, "load_dataset", fake)


def test_mmsearch_bench_comes_through_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    from stages.evaluate.benchmarks import bench_items

    features = datasets.Features(
        {
            "sample_id": datasets.Value("string"),
            "query": datasets.Value("string"),
            "query_image": datasets.Image(),
            "area": datasets.Value("string"),
            "gt_answer": datasets.Value("string"),
            "alternative_gt_answers": datasets.List(datasets.Value("string")),
        }
    )
    rows = {
        "sample_id": ["news_0", "news_1"],
        "query": ["Who designed this logo?", ""],
        "query_image": [Image.open(io.BytesIO(png(20, 10))), None],
        "area": ["news", "news"],
        "gt_answer": ["Ada Lovelace", "x"],
        "alternative_gt_answers": [["A. Lovelace"], []],
    }
    (tmp_path / "end2end").mkdir()
    datasets.Dataset.from_dict(rows, features=features).to_parquet(
        str(tmp_path / "end2end" / "end2end.parquet")
    )
    calls: list = []
    _hub_standin(monkeypatch, tmp_path / "end2end", calls)
    items, bad = split(list(bench_items("mmsearch")))
    assert calls == [("CaraJ/MMSearch", "end2end", "end2end", False)]  # subset end2end, split end2end
    assert [i.item_id for i in items] == ["news_0"] and [b.item_id for b in bad] == ["news_1"]
    assert items[0].answer == "Ada Lovelace" and items[0].aliases == ["A. Lovelace"]
    assert items[0].benchmark == "mmsearch" and [size(i) for i in items[0].images] == [(20, 10)]


def test_fvqa_bench_asks_for_the_test_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    from stages.evaluate.benchmarks import bench_items

    features = datasets.Features(
        {
            "data_id": datasets.Value("string"),
            "prompt": datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")}),
            "images": datasets.List(datasets.Image()),
            "reward_model": {"ground_truth": datasets.Value("string")},
        }
    )
    rows = {
        "data_id": ["fvqa_test_0"],
        "prompt": [[{"role": "user", "content": "<image>\nWhich bridge is this?"}]],
        "images": [[Image.open(io.BytesIO(png(8, 6)))]],
        "reward_model": [{"ground_truth": "Tower Bridge"}],
    }
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(tmp_path / "fvqa_test.parquet"))
    calls: list = []
    _hub_standin(monkeypatch, tmp_path, calls)
    (item,) = bench_items("fvqa")
    assert calls == [("lmms-lab/FVQA", None, "test", False)]
    assert (item.item_id, item.question, item.answer) == (
        "fvqa_test_0",
        "Which bridge is this?",
        "Tower Bridge",
    )
    assert [size(i) for i in item.images] == [(8, 6)]


def test_tsv_benches_stay_the_files_vlmevalkit_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from stages.evaluate.benchmarks import FormatError, bench_items

    tsv = tmp_path / "VStarBench.tsv"
    write_tsv(tsv)
    calls: list = []

    def download(repo_id: str, filename: str, **kwargs) -> str:
        calls.append((repo_id, filename, kwargs.get("repo_type")))
        return str(tsv)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    items, bad = split(list(bench_items("vstar")))
    assert calls == [("xjtupanda/VStar_Bench", "VStarBench.tsv", "dataset")]
    assert len(items) == 3 and len(bad) == 1 and items[0].benchmark == "vstar"
    with pytest.raises(FormatError, match="unknown benchmark 'nope'"):
        bench_items("nope")
    with pytest.raises(FormatError, match="not on the Hub: --data"):
        bench_items("browsecomp-vl")
    with pytest.raises(FormatError, match="--format vlmeval-tsv cannot read"):
        bench_items("fvqa", "vlmeval-tsv")


def test_an_unreachable_bench_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    from stages.evaluate.benchmarks import bench_items
    from stages.readers.cells import SeedError

    def offline(path: str, name: str | None = None, **kwargs):
        raise ConnectionError("Couldn't reach 'lmms-lab/FVQA' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(
        SeedError, match=r"cannot open Hub dataset lmms-lab/FVQA \(split test\): ConnectionError"
    ):
        bench_items("fvqa")
