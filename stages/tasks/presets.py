"""Column layouts of seed datasets (`seeds.preset`): which column holds the question, images, answer.

A preset is either a column mapping (our field -> a column path in the row; dotted paths reach
into structs and lists: `texts.0.user`) or a benchmark format whose row reader (the one eval
uses, `stages/evaluate/benchmarks.py/`) builds the fields, so a format has one owner. The R1V4 seed sets
carry where their layout was read from, their published Hub copy (the `seeds.path` default
with `seeds.source: hub`), and the R1V4 task kind they seeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.readers.cells import SeedError
from stages.readers.items import BadRow
from stages.readers.search_sets import ROW_READERS


@dataclass(frozen=True)
class Preset:
    columns: dict[str, str] = field(default_factory=dict)  # our field -> column path
    reader: str | None = None  # a benchmark format (stages.readers.search_sets.ROW_READERS) instead
    hub: str | None = None  # the published copy on the Hub
    split: str = "train"
    needs_subset: str | None = None  # what to say when a subset (config) must be chosen
    category: str | None = None  # the R1V4 task kind these seeds were for
    mode: str | None = None


#: Thyme-RL (Kwai-Keye/Thyme-RL, R1V4's thinking-with-images seeds): parquet shards under
#: `data/`, columns `question`, `solution` (the answer), `images` (a list of base64 strings,
#: not image structs), `messages` (Thyme's own code-sandbox prompt, not used). Read from two
#: independent loaders of the real files in the code corpus: a VERL adapter
#: (`ThymeVisualAgentDataset`: `question`, `solution`, images under `images`) and an EasyR1
#: dataset (`_build_example`: "images is a list of base64 strings", `b64_to_pil`), plus a data
#: card recording 98 shards, 55,173 rows, 44.77 GiB.
THYME_RL = Preset(
    columns={"images": "images", "question": "question", "answer": "solution"},
    hub="Kwai-Keye/Thyme-RL",
    category="perception",
    mode="general",
)

#: FineVision (HuggingFaceM4/FineVision, R1V4's other thinking-with-images source): one config
#: per source dataset (about 185: `CoSyn_400k`, `textvqa`, ...), split `train`, columns
#: `images` (a list of images) and `texts` (a list of `{user, assistant}` turns; the first
#: turn is the seed question and its answer). From the dataset card's loading snippet
#: (`load_dataset('HuggingFaceM4/FineVision', name=subset, split='train', streaming=True)`)
#: and loaders in the code corpus reading `texts[i]["user"]`/`["assistant"]` and `images[0]`.
FINEVISION = Preset(
    columns={"images": "images", "question": "texts.0.user", "answer": "texts.0.assistant"},
    hub="HuggingFaceM4/FineVision",
    needs_subset="FineVision has one subset per source dataset: set seeds.subset (e.g. CoSyn_400k)",
    category="perception",
    mode="general",
)

#: FVQA train (lmms-lab/FVQA, `fvqa_train.parquet`; R1V4's basic-search seeds): read by the FVQA
#: benchmark reader (`stages/readers/search_sets.py`, whose docstring has the layout). The
#: split comes from the file name (`load_dataset("lmms-lab/FVQA", split="train")`, as
#: MMSearch-R1 reproductions load it); train rows carry `category` search_free/search_required.
FVQA = Preset(reader="fvqa", hub="lmms-lab/FVQA", category="search", mode="deepresearch")

#: LiveVQA (ONE-Lab/LiveVQA-new, linked from the LIVEVQA GitHub repo; R1V4 drew 3K questions for
#: interleaved image operations + search): the flat table `Dataset_viewer_flat.parquet` has
#: one row per question (`id`, `question`, `options`, `Ground_Truth` (a letter),
#: `Ground_Truth_List` (the answer and its aliases), `img_path`, `level`, `topic`, `source`);
#: the images ship as zips (`news.zip`, `paper_images.zip`, `youtube_images.zip`), so
#: `img_path` names a file in the unpacked folders. Fields from the repo's
#: `liveVQA_benchmarks/*/benchmark.json` (`level1_qa`/`level2_qa`: question, options,
#: Ground_Truth, Ground_Truth_List, img_path) and a benchmark adapter in the code corpus reading
#: the flat parquet. No Hub default: the images are not in the table, so download the repo,
#: unzip, and point `seeds.path` at the parquet (`seeds.image_root` at the unpacked images).
#: The open answer list is the gold, not the option letter (the seed question is asked open).
LIVEVQA = Preset(
    columns={"id": "id", "image": "img_path", "question": "question", "answer": "Ground_Truth_List"},
    category="interleaved",
    mode="deepresearch",
)

PRESETS: dict[str, Preset] = {
    "image-question-answer": Preset({"image": "image", "question": "question", "answer": "answer"}),
    "images-question-answer": Preset({"images": "images", "question": "question", "answer": "answer"}),
    "vqa": Preset({"image": "image", "question": "question", "answer": "answers", "id": "question_id"}),
    "problem-solution": Preset({"image": "image", "question": "problem", "answer": "solution"}),
    "thyme-rl": THYME_RL,
    "finevision": FINEVISION,
    "fvqa": FVQA,
    "livevqa": LIVEVQA,
}


def preset(name: str | None) -> Preset | None:
    if name is None:
        return None
    if name not in PRESETS:
        raise SeedError(f"unknown seeds.preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


#: The fields a reader preset's rows carry (what `read_row` returns).
READER_COLUMNS = {"id": "id", "images": "images", "question": "question", "answer": "answer"}


def read_row(chosen: Preset, row: dict[str, Any], number: int, base: Path) -> dict[str, Any]:
    """A row through its format's benchmark reader, as the fields `READER_COLUMNS` names."""
    item = ROW_READERS[chosen.reader or ""](row, number, base, chosen.reader or "")
    if isinstance(item, BadRow):
        return {"__error__": item.reason}
    answers = [item.answer, *item.aliases] if item.answer else None
    return {"id": item.item_id, "images": list(item.images), "question": item.question, "answer": answers}
