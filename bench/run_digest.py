"""A run's records as one digest per stage, for "same outputs before and after" checks.

Rows are read from every shard of `tasks/`, `plans/`, `raw/`, `verdicts/` and `kept/`, the
wall-clock fields dropped (latencies, wall seconds, start and finish times in `meta`), serialised
with sorted keys and sorted, then hashed: shard names and row order do not matter, content does.

    python bench/run_digest.py runs/demo        # after `make synth` and `make filter`
    python bench/run_digest.py s3://bucket/runs/demo   # a run on object storage (AWS_* in the environment)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.store import RunStore

STAGES = ("tasks", "plans", "raw", "verdicts", "kept")
#: Fields that measure time, not content: they differ between any two runs.
WALL_CLOCK = {"teacher_latency_s", "tool_latency_s", "wall_s", "meta"}


def _content(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _content(v) for k, v in value.items() if k not in WALL_CLOCK}
    if isinstance(value, list):
        return [_content(v) for v in value]
    return value


def stage_digest(run: str | Path | RunStore, stage: str) -> tuple[int, str]:
    """(rows, sha256 prefix) of a stage's records without their wall-clock fields; every row of
    every complete shard counts, so a duplicate changes the digest."""
    store = run if isinstance(run, RunStore) else RunStore(run)
    rows = [row for key in store.shard_paths(stage) for row in store.read_shard(key).to_pylist()]
    lines = sorted(json.dumps(_content(row), sort_keys=True, default=str) for row in rows)
    return len(rows), hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a run folder or address")
    args = parser.parse_args()
    for stage in STAGES:
        rows, digest = stage_digest(args.run, stage)
        print(f"{stage:9s} {rows:6d} rows  {digest}")


if __name__ == "__main__":
    main()
