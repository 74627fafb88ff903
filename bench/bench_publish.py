"""Publish throughput: trajforge's shard writer vs the `datasets` writer on the same rows.

Builds a synthetic kept set (noise images, so the bytes are incompressible like real photos),
then times, side by side in one run:
  - `stages.publish.hub.build_folder` (bounded deterministic shards + card), and
  - `datasets.Dataset.from_generator(...).to_parquet(...)` on the same rows (one file),
and the resume check a second push does (hash every local file). Prints rows/s, MB/s and ratios.

    python bench/bench_publish.py [--rows 300] [--side 128]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pipeline.schema import Step, Trajectory
from pipeline.store import RunStore
from stages.publish.hub import build_folder, features, hub_row, sha256_file


def make_kept(store: RunStore, rows: int, side: int) -> list[Trajectory]:
    rng = np.random.default_rng(0)

    def image() -> str:
        return store.images.put_image(Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)))

    records = []
    for n in range(rows):
        steps = [
            Step(
                index=0,
                think="crop " * 40,
                action="tool_call",
                tool_name="code",
                arguments=json.dumps({"code": "img.crop((0,0,9,9))"}),
                observation_text="saved <image>",
                observation_images=[image()],
            ),
            Step(
                index=1,
                think="search " * 40,
                action="tool_call",
                tool_name="text_search",
                arguments=json.dumps({"queries": [f"q{n}"]}),
                observation_text="result text " * 200,
            ),
            Step(index=2, think="done", action="answer", answer=str(n)),
        ]
        mode = ("deepresearch", "general")[n % 2]
        records.append(
            Trajectory(
                task_id=f"t{n}",
                teacher="bench",
                mode=mode,
                category="search",
                question=f"question {n}",
                images=[image(), image()],
                steps=steps,
                final_answer=str(n),
            )
        )
    return records


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--side", type=int, default=128)
    args = parser.parse_args()
    import datasets

    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "run")
        records = make_kept(store, args.rows, args.side)
        image_mb = sum(p.stat().st_size for p in (store.root / "images").rglob("*.png")) / 1e6

        start = time.perf_counter()
        report = build_folder(store, Path(tmp) / "hub", repo="bench/x", max_shard_mb=16, records=records)
        ours = time.perf_counter() - start
        ours_mb = sum(p.stat().st_size for p in report.files) / 1e6

        start = time.perf_counter()
        ds = datasets.Dataset.from_generator(
            lambda: (hub_row(t, store) for t in records),
            features=features(),
            cache_dir=str(Path(tmp) / "cache"),
        )
        ds.to_parquet(str(Path(tmp) / "baseline.parquet"))
        baseline = time.perf_counter() - start

        start = time.perf_counter()
        for path in report.files:
            sha256_file(path)
        resume = time.perf_counter() - start

    print(f"rows {args.rows}, images {image_mb:.1f} MB, shards {len(report.files)} ({ours_mb:.1f} MB)")
    print(
        f"trajforge build_folder : {args.rows / ours:8.1f} rows/s  {ours_mb / ours:6.1f} MB/s  ({ours:.2f}s)"
    )
    print(f"datasets from_generator: {args.rows / baseline:8.1f} rows/s  ({baseline:.2f}s)")
    print(f"ratio build_folder / datasets speed: {baseline / ours:.2f}x")
    print(
        f"resume check (sha256 of every shard): {ours_mb / resume:.0f} MB/s, {resume / ours:.2%} of a build"
    )


if __name__ == "__main__":
    main()
