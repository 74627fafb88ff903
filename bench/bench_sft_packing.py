"""Packing efficiency (real tokens / slots) of the SFT packer, side by side with naive baselines.

    python bench/bench_sft_packing.py [--run runs/demo] [--n 600]

With `--run` (a run with kept/ shards) it formats that kept set with the tiny processor; without,
it builds a synthetic kept set whose trajectories have 1 to 8 tool rounds and varied image sizes.
Prints, per max length: the packer's efficiency (ours) beside best-fit decreasing alone (the
packer before minimum bin slack joined it), the lower bound ceil(tokens / max_len) sequences,
greedy in-order packing, and one sample per sequence padded to the longest (no packing), plus
the formatting and packing times.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.schema import Trajectory
from pipeline.store import RunStore
from stages.sft.formatter import Formatter, Sample, store_image_size
from stages.sft.packing import _best_fit_decreasing, pack_lengths, packing_efficiency
from stages.sft.processor import build_tiny_processor
from stages.sft.synthetic import synthetic_trajectory


def synthetic_kept(root: Path, n: int, seed: int = 0) -> RunStore:
    store = RunStore(root)
    rng = random.Random(seed)
    records = []
    for i in range(n):
        size = (rng.choice([64, 96, 160, 256]), rng.choice([64, 128, 192]))
        t = synthetic_trajectory(store, i, rng, image_size=size)
        if t.mode != "plan":
            rounds = rng.randint(1, 8)
            tool = t.steps[0]
            steps = [tool.model_copy(update={"index": k}) for k in range(rounds)]
            t = t.model_copy(update={"steps": [*steps, t.steps[-1].model_copy(update={"index": rounds})]})
        records.append(t)
    store.write_records("kept", records, Trajectory)
    return store


def greedy_in_order(lengths: list[int], max_len: int) -> int:
    bins, load = 0, max_len + 1
    for n in lengths:
        if load + n > max_len:
            bins, load = bins + 1, 0
        load += n
    return bins


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=Path, default=None)
    parser.add_argument("--n", type=int, default=600)
    args = parser.parse_args()
    tmp = tempfile.TemporaryDirectory()
    store = RunStore(args.run) if args.run else synthetic_kept(Path(tmp.name), args.n)
    processor = build_tiny_processor(min_pixels=1024, max_pixels=65536)
    fmt = Formatter(processor, max_len=32768, image_size=store_image_size(store))
    started = time.perf_counter()
    samples = [s for s in map(fmt, store.read_records("kept", Trajectory)) if isinstance(s, Sample)]
    format_s = time.perf_counter() - started
    lengths = [s.num_tokens for s in samples]
    print(
        f"{len(samples)} samples, {sum(lengths)} tokens (min {min(lengths)}, mean {sum(lengths) / len(lengths):.0f}, "
        f"max {max(lengths)}), formatted at {len(samples) / format_s:.0f} samples/s"
    )
    print(
        f"{'max_len':>8} {'ours':>7} {'BFD':>7} {'bound':>7} {'seqs':>5} {'BFD':>5} {'bound':>5} "
        f"{'greedy':>7} {'unpacked':>8} {'CPU ms':>8} {'BFD ms':>7}"
    )
    for max_len in (4096, 8192, 16384):
        usable = [n for n in lengths if n <= max_len]
        t0 = time.process_time()
        bins = pack_lengths(usable, max_len)
        t1 = time.process_time()
        bfd = _best_fit_decreasing(usable, max_len)
        t2 = time.process_time()
        bound = math.ceil(sum(usable) / max_len)
        greedy = sum(usable) / (greedy_in_order(usable, max_len) * max_len)
        unpacked = sum(usable) / (len(usable) * max(usable))
        print(
            f"{max_len:>8} {packing_efficiency(usable, bins, max_len):>7.4f} "
            f"{packing_efficiency(usable, bfd, max_len):>7.4f} {sum(usable) / (bound * max_len):>7.4f} "
            f"{len(bins):>5} {len(bfd):>5} {bound:>5} {greedy:>7.4f} {unpacked:>8.4f} "
            f"{(t1 - t0) * 1000:>8.1f} {(t2 - t1) * 1000:>7.1f}"
        )
    tmp.cleanup()


if __name__ == "__main__":
    main()
