"""Distributed checkpoints: `RUN/sft/checkpoints/step-N/`, resumable at any world size.

Model and optimiser go through torch.distributed.checkpoint (each rank writes its shards; a
load reshards to the current world size). The scheduler, step and data position (one integer:
sequences consumed) are in `train_state.pt`; each rank's RNG in `rng-<rank>.pt` (restored when
the world size is unchanged; otherwise reseeded from (seed, step, rank), which is what the run
uses anyway). `COMPLETE` is written last, so a crash mid-save never looks resumable.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

COMPLETE = "COMPLETE"
_STEP_RE = re.compile(r"^step-(\d+)$")


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step}"


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint folder, if any."""
    if not root.exists():
        return None
    found = [
        (int(m[1]), p) for p in root.iterdir() if (m := _STEP_RE.match(p.name)) and (p / COMPLETE).exists()
    ]
    return max(found)[1] if found else None


def save(
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train_state: dict[str, Any],
    rng: dict[str, Any],
    *,
    keep: int = 2,
) -> Path:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    folder = step_dir(root, step)
    rank = dist.get_rank()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(folder))
    torch.save(rng, folder / f"rng-{rank}.pt")
    if rank == 0:
        torch.save({**train_state, "world_size": dist.get_world_size()}, folder / "train_state.pt")
    dist.barrier()
    if rank == 0:
        (folder / COMPLETE).write_text(str(step))
        _prune(root, keep)
    dist.barrier()
    return folder


def load(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[dict[str, Any], dict | None]:
    """Load model + optimiser in place; returns (train_state, this rank's RNG or None)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(folder))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    train_state = torch.load(folder / "train_state.pt", weights_only=False)
    rng_file = folder / f"rng-{dist.get_rank()}.pt"
    same_world = train_state.get("world_size") == dist.get_world_size()
    rng = torch.load(rng_file, weights_only=False) if same_world and rng_file.exists() else None
    return train_state, rng


def _prune(root: Path, keep: int) -> None:
    if keep <= 0:
        return
    done = sorted(
        (int(m[1]), p) for p in root.iterdir() if (m := _STEP_RE.match(p.name)) and (p / COMPLETE).exists()
    )
    for _, path in done[:-keep]:
        shutil.rmtree(path, ignore_errors=True)
