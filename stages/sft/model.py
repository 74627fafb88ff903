"""The student model: Qwen3-VL-MoE from a local folder, a tiny random one, or the 30B-A3B on meta.

Parameter counts (total and active per token) come from the module tree, so the estimate for
the real 30B-A3B is computed from the same classes the trainer runs, built on the meta device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

#: Qwen3-VL-30B-A3B-Instruct's architecture (from its published config.json), for meta builds.
QWEN3_VL_30B_A3B: dict[str, Any] = {
    "text_config": {
        "vocab_size": 151936,
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 48,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "moe_intermediate_size": 768,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "decoder_sparse_step": 1,
        "max_position_embeddings": 262144,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": [24, 20, 20],
            "mrope_interleaved": True,
        },
    },
    "vision_config": {
        "depth": 27,
        "hidden_size": 1152,
        "intermediate_size": 4304,
        "num_heads": 16,
        "out_hidden_size": 2048,
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 2304,
        "deepstack_visual_indexes": [8, 16, 24],
    },
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "tie_word_embeddings": False,
}


def tiny_config(tokenizer: Any, **overrides: Any) -> Any:
    """A couple of layers, four small experts, a two-block vision tower; ids from the tokenizer.

    moe_intermediate (48) differs from hidden/2 and hidden, so the expert layout on disk
    (transposed) is never ambiguous for the loader's shape check.
    """
    from transformers import Qwen3VLMoeConfig

    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "moe_intermediate_size": 48,
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": False,
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": 10000.0,
            "mrope_section": [4, 2, 2],
            "mrope_interleaved": True,
        },
        **overrides.pop("text_config", {}),
    }
    vision = {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": text["hidden_size"],
        "patch_size": 16,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "num_position_embeddings": 64,
        "deepstack_visual_indexes": [0],
        **overrides.pop("vision_config", {}),
    }
    ids = {
        name: tokenizer.convert_tokens_to_ids(token)
        for name, token in (
            ("image_token_id", "<|image_pad|>"),
            ("video_token_id", "<|video_pad|>"),
            ("vision_start_token_id", "<|vision_start|>"),
            ("vision_end_token_id", "<|vision_end|>"),
        )
    }
    return Qwen3VLMoeConfig(
        text_config=text, vision_config=vision, tie_word_embeddings=False, **ids, **overrides
    )


def model_class() -> type:
    from transformers import Qwen3VLMoeForConditionalGeneration

    return Qwen3VLMoeForConditionalGeneration


def build_model(config: Any, *, seed: int = 0, attn_implementation: str = "sdpa") -> torch.nn.Module:
    """A randomly initialised model (fp32, CPU), deterministic in `seed`."""
    torch.manual_seed(seed)
    config._attn_implementation = attn_implementation
    model = model_class()(config)
    return model.float().eval()


def meta_model(config: Any) -> torch.nn.Module:
    """The architecture without weights (parameter counting, memory estimates, sharding plans)."""
    with torch.device("meta"):
        return model_class()(config)


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    return list(model.model.language_model.layers)


def vision_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    return list(model.model.visual.blocks)


def projector_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The vision -> language projector: the patch merger and the DeepStack mergers."""
    visual = model.model.visual
    return [visual.merger, *visual.deepstack_merger_list]


@dataclass
class ParamCounts:
    total: int
    active: int
    vision: int
    embedding: int
    experts: int

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def count_params(model: torch.nn.Module) -> ParamCounts:
    """Total parameters, and those one token touches (top-k of the experts, not all of them)."""
    text = model.config.text_config
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for p in model.model.visual.parameters())
    embedding = model.model.language_model.embed_tokens.weight.numel()
    experts = sum(p.numel() for n, p in model.named_parameters() if ".mlp.experts." in n)
    active = total - experts + experts * text.num_experts_per_tok // text.num_experts
    return ParamCounts(total=total, active=active, vision=vision, embedding=embedding, experts=experts)
