"""VLMEvalKit's multiple-choice TSV: V* (VStarBench), HRBench 4K/8K, MME-RealWorld, TreeBench.

Columns: `index`, `image` (base64; a cell of 64 characters or fewer is the `index` of the row
whose image it shares; a cell that starts with `[` is a list of base64 images), or `image_path`
(paths relative to the file), `question`, options `A`..`E` (empty when a question has fewer),
`answer` (a letter), `category`, optional `hint` and `l2-category`. The question is shown
with its options and hint as VLMEvalKit's `ImageMCQDataset.build_prompt` lays them out.
"""

from __future__ import annotations

import ast
import base64
import binascii
import csv
import sys
from collections.abc import Iterator
from pathlib import Path

from stages.readers.items import BadRow, EvalItem, mcq_prompt, option_letters

REQUIRED = ("index", "question")


def _rows(path: Path) -> Iterator[dict[str, str]]:
    csv.field_size_limit(sys.maxsize)  # one base64 image is megabytes
    with open(path, encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle, delimiter="\t")


def is_layout(columns: list[str]) -> bool:
    return all(c in columns for c in REQUIRED) and ("image" in columns or "image_path" in columns)


def _decode(cell: str, where: str) -> list[bytes]:
    cells = ast.literal_eval(cell) if cell.lstrip().startswith("[") else [cell]
    try:
        return [base64.b64decode(c, validate=False) for c in cells]
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{where}: image is not base64 ({exc})") from None


def load(path: Path, benchmark: str) -> Iterator[EvalItem | BadRow]:
    """Items of one TSV, streamed (images shared by reference are kept only while needed)."""
    columns = next(_rows(path), {}).keys()
    if not is_layout(list(columns)):
        raise ValueError(
            f"{path}: not a VLMEvalKit multiple-choice TSV (needs index, question and image or "
            f"image_path columns; found {sorted(columns)[:12]})"
        )
    referenced = {row["image"].strip() for row in _rows(path) if 0 < len(row.get("image") or "") <= 64}
    shared: dict[str, str] = {}
    for row in _rows(path):
        index = str(row.get("index", "")).strip()
        if index in referenced and len(row.get("image") or "") > 64:
            shared[index] = row["image"]
    for number, row in enumerate(_rows(path)):
        index = str(row.get("index") or f"row {number}").strip()
        try:
            yield _item(row, index, path, benchmark, shared)
        except (ValueError, SyntaxError, OSError) as exc:
            yield BadRow(index, str(exc))


def _item(row: dict, index: str, path: Path, benchmark: str, shared: dict[str, str]) -> EvalItem:
    question = (row.get("question") or "").strip()
    if not question:
        raise ValueError(f"row {index}: empty question")
    cell = (row.get("image") or "").strip()
    if cell:
        if len(cell) <= 64:
            if cell not in shared:
                raise ValueError(f"row {index}: image refers to row {cell!r}, which has no image")
            cell = shared[cell]
        images: list[bytes | Path] = list(_decode(cell, f"row {index}"))
    elif (row.get("image_path") or "").strip():
        raw = row["image_path"].strip()
        names = ast.literal_eval(raw) if raw.startswith("[") else [raw]
        images = [Path(n) if Path(n).is_absolute() else path.parent / n for n in names]
    else:
        raise ValueError(f"row {index}: no image or image_path")
    options = option_letters(row)
    hint = (row.get("hint") or "").strip()
    answer = (row.get("answer") or "").strip() or None
    return EvalItem(
        item_id=index,
        benchmark=benchmark,
        question=mcq_prompt(question, options, hint if hint and hint.lower() != "nan" else None),
        images=images,
        answer=answer,
        options=options,
        split=(row.get("category") or "").strip(),
        mode="general",
    )
