"""Exports for trainers outside trajforge: LLaMA-Factory (ShareGPT) and ms-swift (agent messages).

Both start from `pipeline.chat.trajectory_messages` (the one owner of the conversation layout) and
flatten its HF-style content lists into the layout these frameworks read: text with one `<image>`
placeholder per image, in order of appearance, plus an `images` list of the same length.

- LLaMA-Factory: `OUT/trajforge_<subset>.jsonl` rows `{"messages": [{role, content}], "images":
  [paths relative to OUT]}` and `OUT/dataset_info.json` with one `sharegpt` entry per subset; the
  conversation is R1V4's (observations as user turns), exactly what `trajforge sft` trains on.
- ms-swift: `OUT/<subset>.jsonl` rows in ms-swift's agent layout: assistant `<think>` text, then a
  `tool_call` message (the call as JSON), then a `tool_response` message (the observation text with
  its images), the final assistant turn with `<answer>`; image paths are absolute (ms-swift's
  recommendation). Train with an agent template (`--agent_template hermes`, say).

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

from pipeline.chat import Message, ObservationRole, step_text, trajectory_messages
from pipeline.format import IMAGE_MARKER, parse_turn, render_tool_call, render_turn
from pipeline.leaks import LeakGuard
from pipeline.schema import Trajectory
from pipeline.store import RunStore, atomic_write_bytes

#: The image placeholder LLaMA-Factory, ms-swift and the Hub rows use (R1V4's marker too).
IMAGE_TOKEN = IMAGE_MARKER
#: A literal placeholder inside text is neutralised so placeholders and images always pair up.
ESCAPED_IMAGE_TOKEN = "&lt;image&gt;"
SUBSETS = ("deepresearch", "general", "plan")
SYSTEM_PROMPT_NAMES = {
    "deepresearch": "executor_deepresearch",
    "general": "executor_general",
    "plan": "planner",
}
ExportFormat = Literal["llamafactory", "ms-swift"]
FORMATS: tuple[str, ...] = ("llamafactory", "ms-swift")
FlatMessage = dict[str, str]
_PROMPT_ID_RE = re.compile(r"(?P<name>[a-z0-9_]+)\.(?P<version>v\d+)")


# ------------------------------------------------------------------------------ conversation


def system_prompt(trajectory: Trajectory) -> str:
    """The mode's system prompt, at the version the trajectory names when it names one."""
    from prompts import load_prompt

    name = SYSTEM_PROMPT_NAMES[trajectory.mode]
    for match in _PROMPT_ID_RE.finditer(trajectory.prompt_version or ""):
        if match["name"] == name:
            try:
                return load_prompt(name, match["version"]).text
            except KeyError:
                break
    return load_prompt(name).text


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


def _think_head(text: str) -> str:
    """`<think>...</think>` of a canonical turn (the renderer neutralises `</think>` inside it)."""
    end = text.index("</think>") + len("</think>")
    return text[:end]


def ms_swift_messages(trajectory: Trajectory) -> tuple[list[FlatMessage], list[str]]:
    """ms-swift agent layout: assistant think, `tool_call` JSON, `tool_response` text, ..., answer."""
    messages = conversation(trajectory, observation_role="tool")
    out: list[FlatMessage] = []
    refs: list[str] = []
    steps = iter(trajectory.steps)
    for message in messages:
        text, found = flatten_content(message["content"])
        refs.extend(found)
        if message["role"] == "assistant":
            step = next(steps)
            if step.action == "tool_call" and step.tool_name and text == step_text(step):
                out.append({"role": "assistant", "content": _think_head(text)})
                out.append(
                    {"role": "tool_call", "content": render_tool_call(step.tool_name, step.arguments_dict())}
                )
                continue
        elif message["role"] == "tool":
            out.append({"role": "tool_response", "content": text})
            continue
        out.append({"role": message["role"], "content": text})
    return out, refs


def ms_swift_to_canonical(flat: list[FlatMessage], refs: list[str]) -> list[Message]:
    """Read an ms-swift agent conversation back into canonical messages (tool role observations)."""
    merged: list[FlatMessage] = []
    for message in flat:
        role = message["role"]
        if role == "tool_call":
            if not merged or merged[-1]["role"] != "assistant":
                raise ValueError("a tool_call message must follow an assistant message")
            call = json.loads(message["content"])
            think = parse_turn(merged[-1]["content"]).turns[0].think or ""
            text = render_turn(think, tool_name=call["name"], arguments=call.get("arguments") or {})
            merged[-1] = {"role": "assistant", "content": text}
        elif role in ("tool_response", "tool"):
            merged.append({"role": "tool", "content": message["content"]})
        else:
            merged.append(dict(message))
    return unflat_messages(merged, refs)


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

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class _ImageCopier:
    """Copies run images into OUT/images once each; paths are content-addressed."""

    def __init__(self, store: RunStore, out: Path):
        self.store, self.out, self.copied = store, out, 0

    def relpath(self, ref: str) -> str:
        source = self.store.images.path(ref)
        if not source.exists():
            raise FileNotFoundError(f"image {ref} is missing from {self.store.images.root}")
        rel = f"images/{ref[:2]}/{ref}{source.suffix}"
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
    guard: LeakGuard | None = None,
) -> ExportReport:
    """Export the kept set (or `records`) of a run into OUT in the given format; a conversation
    holding the host's paths or secrets (`pipeline.leaks`) is left out with the reason."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    records = store.read_records("kept", Trajectory) if records is None else list(records)
    report = ExportReport(format=fmt, out=out)
    copier = _ImageCopier(store, out)
    guard = guard or LeakGuard.for_run(store.root)
    lines: dict[str, list[str]] = {subset: [] for subset in SUBSETS}
    for trajectory in sorted(records, key=lambda t: t.trajectory_id):
        try:
            if fmt == "llamafactory":
                flat, refs = flat_messages(conversation(trajectory, "user"))
                paths = [copier.relpath(ref) for ref in refs]
            else:
                flat, refs = ms_swift_messages(trajectory)
                paths = [str(out / copier.relpath(ref)) for ref in refs]
            if leaks := guard.scan_row(trajectory.trajectory_id, flat):
                raise ValueError("host-specific text: " + "; ".join(m.describe() for m in leaks[:3]))
        except (FileNotFoundError, KeyError, StopIteration, ValueError) as exc:
            report.skipped.append(f"{trajectory.trajectory_id}: {exc}")
            continue
        row = {"messages": flat, "images": paths, **_meta(trajectory)}
        lines[trajectory.mode].append(json.dumps(row, ensure_ascii=False))
        report.counts[trajectory.mode] += 1
    for subset, rows in lines.items():
        if not rows:
            continue
        name = f"trajforge_{subset}.jsonl" if fmt == "llamafactory" else f"{subset}.jsonl"
        path = out / name
        atomic_write_bytes(path, ("\n".join(rows) + "\n").encode("utf-8"))
        report.files.append(path)
    if fmt == "llamafactory":
        info = {f"trajforge_{s}": llamafactory_entry(f"trajforge_{s}.jsonl") for s in SUBSETS if lines[s]}
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
    """Read an ms-swift export (one JSONL per subset) back into canonical messages."""
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
                ExportedSample(row["trajectory_id"], ms_swift_to_canonical(row["messages"], refs), blobs)
            )
        result[subset] = samples
    return result
