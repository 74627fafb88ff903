"""A run's records as one digest per stage, for "same outputs before and after" checks.

Rows are read from every shard of `tasks/`, `plans/`, `raw/`, `verdicts/` and `kept/`, the
wall-clock fields dropped (latencies, wall seconds, start and finish times in `meta`), serialised
with sorted keys and sorted, then hashed: shard names and row order do not matter, content does.

    python bench/run_digest.py runs/demo        # after `make synth` and `make filter`
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

STAGES = ("tasks", "plans", "raw", "verdicts", "kept")
#: Fields that measure time, not content: they differ between any two runs.
WALL_CLOCK = {"teacher_latency_s", "tool_latency_s", "wall_s", "meta"}


def _content(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _content(v) for k, v in value.items() if k not in WALL_CLOCK}
    if isinstance(value, list):
        return [_content(v) for v in value]
    return value


def stage_digest(run: Path, stage: str) -> tuple[int, str]:
    """(rows, sha256 prefix) of a stage's records without their wall-clock fields."""
    rows = [row for shard in sorted((run / stage).rglob("*.parquet")) for row in pq.read_table(shard).to_pylist()]
    lines = sorted(json.dumps(_content(row), sort_keys=True, default=str) for row in rows)
    return len(rows), hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    args = parser.parse_args()
    for stage in STAGES:
        rows, digest = stage_digest(args.run, stage)
        print(f"{stage:9s} {rows:6d} rows  {digest}")


if __name__ == "__main__":
    main()
