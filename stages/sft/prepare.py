"""Format a run's kept set for training: `RUN/sft/samples/` + `RUN/sft/processor/`.

Runs once, in the launching process, before torchrun starts the ranks: every drop is logged
with its reason and counted, the processor the samples were rendered with is saved next to them
(so every rank and the export use exactly that one), and re-running replaces the samples.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipeline.leaks import LeakGuard
from pipeline.schema import Trajectory
from pipeline.store import RunStore
from stages.sft.config import TrainConfig
from stages.sft.formatter import Drop, Formatter, samples_table, store_image_size
from stages.sft.processor import make_processor, save_processor

log = logging.getLogger(__name__)


def prepare(
    run: Path, cfg: TrainConfig, *, logger: logging.Logger | None = None, guard: LeakGuard | None = None
) -> dict[str, Any]:
    """Format `RUN/kept/` into samples; returns the summary (also in `RUN/sft/format.json`).

    `guard` drops samples that hold the host's paths or secrets (default: built from the run).
    """
    logger = logger or log
    guard = guard or LeakGuard.for_run(run)
    store = RunStore(run)
    trajectories = store.read_records("kept", Trajectory)
    if not trajectories:
        raise ValueError(f"no kept trajectories under {store.root / 'kept'}; run `trajforge filter` first")
    processor = make_processor(
        cfg.model.path, min_pixels=cfg.data.image_min_pixels, max_pixels=cfg.data.image_max_pixels
    )
    fmt = Formatter(
        processor,
        max_len=cfg.data.max_len,
        image_size=store_image_size(store),
        observation_role=cfg.data.observation_role,
        guard=guard,
    )
    samples, reasons = [], Counter()
    for trajectory in tqdm(trajectories, desc="format", unit="traj", disable=len(trajectories) < 200):
        result = fmt(trajectory)
        if isinstance(result, Drop):
            reasons[result.reason.split(":")[0]] += 1
            logger.info("sft drop %s: %s", result.sample_id, result.reason)
            continue
        samples.append(result)
    out = store.root / "sft"
    shutil.rmtree(out / "samples", ignore_errors=True)
    if samples:
        store.write_table("sft/samples", samples_table(samples), prefix="samples")
    shutil.rmtree(out / "processor", ignore_errors=True)
    save_processor(processor, out / "processor")
    summary = {
        "kept": len(trajectories),
        "samples": len(samples),
        "dropped": sum(reasons.values()),
        "drop_reasons": dict(reasons),
        "tokens": sum(s.num_tokens for s in samples),
        "target_tokens": sum(sum(1 for x in s.labels if x != -100) for s in samples),
        "images": sum(len(s.images) for s in samples),
        "max_len": cfg.data.max_len,
        "observation_role": cfg.data.observation_role,
        "leak_scan": guard.counts.as_dict(),
    }
    (out / "format.json").write_text(json.dumps(summary, indent=2))
    return summary
