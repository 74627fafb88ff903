"""Import R1V4 API outputs (JSONL) as raw trajectories, so outside data enters the same pipeline.

Each line: `{"id", "image": <path relative to the file, or a data URI>, "question", "answer"?,
"response": {"full_response": "<think>...</think><tool_call>...</tool_call><observation>...
</observation>...<answer>...</answer>"}}`. Images inside observations arrive as base64 data URIs;
they are moved into the run's image store and replaced by `pipeline.format.IMAGE_MARKER`.
A malformed line is counted and reported with its reason, never fatal.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.format import IMAGE_MARKER, read_trajectory
from pipeline.images import ImageError, data_uri_bytes, is_data_uri
from pipeline.schema import Step, Trajectory, task_id_for, trajectory_id_for
from pipeline.store import RunStore

SOURCE = "r1v4-import"
TEACHER = "r1v4"
PROMPT_VERSION = "import"
_DATA_URI_IN_TEXT = re.compile(r"data:image/[\w.+-]+;base64,[A-Za-z0-9+/=\s]+")
_ERROR_HINTS = ("Traceback (most recent call last)", "Error:", "Exception:")


@dataclass
class ImportReport:
    lines: int = 0
    imported: int = 0
    already_present: int = 0
    malformed: int = 0
    with_format_errors: int = 0
    errors: list[str] = field(default_factory=list)  # "line N: reason"

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "errors"} | {"errors": self.errors[:50]}


class LineError(ValueError):
    """One bad line; the message is what the user sees."""


def _observation_payload(body: str) -> tuple[str, str | None]:
    """Observation text and tool error from R1V4's JSON (`{"result", "type"}`) or plain text."""
    text, error = body, None
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        if payload.get("error"):
            error = str(payload["error"])
        result = payload.get("result", payload.get("text", ""))
        text = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
    if error is None and any(hint in text for hint in _ERROR_HINTS) and "Traceback" in text:
        error = text.strip().splitlines()[-1][:500]
    return text, error


def _store_inline_images(text: str, store: RunStore) -> tuple[str, list[str]]:
    refs: list[str] = []

    def swap(match: re.Match[str]) -> str:
        refs.append(store.images.put_bytes(data_uri_bytes(re.sub(r"\s+", "", match.group(0)))))
        return IMAGE_MARKER

    return _DATA_URI_IN_TEXT.sub(swap, text), refs


def _task_image(value: Any, base: Path, store: RunStore) -> list[str]:
    if value in (None, ""):
        return []
    values = value if isinstance(value, list) else [value]
    refs = []
    for item in values:
        if not isinstance(item, str):
            raise LineError("'image' must be a path or a data URI")
        if is_data_uri(item):
            refs.append(store.images.put_bytes(data_uri_bytes(item)))
            continue
        path = (base / item).resolve()
        if not path.is_file():
            raise LineError(f"image {item!r} not found next to the JSONL file ({path})")
        refs.append(store.images.put_file(path))
    return refs


def trajectory_from_line(record: Any, base: Path, store: RunStore, rollout: int) -> Trajectory:
    """One JSONL record -> a Trajectory (LineError on anything unusable)."""
    if not isinstance(record, dict):
        raise LineError("line is not a JSON object")
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise LineError("missing 'question'")
    response = record.get("response")
    full = response.get("full_response") if isinstance(response, dict) else None
    if not isinstance(full, str) or not full.strip():
        raise LineError("missing 'response.full_response'")
    try:
        images = _task_image(record.get("image"), base, store)
    except ImageError as exc:
        raise LineError(str(exc)) from None
    gold = record.get("answer")
    gold = None if gold is None else str(gold)
    source_id = str(record.get("id", ""))
    parsed = read_trajectory(full)  # lenient: the report's own outputs are not canonical
    steps: list[Step] = []
    for index, turn in enumerate(parsed.turns):
        obs_text, obs_images, error = None, [], None
        if turn.observation is not None:
            text, error = _observation_payload(turn.observation)
            try:
                obs_text, obs_images = _store_inline_images(text, store)
            except ImageError as exc:
                obs_text, error = text, f"unreadable image in observation: {exc}"
        steps.append(
            Step(
                index=index,
                think=turn.think or "",
                action=turn.action if not turn.errors else "invalid",  # type: ignore[arg-type]
                tool_name=turn.tool_name,
                arguments=None if turn.arguments is None else json.dumps(turn.arguments, ensure_ascii=False),
                answer=turn.answer,
                raw=turn.raw,
                format_errors=turn.errors,
                repairs=turn.repairs,
                normalisations=turn.normalisations,
                observation_text=obs_text,
                observation_images=obs_images,
                error=error,
            )
        )
    task_id = task_id_for(question, images, gold, SOURCE)
    aliases = record.get("answer_aliases") or []
    return Trajectory(
        trajectory_id=trajectory_id_for(task_id, rollout, TEACHER, PROMPT_VERSION),
        task_id=task_id,
        rollout=rollout,
        teacher=str(record.get("teacher", TEACHER)),
        prompt_version=PROMPT_VERSION,
        source=SOURCE,
        source_id=source_id,
        category=record.get("category", "other") if record.get("category") in _CATEGORIES else "other",
        mode="general" if record.get("mode") == "general" else "deepresearch",
        question=question,
        images=images,
        gold_answer=gold,
        answer_aliases=[str(a) for a in aliases] if isinstance(aliases, list) else [],
        steps=steps,
        final_answer=parsed.final_answer,
        status="imported",
        format_errors=parsed.errors,
    )


_CATEGORIES = {"perception", "search", "interleaved", "multihop", "general", "other"}


def import_r1v4(path: Path, store: RunStore, *, shard_size: int = 256, progress: bool = True) -> ImportReport:
    """Import a JSONL file into `store/raw`, skipping trajectories already there (resume)."""
    from tqdm import tqdm

    report = ImportReport()
    done = store.written_ids("raw", "trajectory_id")
    base = path.resolve().parent
    rollouts: Counter[str] = Counter()
    batch: list[Trajectory] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(tqdm(handle, desc="import r1v4", unit="line", disable=not progress), 1):
            if not line.strip():
                continue
            report.lines += 1
            try:
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise LineError(f"not valid JSON ({exc.msg} at char {exc.pos})") from None
                question = record.get("question", "") if isinstance(record, dict) else ""
                key = f"{record.get('id', '')}|{question}" if isinstance(record, dict) else str(number)
                trajectory = trajectory_from_line(record, base, store, rollouts[key])
                rollouts[key] += 1
            except LineError as exc:
                report.malformed += 1
                report.errors.append(f"line {number}: {exc}")
                continue
            if trajectory.trajectory_id in done:
                report.already_present += 1
                continue
            done.add(trajectory.trajectory_id)
            report.imported += 1
            report.with_format_errors += bool(trajectory.format_errors)
            batch.append(trajectory)
            if len(batch) >= shard_size:
                store.write_records("raw", batch, Trajectory, prefix="import")
                batch = []
    store.write_records("raw", batch, Trajectory, prefix="import")
    return report
