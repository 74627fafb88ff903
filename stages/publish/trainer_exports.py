"""Exports for trainers outside trajforge: LLaMA-Factory (ShareGPT) and ms-swift (agent messages).

Both start from `pipeline.chat.trajectory_messages` (the one owner of the conversation layout) and
flatten its HF-style content lists into the layout these frameworks read: text with one `<image>`
placeholder per image, in order of appearance, plus an `images` list of the same length.

- LLaMA-Factory: `OUT/trajforge_<subset>.jsonl` rows `{"messages": [{role, content}], "images":
  [paths relative to OUT]}` and `OUT/dataset_info.json` with one `sharegpt` entry per subset.
- ms-swift: `OUT/<subset>.jsonl` rows `{"messages": [...], "images": [absolute paths]}` (ms-swift's
  recommendation for paths) in its standard messages layout, plus `chat_template_kwargs` with the
  student processor's exact pixel budget when one was given (see `stages.publish.trainer_settings`).

Both carry the same conversation, the one `trajforge sft` trains on: R1V4 assistant turns
(`<think>...</think><tool_call>{json}</tool_call>`, think inline) and observations as user turns
(`<observation>...</observation>`), so no framework re-renders tool calls in another format (an
agent template such as swift's `hermes` would write `<tool_call>\n{json}\n</tool_call>` and
`<tool_response>`, which the system prompt does not describe). The framework settings that train
exactly this text are written next to the data (`stages.publish.trainer_settings`).

Images are copied once into `OUT/images/<aa>/<sha256>.<ext>` (content-addressed like the run).
Each format has a reader here too (`read_llamafactory`, `read_ms_swift`) that rebuilds the
canonical messages, so a round trip is checkable: export, read back, compare.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.chat import Message, ObservationRole, trajectory_messages
from pipeline.format import IMAGE_MARKER
from pipeline.leaks import LeakGuard
from pipeline.schema import Trajectory
from pipeline.store import RunStore, atomic_write_bytes
from stages.publish.trainer_settings import TextStats, ms_swift_row_kwargs, write_settings

#: The image placeholder LLaMA-Factory, ms-swift and the Hub rows use (R1V4's marker too).
IMAGE_TOKEN = IMAGE_MARKER
#: A literal placeholder inside text is neutralised so placeholders and images always pair up.
ESCAPED_IMAGE_TOKEN = "&lt;image&gt;"
SUBSETS = ("deepresearch", "general", "plan")
ExportFormat = Literal["llamafactory", "ms-swift"]
FORMATS: tuple[str, ...] = ("llamafactory", "ms-swift")
FlatMessage = dict[str, str]
_PROMPT_ID_RE = re.compile(r"(?P<name>[a-z0-9_]+)\.(?P<version>v\d+|h[0-9a-f]{12})")


# ------------------------------------------------------------------------------ conversation


def system_prompt(trajectory: Trajectory) -> str:
    """The mode's system prompt, at the version the trajectory names when it names one."""
    from stages.synth import PROMPT_FOR_MODE
    from stages.synth import system_prompt as mode_prompt

    name = PROMPT_FOR_MODE[trajectory.mode]
    for match in _PROMPT_ID_RE.finditer(trajectory.prompt_version or ""):
        if match["name"] == name:
            return mode_prompt(trajectory.mode, match["version"]).text
    return mode_prompt(trajectory.mode).text


def conversation(trajectory: Trajectory, observation_role: ObservationRole = "user") -> list[Message]:
    """The canonical HF-style messages of a trajectory (delegates to pipeline.chat)."""
    return trajectory_messages(trajectory, system_prompt(trajectory), observation_role=observation_role)


def flatten_content(content: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """HF content items -> text with `<image>` placeholders and the image refs in order."""
    parts: list[str] = []
    refs: list[str] = []
    for item in content:
        if item["type"] == "image":
            parts.append(IMAGE_TOKEN)
            refs.append(item["image"])
        else:
            parts.append(item["text"].replace(IMAGE_TOKEN, ESCAPED_IMAGE_TOKEN))
    return "".join(parts), refs


def unflatten_content(text: str, refs: list[str]) -> list[dict[str, Any]]:
    """Text with `<image>` placeholders + refs -> HF content items (inverse of flatten_content)."""
    pieces = text.split(IMAGE_TOKEN)
    if len(pieces) - 1 != len(refs):
        raise ValueError(f"{len(pieces) - 1} {IMAGE_TOKEN} placeholders but {len(refs)} images")
    content: list[dict[str, Any]] = []
    for index, piece in enumerate(pieces):
        if index:
            content.append({"type": "image", "image": refs[index - 1]})
        if piece:
            content.append({"type": "text", "text": piece})
    return content


def flat_messages(messages: list[Message]) -> tuple[list[FlatMessage], list[str]]:
    """Messages with text-only content (placeholders) and every image ref in order of appearance."""
    flat: list[FlatMessage] = []
    refs: list[str] = []
    for message in messages:
        text, found = flatten_content(message["content"])
        flat.append({"role": message["role"], "content": text})
        refs.extend(found)
    return flat, refs


def unflat_messages(flat: list[FlatMessage], refs: list[str]) -> list[Message]:
    """Inverse of flat_messages: hand each message its share of the images."""
    messages: list[Message] = []
    cursor = 0
    for message in flat:
        count = message["content"].count(IMAGE_TOKEN)
        messages.append(
            {
                "role": message["role"],
                "content": unflatten_content(message["content"], refs[cursor : cursor + count]),
            }
        )
        cursor += count
    if cursor != len(refs):
        raise ValueError(f"{len(refs)} images but {cursor} {IMAGE_TOKEN} placeholders")
    return messages


# ----------------------------------------------------------------------------------- export


@dataclass
class ExportReport:
    """What an export wrote; `skipped` names each trajectory left out and why."""

    format: str
    out: Path
    counts: Counter = field(default_factory=Counter)
    images: int = 0
    skipped: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class _ImageCopier:
    """Copies run images into OUT/images once each; paths are content-addressed."""

    def __init__(self, store: RunStore, out: Path, stats: TextStats):
        self.store, self.out, self.copied, self.stats = store, out, 0, stats
        self.seen: set[str] = set()

    def relpath(self, ref: str) -> str:
        source = self.store.images.path(ref)
        if not source.exists():
            raise FileNotFoundError(f"image {ref} is missing from {self.store.images.root}")
        rel = f"images/{ref[:2]}/{ref}{source.suffix}"
        if ref not in self.seen:  # sizes for the settings (image_max_pixels): header only
            with self.store.images.open(ref) as image:
                self.stats.add_image(image.width, image.height)
            self.seen.add(ref)
        target = self.out / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            self.copied += 1
        return rel


def _meta(trajectory: Trajectory) -> dict[str, Any]:
    return {
        "trajectory_id": trajectory.trajectory_id,
        "category": trajectory.category,
        "mode": trajectory.mode,
    }


def export_run(
    store: RunStore,
    out: str | Path,
    fmt: ExportFormat,
    records: Iterable[Trajectory] | None = None,
    stats: TextStats | None = None,
    guard: LeakGuard | None = None,
) -> ExportReport:
    """Export the kept set (or `records`) of a run into OUT in the given format.

    `stats` carries what the written framework settings need beyond the images (the student
    processor's pixel budget and longest sample); the CLI fills it when it has a processor. A
    conversation holding the host's paths or secrets (`pipeline.leaks`) is left out with the reason.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    records = store.read_records("kept", Trajectory) if records is None else list(records)
    report = ExportReport(format=fmt, out=out)
    stats = stats or TextStats()
    copier = _ImageCopier(store, out, stats)
    guard = guard or LeakGuard.for_run(store.root)
    lines: dict[str, list[str]] = {subset: [] for subset in SUBSETS}
    row_extra = ms_swift_row_kwargs(stats) if fmt == "ms-swift" else {}
    for trajectory in sorted(records, key=lambda t: t.trajectory_id):
        try:
            if fmt == "llamafactory":
                flat, refs = flat_messages(conversation(trajectory, "user"))
                paths = [copier.relpath(ref) for ref in refs]
            else:
                flat, refs = flat_messages(conversation(trajectory, "user"))
                paths = [str(out / copier.relpath(ref)) for ref in refs]
            leaks = guard.scan_row(trajectory.trajectory_id, flat)
            for index, ref in enumerate(refs):  # text chunks the images carry
                leaks += guard.scan_image(
                    trajectory.trajectory_id, store.images.read_bytes(ref), f"images[{index}]"
                )
            if leaks:
                raise ValueError("host-specific text: " + "; ".join(m.describe() for m in leaks[:3]))
        except (FileNotFoundError, KeyError, StopIteration, ValueError) as exc:
            report.skipped.append(f"{trajectory.trajectory_id}: {exc}")
            continue
        row = {"messages": flat, "images": paths, **_meta(trajectory), **row_extra}
        lines[trajectory.mode].append(json.dumps(row, ensure_ascii=False))
        report.counts[trajectory.mode] += 1
    for subset, rows in lines.items():
        if not rows:
            continue
        name = f"trajforge_{subset}.jsonl" if fmt == "llamafactory" else f"{subset}.jsonl"
        path = out / name
        atomic_write_bytes(path, ("\n".join(rows) + "\n").encode("utf-8"))
        report.files.append(path)
    report.settings = write_settings(out, fmt, [p.name for p in report.files], stats)
    if fmt == "llamafactory":
        info = {f"trajforge_{s}": llamafactory_entry(f"trajforge_{s}.jsonl") for s in SUBSETS if lines[s]}
        for entry in info.values():  # LLaMA-Factory reads only the keys it knows
            entry["trajforge_train_settings"] = report.settings
        path = out / "dataset_info.json"
        atomic_write_bytes(path, (json.dumps(info, indent=2) + "\n").encode("utf-8"))
        report.files.append(path)
    report.images = copier.copied
    return report


def llamafactory_entry(file_name: str) -> dict[str, Any]:
    """LLaMA-Factory dataset_info.json entry: ShareGPT layout with OpenAI-style role tags."""
    return {
        "file_name": file_name,
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "images": "images"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
            "system_tag": "system",
        },
    }


# ------------------------------------------------------------------------------- read back


@dataclass
class ExportedSample:
    """One exported conversation read back: canonical messages and the image bytes by ref."""

    trajectory_id: str
    messages: list[Message]
    images: dict[str, bytes]


def _read_images(paths: list[str], base: Path) -> tuple[list[str], dict[str, bytes]]:
    refs: list[str] = []
    blobs: dict[str, bytes] = {}
    for path in paths:
        data = (base / path).read_bytes()  # absolute paths ignore `base`
        ref = hashlib.sha256(data).hexdigest()
        refs.append(ref)
        blobs[ref] = data
    return refs, blobs


def read_llamafactory(out: str | Path) -> dict[str, list[ExportedSample]]:
    """Read an LLaMA-Factory export by its own rules: dataset_info.json -> files -> sharegpt rows."""
    out = Path(out)
    info = json.loads((out / "dataset_info.json").read_text())
    result: dict[str, list[ExportedSample]] = {}
    for name, entry in info.items():
        if entry.get("formatting") != "sharegpt":
            raise ValueError(f"{name}: expected sharegpt formatting")
        columns, tags = entry["columns"], entry["tags"]
        samples: list[ExportedSample] = []
        for line in (out / entry["file_name"]).read_text().splitlines():
            row = json.loads(line)
            turns = row[columns["messages"]]
            flat = [{"role": t[tags["role_tag"]], "content": t[tags["content_tag"]]} for t in turns]
            refs, blobs = _read_images(row.get(columns.get("images", "images")) or [], out)
            samples.append(ExportedSample(row.get("trajectory_id", ""), unflat_messages(flat, refs), blobs))
        result[name] = samples
    return result


def read_ms_swift(out: str | Path) -> dict[str, list[ExportedSample]]:
    """Read an ms-swift export (one JSONL per subset) back into canonical messages (user observations)."""
    out = Path(out)
    result: dict[str, list[ExportedSample]] = {}
    for subset in SUBSETS:
        path = out / f"{subset}.jsonl"
        if not path.exists():
            continue
        samples = []
        for line in path.read_text().splitlines():
            row = json.loads(line)
            refs, blobs = _read_images(row.get("images") or [], out)
            samples.append(
                ExportedSample(row["trajectory_id"], unflat_messages(row["messages"], refs), blobs)
            )
        result[subset] = samples
    return result
