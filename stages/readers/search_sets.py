"""Search benchmarks as published: MMSearch (end2end), FVQA (test parquet), BrowseComp-VL (JSONL).

Field names checked against the real files and their authors' code (see each entry).
- MMSearch `end2end` (Hub dataset CaraJ/MMSearch, subset and split `end2end`, as its own
  `eval_end2end.py` loads it): `sample_id`, `query`, `query_image` (an image cell, None for
  text-only queries), `area`, `subfield`, `gt_answer`, `alternative_gt_answers` (a list:
  aliases; the official scorer takes the best match over gt and alternatives), `gt_requery`.
- FVQA (Hub dataset lmms-lab/FVQA: `fvqa_train.parquet`, `fvqa_test.parquet`, splits from the file
  names; MMSearch-R1's RL layout): `data_id` (`fvqa_test_17`), `data_source`
  (`mmsearch_r1/fvqa_test`), `prompt` (chat messages; the user turn holds the question, an
  `<image>` mark is dropped), `images` (a list of image structs with bytes), `image_urls`
  (empty), `reward_model` {`ground_truth` (a string), `candidate_answers` (a list), `style`};
  `category` (`search_free`/`search_required`) only in train. Checked against an MMSearch-R1
  reproduction that reads the real files (`extract_fvqa_samples.py`: `row["prompt"]` user turn,
  `images[0]["bytes"]`, `reward_model`; its notes: test has no `category`, `image_urls` empty)
  and the row metadata it published (`reward_model: {ground_truth, candidate_answers, style}`).
- BrowseComp-VL (WebWatcher's `benchmark/bc_vl_level1.jsonl` / `bc_vl_level2.jsonl` in
  Alibaba-NLP/WebAgent; not on the Hub): one object per line, `question`, `image_path` (relative
  to the file: `image/level1/level1_1.jpg`), `answers` (a list of one), `domain`; no id (the
  line number is the id); the level comes from the file name. Checked against the published
  files themselves. Also read: objects back to back, `images`, `answer`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from stages.readers.cells import SeedError, image_bytes
from stages.readers.items import BadRow, EvalItem


def _images(value: Any, base: Path) -> list[bytes | Path]:
    if value is None:
        return []
    cells = value if isinstance(value, list | tuple) else [value]
    return [image_bytes(c, base) for c in cells if c is not None]


def _answers(value: Any) -> tuple[str | None, list[str]]:
    if isinstance(value, list | tuple):
        texts = [str(v).strip() for v in value if v is not None and str(v).strip()]
        return (texts[0], texts[1:]) if texts else (None, [])
    return (str(value).strip() or None) if value is not None else None, []


def _guarded(item_id: str, build) -> EvalItem | BadRow:
    try:
        return build()
    except (SeedError, ValueError, TypeError, KeyError, OSError) as exc:
        return BadRow(item_id, f"{item_id}: {exc}")


# --------------------------------------------------------------------------------- MMSearch


def is_mmsearch(columns: list[str]) -> bool:
    return "query" in columns and "gt_answer" in columns


def mmsearch_item(row: dict[str, Any], number: int, base: Path, benchmark: str) -> EvalItem | BadRow:
    item_id = str(row.get("sample_id") or f"row {number}")

    def build() -> EvalItem:
        question = str(row.get("query") or "").strip()
        if not question:
            raise ValueError("empty query")
        aliases = [str(a) for a in (row.get("alternative_gt_answers") or []) if str(a).strip()]
        return EvalItem(
            item_id=item_id,
            benchmark=benchmark,
            question=question,
            images=_images(row.get("query_image"), base),
            answer=str(row.get("gt_answer") or "").strip() or None,
            aliases=aliases,
            split=str(row.get("area") or ""),
            mode="deepresearch",
        )

    return _guarded(item_id, build)


# ------------------------------------------------------------------------------------- FVQA

_IMAGE_TOKEN = re.compile(r"<image>\s*")


def is_fvqa(columns: list[str]) -> bool:
    return "reward_model" in columns and ("prompt" in columns or "question" in columns)


def _user_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    for message in reversed(list(prompt or [])):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):  # OpenAI-style parts
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def fvqa_item(row: dict[str, Any], number: int, base: Path, benchmark: str) -> EvalItem | BadRow:
    item_id = str(row.get("data_id") or row.get("id") or f"row {number}")

    def build() -> EvalItem:
        question = _IMAGE_TOKEN.sub("", str(row.get("question") or _user_text(row.get("prompt")))).strip()
        if not question:
            raise ValueError("no question in prompt")
        reward = row.get("reward_model") or {}
        if isinstance(reward, str):
            reward = json.loads(reward)
        answer, aliases = _answers(reward.get("ground_truth"))
        aliases += [
            str(c) for c in (reward.get("candidate_answers") or []) if str(c).strip() and str(c) != answer
        ]
        return EvalItem(
            item_id=item_id,
            benchmark=benchmark,
            question=question,
            images=_images(row.get("images"), base),
            answer=answer,
            aliases=list(dict.fromkeys(aliases)),
            split=str(row.get("category") or row.get("data_source") or ""),
            mode="deepresearch",
        )

    return _guarded(item_id, build)


# ---------------------------------------------------------------------------- BrowseComp-VL


def is_browsecomp(row: dict[str, Any]) -> bool:
    return "question" in row and ("answers" in row or "answer" in row)


def browsecomp_item(
    row: dict[str, Any], where: str, base: Path, benchmark: str, level: str
) -> EvalItem | BadRow:
    item_id = str(row.get("id") or where)

    def build() -> EvalItem:
        question = str(row.get("question") or "").strip()
        if not question:
            raise ValueError("empty question")
        answer, aliases = _answers(row.get("answers", row.get("answer")))
        cells = row.get("images") or row.get("image_path") or row.get("image")
        return EvalItem(
            item_id=item_id,
            benchmark=benchmark,
            question=question,
            images=_images(cells, base),
            answer=answer,
            aliases=aliases,
            split=str(row.get("level") or level or row.get("domain") or ""),
            mode="deepresearch",
        )

    return _guarded(item_id, build)


#: Row readers of the formats published as tables (parquet, Hub datasets): (row, number, folder
#: relative paths resolve against, benchmark name) -> EvalItem | BadRow. Seeds and eval use them.
ROW_READERS = {"mmsearch": mmsearch_item, "fvqa": fvqa_item}
