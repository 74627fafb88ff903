"""Packing: several samples per sequence, each keeping its own multimodal positions.

`pack_lengths` assigns samples to sequences (the fewer bins of best-fit decreasing and minimum
bin slack; deterministic, samples never cut). `collate`
concatenates the samples of one sequence: ids, shifted targets, pixel values and grids in order,
and position ids of shape (4, 1, L): row 0 restarts at 0 for each sample (transformers reads
sample boundaries from it and masks attention block-diagonally: no attention across samples),
rows 1..3 are the sample's own 3-D M-RoPE positions from the model's `get_rope_index`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

IGNORE = -100


def pack_lengths(lengths: Sequence[int], max_len: int) -> list[list[int]]:
    """Indices grouped into bins of total length <= max_len: the fewer bins of two packers.

    Best-fit decreasing is fast but leaves a few hundred tokens free in most bins (0.963 at 8K
    on the bench's set); minimum bin slack fills bins one at a time as full as the remaining
    samples allow (0.987). Both are deterministic; a tie keeps best fit's bins.
    """
    for i, size in enumerate(lengths):
        if size > max_len:
            raise ValueError(f"sample {i} has {size} tokens > max_len {max_len}; the formatter drops these")
    bins = min(_best_fit_decreasing(lengths, max_len), _min_bin_slack(lengths, max_len), key=len)
    for b in bins:
        b.sort()
    bins.sort(key=lambda b: b[0])
    return bins


def _best_fit_decreasing(lengths: Sequence[int], max_len: int) -> list[list[int]]:
    """Longest first, each into the bin it leaves least room in (O(n log n))."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (remaining capacity, bin index)
    for i in order:
        size = lengths[i]
        pos = bisect.bisect_left(free, (size, -1))
        if pos < len(free):
            remaining, b = free.pop(pos)
        else:
            remaining, b = max_len, len(bins)
            bins.append([])
        bins[b].append(i)
        bisect.insort(free, (remaining - size, b))
    return bins


def _min_bin_slack(lengths: Sequence[int], max_len: int) -> list[list[int]]:
    """Each bin: the longest sample left, then the subset of the rest that fills it most.

    The subset is an exact subset-sum over distinct lengths (a Python int as the bitset of
    reachable sums; `c` samples of one length enter as chunks 1, 2, 4, ... copies), longest
    lengths first, stopping once the bin can be filled exactly. Samples of one length are taken
    lowest index first. Cost: about one big-int shift per distinct length per bin (20,000
    samples at 8K in a few seconds).
    """
    stacks: dict[int, list[int]] = {}  # length -> indices, lowest index last
    for i in sorted(range(len(lengths)), key=lambda i: (lengths[i], i), reverse=True):
        stacks.setdefault(lengths[i], []).append(i)
    sizes = sorted(stacks, reverse=True)
    bins: list[list[int]] = []
    while sizes:
        first = sizes[0]
        chosen = [stacks[first].pop()]
        room = max_len - first
        full, mask = 1 << room, (1 << (room + 1)) - 1
        reach = 1
        steps: list[tuple[int, int, int]] = []  # (length, copies, reachable sums before)
        for size in sizes:
            if reach & full:
                break
            left = min(len(stacks[size]), room // size) if size else 0
            chunk = 1
            while left > 0 and not reach & full:
                copies = min(chunk, left)
                steps.append((size, copies, reach))
                reach = (reach | (reach << (size * copies))) & mask
                left, chunk = left - copies, chunk * 2
        total = reach.bit_length() - 1
        for size, copies, before in reversed(steps):
            if not (before >> total) & 1:
                chosen.extend(stacks[size].pop() for _ in range(copies))
                total -= size * copies
        bins.append(chosen)
        sizes = [s for s in sizes if stacks[s]]
    return bins


def packing_efficiency(lengths: Sequence[int], bins: Sequence[Sequence[int]], max_len: int) -> float:
    """Real tokens / slots (sequences x max_len)."""
    return sum(lengths) / (len(bins) * max_len) if bins else 0.0


@dataclass
class PackedBatch:
    """One packed sequence, ready for the model (batch dimension 1)."""

    input_ids: torch.Tensor  # (1, L)
    targets: torch.Tensor  # (1, L): the next token's label, IGNORE where not trained
    position_ids: torch.Tensor  # (4, 1, L)
    mm_token_type_ids: torch.Tensor  # (1, L)
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None
    num_samples: int

    @property
    def num_tokens(self) -> int:
        return self.input_ids.shape[1]

    @property
    def num_targets(self) -> int:
        return int((self.targets != IGNORE).sum())

    def model_inputs(self) -> dict[str, Any]:
        return {
            "input_ids": self.input_ids,
            "position_ids": self.position_ids,
            "mm_token_type_ids": self.mm_token_type_ids,
            "pixel_values": self.pixel_values,
            "image_grid_thw": self.image_grid_thw,
            "use_cache": False,  # with a cache, transformers ignores the packed boundaries
        }

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> PackedBatch:
        pv = self.pixel_values
        if pv is not None:
            pv = pv.to(device, dtype=dtype or pv.dtype)
        grid = self.image_grid_thw.to(device) if self.image_grid_thw is not None else None
        return PackedBatch(
            self.input_ids.to(device),
            self.targets.to(device),
            self.position_ids.to(device),
            self.mm_token_type_ids.to(device),
            pv,
            grid,
            self.num_samples,
        )


@dataclass
class Segment:
    """One sample's tensors (pixel values already computed for its images)."""

    input_ids: list[int]
    labels: list[int]
    pixel_values: torch.Tensor | None = None  # (patches, C*T*P*P)
    image_grid_thw: torch.Tensor | None = None  # (images, 3)


RopeIndex = Callable[..., tuple[torch.Tensor, torch.Tensor]]


def collate(segments: Sequence[Segment], rope_index: RopeIndex, image_token_id: int) -> PackedBatch:
    """Concatenate segments into one sequence with per-sample positions."""
    ids, targets, mm, text_pos, rope_pos, pixels, grids = [], [], [], [], [], [], []
    for seg in segments:
        seg_ids = torch.tensor(seg.input_ids, dtype=torch.long).unsqueeze(0)
        seg_mm = (seg_ids == image_token_id).int()
        grid = seg.image_grid_thw
        positions, _ = rope_index(seg_ids, mm_token_type_ids=seg_mm, image_grid_thw=grid)
        rope_pos.append(positions)
        text_pos.append(torch.arange(seg_ids.shape[1]).view(1, 1, -1))
        ids.append(seg_ids)
        mm.append(seg_mm)
        labels = torch.tensor(seg.labels, dtype=torch.long)
        targets.append(torch.cat([labels[1:], torch.tensor([IGNORE])]).unsqueeze(0))
        if seg.pixel_values is not None and grid is not None and len(grid):
            pixels.append(seg.pixel_values)
            grids.append(grid)
    position_ids = torch.cat([torch.cat(text_pos, dim=2), torch.cat(rope_pos, dim=2)], dim=0)
    return PackedBatch(
        input_ids=torch.cat(ids, dim=1),
        targets=torch.cat(targets, dim=1),
        position_ids=position_ids,
        mm_token_type_ids=torch.cat(mm, dim=1),
        pixel_values=torch.cat(pixels) if pixels else None,
        image_grid_thw=torch.cat(grids) if grids else None,
        num_samples=len(segments),
    )
