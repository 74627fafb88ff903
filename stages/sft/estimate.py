"""Parameter counts and a per-GPU memory estimate, from the real classes built on the meta device.

The model is FSDP2-sharded over all GPUs with fp32 master weights, fp32 gradients and AdamW
(two fp32 moments): 16 bytes per trainable parameter, divided by the GPU count. On top of that,
each GPU holds unsharded bf16 copies of the FSDP units in flight (the current and the prefetched
decoder layer, plus the root: embeddings, head, vision stem), their fp32 gradients before the
reduce-scatter, the checkpointed activations (one hidden state per layer with activation
checkpointing) and the logits of the trained tokens. Activation terms are rough by nature
(kernels and the allocator add more); the report says which term dominates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stages.sft.model import QWEN3_VL_30B_A3B, count_params, decoder_layers, meta_model, vision_blocks

GIB = 2**30


@dataclass
class MemoryEstimate:
    gpus: int
    seq_len: int
    sharded_states: float
    unsharded_units: float
    activations: float
    logits: float

    @property
    def total(self) -> float:
        return self.sharded_states + self.unsharded_units + self.activations + self.logits

    def as_gib(self) -> dict[str, float]:
        names = ("sharded_states", "unsharded_units", "activations", "logits", "total")
        return {n: round(getattr(self, n) / GIB, 2) for n in names}


def config_30b_a3b() -> Any:
    from transformers import Qwen3VLMoeConfig

    return Qwen3VLMoeConfig(**QWEN3_VL_30B_A3B)


def estimate(
    config: Any,
    gpus: int,
    seq_len: int,
    *,
    activation_checkpointing: bool = True,
    trained_fraction: float = 0.5,
    frozen_vision: bool = False,
) -> tuple[dict[str, int], MemoryEstimate]:
    """(parameter counts, per-GPU memory) for full fine-tuning with FSDP2 over `gpus` GPUs."""
    model = meta_model(config)
    counts = count_params(model)
    text = config.text_config
    frozen = counts.vision if frozen_vision else 0
    trainable = counts.total - frozen
    sharded = (16 * trainable + 4 * frozen) / gpus
    layer = max(sum(p.numel() for p in b.parameters()) for b in decoder_layers(model))
    blocks = sum(
        sum(p.numel() for p in b.parameters()) for b in [*decoder_layers(model), *vision_blocks(model)]
    )
    root = counts.total - blocks
    unsharded = 2 * layer * (2 + 4) + root * (2 + 4)  # bf16 params + fp32 grads in flight
    hidden, layers = text.hidden_size, text.num_hidden_layers
    per_layer_full = seq_len * (
        hidden * 2 * 10  # norms, q/k/v/o, residuals (bf16)
        + text.num_attention_heads * text.head_dim * 2 * 3
        + text.num_experts_per_tok * text.moe_intermediate_size * 2 * 4  # routed expert MLPs
    )
    if activation_checkpointing:
        activations = layers * seq_len * hidden * 2 + per_layer_full
    else:
        activations = layers * per_layer_full
    logits = seq_len * trained_fraction * text.vocab_size * (2 + 4 + 4)  # bf16, fp32 upcast, grad
    return counts.as_dict(), MemoryEstimate(gpus, seq_len, sharded, unsharded, activations, logits)


def report(config: Any, gpus: int, seq_lens: list[int], **kw: Any) -> str:
    """Human-readable table (what `trajforge sft estimate` prints)."""
    counts, _ = estimate(config, gpus, seq_lens[0], **kw)
    lines = [
        f"parameters: total {counts['total'] / 1e9:.2f}B, active per token {counts['active'] / 1e9:.2f}B "
        f"(experts {counts['experts'] / 1e9:.2f}B, vision {counts['vision'] / 1e9:.2f}B, "
        f"embedding {counts['embedding'] / 1e9:.2f}B)",
        f"per-GPU memory (GiB) with FSDP2 over {gpus} GPUs, fp32 master + AdamW, bf16 compute:",
        f"{'seq_len':>8} {'states':>8} {'units':>8} {'activ.':>8} {'logits':>8} {'total':>8}",
    ]
    for seq_len in seq_lens:
        _, mem = estimate(config, gpus, seq_len, **kw)
        g = mem.as_gib()
        lines.append(
            f"{seq_len:>8} {g['sharded_states']:>8.1f} {g['unsharded_units']:>8.1f} {g['activations']:>8.1f} "
            f"{g['logits']:>8.1f} {g['total']:>8.1f}"
        )
    return "\n".join(lines)
