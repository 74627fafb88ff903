"""Training data: formatted samples -> packed sequences -> each rank's micro-batches per step.

The order is a function of (seed, epoch) and the position a single integer (sequences consumed),
so a run resumes at the same place at any world size: step `s` uses global sequence slots
[s*G, (s+1)*G) of the epoch-wise shuffled order, and rank r takes every W-th of them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from pipeline.store import RunStore
from stages.sft.formatter import Sample
from stages.sft.packing import PackedBatch, RopeIndex, Segment, collate, pack_lengths

#: A 32x32 image is a (1, 2, 2) patch grid: one token after the 2x2 merge.
DUMMY_SIDE = 32


class PackedData:
    """Packed sequences over a fixed sample list, in a reproducible shuffled order."""

    def __init__(self, samples: Sequence[Sample], max_len: int, *, pack: bool = True, seed: int = 0):
        self.samples = list(samples)
        lengths = [s.num_tokens for s in self.samples]
        self.sequences = pack_lengths(lengths, max_len) if pack else [[i] for i in range(len(lengths))]
        self.seed = seed
        self._orders: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.sequences)

    def order(self, epoch: int) -> list[int]:
        if epoch not in self._orders:
            order = list(range(len(self.sequences)))
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
            self._orders[epoch] = order
        return self._orders[epoch]

    def sequence_at(self, slot: int) -> list[Sample]:
        """The samples of global sequence slot `slot` (epochs repeat with a new shuffle)."""
        epoch, index = divmod(slot, len(self.sequences))
        return [self.samples[i] for i in self.sequences[self.order(epoch)[index]]]

    def rank_slots(self, step: int, global_batch: int, rank: int, world: int) -> list[int]:
        if global_batch % world:
            raise ValueError(
                f"optim.global_batch {global_batch} must be a multiple of the world size {world}"
            )
        start = step * global_batch
        return list(range(start + rank, start + global_batch, world))


class ImageLoader:
    """Sample images -> pixel values through the processor, checked against the formatted grids."""

    def __init__(self, store: RunStore, image_processor: Any):
        self.store = store
        self.image_processor = image_processor

    def segment(self, sample: Sample) -> Segment:
        if not sample.images:
            return Segment(sample.input_ids, sample.labels)
        images = [self.store.images.open(ref).convert("RGB") for ref in sample.images]
        out = self.image_processor(images=images, return_tensors="pt")
        grid = out["image_grid_thw"]
        if grid.tolist() != sample.image_grid_thw:
            raise ValueError(
                f"{sample.sample_id}: image grids {grid.tolist()} differ from the formatted "
                f"{sample.image_grid_thw}; re-run `trajforge sft` formatting with this processor"
            )
        return Segment(sample.input_ids, sample.labels, out["pixel_values"], grid)


def dummy_segment(image_processor: Any, vision_start: int, image_token: int, vision_end: int) -> Segment:
    """A label-free 3-token segment with a blank 32x32 image.

    A rank whose batch has no image still runs the vision tower (its FSDP collectives stay in
    step with the other ranks); the segment is masked off from the real samples and carries no
    labels, so it changes neither the loss nor any gradient.
    """
    from PIL import Image

    out = image_processor(images=[Image.new("RGB", (DUMMY_SIDE, DUMMY_SIDE))], return_tensors="pt")
    tokens = int(out["image_grid_thw"].prod()) // image_processor.merge_size**2
    ids = [vision_start, *([image_token] * tokens), vision_end]
    return Segment(ids, [-100] * len(ids), out["pixel_values"], out["image_grid_thw"])


def build_batch(
    samples: Sequence[Sample],
    loader: ImageLoader,
    rope_index: RopeIndex,
    image_token_id: int,
    dummy: Segment | None = None,
) -> PackedBatch:
    """One packed micro-batch; appends the dummy image segment when no sample has an image."""
    segments = [loader.segment(s) for s in samples]
    if dummy is not None and not any(s.pixel_values is not None for s in segments):
        segments.append(dummy)
    return collate(segments, rope_index, image_token_id)


def label_count(samples: Sequence[Sample]) -> int:
    """Trained target tokens of a sequence (labels shifted by one within each sample)."""
    return sum(sum(1 for x in s.labels[1:] if x != -100) for s in samples)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
