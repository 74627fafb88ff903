"""Parallelism as configuration: process group, model materialisation, FSDP2 sharding.

Every rank builds the model on the meta device, shards it with `fully_shard` (each decoder
layer, each vision block, then the root), allocates only its shards, and receives the weights
from rank 0 (`broadcast_from_rank0`): no rank ever holds a second full copy besides rank 0's
source state dict. Mixed precision: bf16 compute with fp32 master weights and fp32 gradient
reduction on GPU; plain fp32 on CPU (gloo).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """torchrun's environment -> process group (nccl on GPU, gloo on CPU); works without torchrun."""
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(29500 + os.getpid() % 1000))
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device)


def mixed_precision(mode: str, device: torch.device) -> Any:
    from torch.distributed.fsdp import MixedPrecisionPolicy

    use_bf16 = mode == "bf16" or (mode == "auto" and device.type == "cuda")
    if not use_bf16:
        return MixedPrecisionPolicy()
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


def shard_model(model: torch.nn.Module, *, mp_policy: Any, reshard_after_forward: bool = True) -> None:
    """`fully_shard` per decoder layer and per vision block, then the root (embeddings, head, rest)."""
    from torch.distributed.fsdp import fully_shard

    from stages.sft.model import decoder_layers, vision_blocks

    for block in [*vision_blocks(model), *decoder_layers(model)]:
        fully_shard(block, mp_policy=mp_policy, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mp_policy=mp_policy, reshard_after_forward=False)  # used right away by backward


def freeze(model: torch.nn.Module, *, vision: bool, projector: bool) -> int:
    """Freeze the vision tower (without its projector) and/or the projector; returns frozen count."""
    from stages.sft.model import projector_modules

    projector_params = {id(p) for m in projector_modules(model) for p in m.parameters()}
    frozen = 0
    for param in model.model.visual.parameters():
        is_projector = id(param) in projector_params
        if (vision and not is_projector) or (projector and is_projector):
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def materialise(
    model: torch.nn.Module, full_state: dict[str, torch.Tensor] | None, device: torch.device, buffers: dict
) -> None:
    """Allocate the (sharded) meta parameters on `device` and fill them from rank 0's state dict."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    model.to_empty(device=device)
    with torch.no_grad():
        for name, value in buffers.items():  # non-persistent buffers (rotary tables) are not in state dicts
            model.get_buffer(name).copy_(value.to(device))
    set_model_state_dict(
        model,
        full_state or {},
        options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=True),
    )
