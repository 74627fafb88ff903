"""Export the trained (sharded) model to a Hugging Face folder that `from_pretrained` loads.

Parameters are gathered one at a time (`full_tensor()`, a collective every rank joins) and rank 0
streams them into safetensors shards, so no rank ever holds the whole model. Fused MoE experts
are written in the on-disk layout of the published Qwen3-VL-MoE checkpoints: in memory
transformers keeps `gate_up_proj` as (experts, 2*moe_inter, hidden) and `down_proj` as
(experts, hidden, moe_inter); on disk they are (experts, hidden, 2*moe_inter) and
(experts, moe_inter, hidden). The loader transposes back by shape.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

EXPERT_SUFFIXES = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")


def disk_layout(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """In-memory tensor -> the published checkpoint's layout (fused experts transposed)."""
    if name.endswith(EXPERT_SUFFIXES):
        return tensor.transpose(1, 2).contiguous()
    return tensor


def check_unambiguous(config: Any) -> None:
    """The loader decides whether to transpose experts by shape; square shapes would be ambiguous."""
    text = config.text_config
    if text.hidden_size in (text.moe_intermediate_size, 2 * text.moe_intermediate_size):
        raise ValueError(
            "hidden_size equals moe_intermediate_size (or twice it): the exported expert layout would be "
            "ambiguous for the loader; pick different tiny sizes"
        )


def export(
    model: torch.nn.Module,
    out_dir: Path,
    *,
    processor_dir: Path | None = None,
    dtype: torch.dtype = torch.bfloat16,
    max_shard_bytes: int = 4 << 30,
) -> Path | None:
    """Write config, safetensors shards + index and the processor files; rank 0 writes."""
    from safetensors.torch import save_file
    from torch.distributed.tensor import DTensor

    check_unambiguous(model.config)
    is_main = not dist.is_initialized() or dist.get_rank() == 0
    tmp = out_dir.with_name(out_dir.name + ".partial")
    if is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    shard: dict[str, torch.Tensor] = {}
    shard_bytes, shards, weight_map = 0, [], {}

    def flush() -> None:
        nonlocal shard, shard_bytes
        if shard:
            name = f"model-{len(shards) + 1:05d}.safetensors"
            save_file(shard, str(tmp / name), metadata={"format": "pt"})
            shards.append(name)
            weight_map.update(dict.fromkeys(shard, name))
        shard, shard_bytes = {}, 0

    for name, value in model.state_dict().items():
        full = value.full_tensor() if isinstance(value, DTensor) else value
        if not is_main:
            continue
        tensor = disk_layout(
            name, full.detach().to("cpu", dtype=dtype if full.is_floating_point() else full.dtype)
        )
        if shard_bytes + tensor.nbytes > max_shard_bytes:
            flush()
        shard[name] = tensor
        shard_bytes += tensor.nbytes
    if is_main:
        flush()
        total = len(shards)
        renamed = {}
        for i, name in enumerate(shards, 1):
            final = f"model-{i:05d}-of-{total:05d}.safetensors"
            (tmp / name).rename(tmp / final)
            renamed[name] = final
        index = {
            "metadata": {"total_size": sum((tmp / f).stat().st_size for f in renamed.values())},
            "weight_map": {k: renamed[v] for k, v in sorted(weight_map.items())},
        }
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        config = model.config
        config.dtype = dtype
        config.save_pretrained(str(tmp))
        if processor_dir is not None and processor_dir.exists():
            for item in processor_dir.iterdir():
                if item.is_file():
                    shutil.copy2(item, tmp / item.name)
        shutil.rmtree(out_dir, ignore_errors=True)
        tmp.rename(out_dir)
    if dist.is_initialized():
        dist.barrier()
    return out_dir if is_main else None
