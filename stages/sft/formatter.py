"""Kept trajectory -> one training sample, rendered by the student's own chat template.

`pipeline.chat.trajectory_messages` lays the trajectory out as messages; the processor's chat
template renders them; each `<|image_pad|>` is expanded to the processor's own token count for
that image (after the per-image pixel budget); the tokenizer makes the ids. The result equals
`processor.apply_chat_template(messages, tokenize=True)` with the images loaded (a test checks
it), without decoding pixels here: the trainer does that per micro-batch.

Labels cover the assistant turns only, each through its `<|im_end|>`. A sample longer than the
max length is dropped with a reason: cutting it would cut through an image or an answer, and so
is one whose text holds the host's paths or a secret (`pipeline.leaks`, when a guard is given).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from pipeline.chat import ObservationRole, trajectory_messages
from pipeline.images import ImageError
from pipeline.leaks import LeakGuard
from pipeline.schema import Trajectory
from pipeline.store import RunStore

IGNORE = -100
ASSISTANT_HEADER = "assistant\n"

SAMPLE_ARROW = pa.schema(
    [
        ("sample_id", pa.string()),
        ("mode", pa.string()),
        ("category", pa.string()),
        ("input_ids", pa.list_(pa.int32())),
        ("labels", pa.list_(pa.int32())),
        ("images", pa.list_(pa.string())),
        ("image_grid_thw", pa.list_(pa.list_(pa.int32()))),
        ("num_tokens", pa.int32()),
        ("num_label_tokens", pa.int32()),
    ],
    metadata={"trajforge.record": "SFTSample", "trajforge.version": "1"},
)


@dataclass
class Sample:
    """Token ids, labels (IGNORE off the assistant turns) and the images in order of appearance."""

    sample_id: str
    input_ids: list[int]
    labels: list[int]
    images: list[str] = field(default_factory=list)
    image_grid_thw: list[list[int]] = field(default_factory=list)
    mode: str = "deepresearch"
    category: str = "other"

    @property
    def num_tokens(self) -> int:
        return len(self.input_ids)

    def row(self) -> dict[str, Any]:
        return {
            "sample_id": self.sample_id,
            "mode": self.mode,
            "category": self.category,
            "input_ids": self.input_ids,
            "labels": self.labels,
            "images": self.images,
            "image_grid_thw": self.image_grid_thw,
            "num_tokens": len(self.input_ids),
            "num_label_tokens": sum(1 for x in self.labels if x != IGNORE),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Sample:
        return cls(
            sample_id=row["sample_id"],
            input_ids=list(row["input_ids"]),
            labels=list(row["labels"]),
            images=list(row["images"]),
            image_grid_thw=[list(g) for g in row["image_grid_thw"]],
            mode=row["mode"],
            category=row["category"],
        )


@dataclass
class Drop:
    sample_id: str
    reason: str


def system_prompt(mode: str) -> str:
    """The mode's system prompt (the same prompt the executor or planner ran with)."""
    from stages.synth import system_prompt as mode_prompt

    return mode_prompt(mode).text


class Formatter:
    """Renders trajectories with one processor; `image_size(ref)` gives (height, width)."""

    def __init__(
        self,
        processor: Any,
        *,
        max_len: int,
        image_size: Callable[[str], tuple[int, int]],
        observation_role: ObservationRole = "user",
        prompt_for: Callable[[str], str] = system_prompt,
        guard: LeakGuard | None = None,
    ):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.max_len = max_len
        self.image_size = image_size
        self.observation_role = observation_role
        self.prompt_for = prompt_for
        self.guard = guard
        self.image_token = processor.image_token
        self.merge = processor.image_processor.merge_size
        self.im_start = self.tokenizer.convert_tokens_to_ids("<|im_start|>")
        self.im_end = self.tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.header = self.tokenizer.encode(ASSISTANT_HEADER, add_special_tokens=False)

    def messages(self, trajectory: Trajectory) -> list[dict[str, Any]]:
        return trajectory_messages(
            trajectory, self.prompt_for(trajectory.mode), observation_role=self.observation_role
        )

    def image_grid(self, height: int, width: int) -> list[int]:
        """(t, h, w) patch grid the processor produces for an image of this size."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        ip = self.processor.image_processor
        factor = ip.patch_size * ip.merge_size
        h, w = smart_resize(
            height, width, factor=factor, min_pixels=ip.size.shortest_edge, max_pixels=ip.size.longest_edge
        )
        return [1, h // ip.patch_size, w // ip.patch_size]

    def __call__(self, trajectory: Trajectory) -> Sample | Drop:
        sid = trajectory.trajectory_id
        messages = self.messages(trajectory)
        if self.guard is not None and (leaks := self.guard.scan_row(sid, messages)):
            return Drop(sid, "leak: " + "; ".join(m.describe() for m in leaks[:3]))
        refs = [item["image"] for m in messages for item in m["content"] if item.get("type") == "image"]
        text = self.processor.apply_chat_template(messages, tokenize=False)
        pieces = text.split(self.image_token)
        if len(pieces) != len(refs) + 1:
            return Drop(sid, f"template rendered {len(pieces) - 1} image slots for {len(refs)} images")
        grids: list[list[int]] = []
        for ref in refs:
            try:
                grids.append(self.image_grid(*self.image_size(ref)))
            except (ImageError, OSError, ValueError) as exc:
                return Drop(sid, f"image {ref[:12]}: {exc}")
        expanded = pieces[0]
        for grid, piece in zip(grids, pieces[1:], strict=True):
            expanded += self.image_token * (grid[0] * grid[1] * grid[2] // self.merge**2) + piece
        ids = self.tokenizer(expanded, add_special_tokens=False)["input_ids"]
        if len(ids) > self.max_len:
            return Drop(sid, f"too long: {len(ids)} tokens > max_len {self.max_len} (not cut: images/answer)")
        labels = self.assistant_labels(ids)
        if all(x == IGNORE for x in labels):
            return Drop(sid, "no assistant tokens to train on")
        return Sample(sid, ids, labels, refs, grids, trajectory.mode, trajectory.category)

    def assistant_labels(self, ids: list[int]) -> list[int]:
        """Copy ids inside assistant turns (content and `<|im_end|>`), IGNORE everywhere else."""
        labels = [IGNORE] * len(ids)
        n, h = len(ids), len(self.header)
        i = 0
        while i < n:
            if ids[i] != self.im_start:
                i += 1
                continue
            end = i + 1
            while end < n and ids[end] != self.im_end:
                end += 1
            start = self._content_start(ids, i + 1, end, h)
            if start is not None:
                stop = min(end, n - 1)
                labels[start : stop + 1] = ids[start : stop + 1]
            i = end + 1
        return labels

    def _content_start(self, ids: list[int], begin: int, end: int, h: int) -> int | None:
        """First content token of an assistant turn, or None for other roles."""
        if ids[begin : begin + h] == self.header:
            return begin + h
        # The header merged with the content's first token: find where the header text ends.
        head = self.tokenizer.decode(ids[begin:end])
        if not head.startswith(ASSISTANT_HEADER):
            return None
        for k in range(begin + 1, end + 1):
            if len(self.tokenizer.decode(ids[begin:k])) >= len(ASSISTANT_HEADER):
                return k - 1 if len(self.tokenizer.decode(ids[begin:k])) > len(ASSISTANT_HEADER) else k
        return None


def store_image_size(store: RunStore) -> Callable[[str], tuple[int, int]]:
    """(height, width) of a stored image through the guarded reader."""

    def size(ref: str) -> tuple[int, int]:
        with store.images.open(ref) as image:
            return image.height, image.width

    return size


def samples_table(samples: list[Sample]) -> pa.Table:
    return pa.Table.from_pylist([s.row() for s in samples], schema=SAMPLE_ARROW)


def read_samples(store: RunStore, stage: str = "sft/samples") -> list[Sample]:
    table = store.read_table(stage)
    return [] if table is None else [Sample.from_row(r) for r in table.to_pylist()]
