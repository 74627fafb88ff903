"""The SFT training config (`configs/sft/*.yaml`): model, data, optimiser, parallelism, logging.

Separate from the pipeline config because it describes one training job, shipped with the run's
formatted samples to every torchrun rank. Unknown keys are errors, like the pipeline config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.config import set_path, validation_message


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelConfig(_Section):
    """Where the student comes from: a local HF folder (real) or a tiny random build (tests, CPU)."""

    path: str | None = None  # HF folder with config, safetensors and processor; None: `tiny`
    tiny: dict = Field(default_factory=dict)  # overrides for stages.sft.model.tiny_config
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    seed: int = 0


class DataConfig(_Section):
    max_len: int = 2048  # tokens per packed sequence; a longer sample is dropped, never cut
    image_max_pixels: int = 1_048_576  # per-image pixel budget (processor resizes to fit)
    image_min_pixels: int = 1024
    observation_role: Literal["user", "tool"] = "user"  # the same key the inference side uses
    pack: bool = True
    seed: int = 0


class OptimConfig(_Section):
    lr: float = 1e-5
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    clip_norm: float = 1.0
    global_batch: int = 8  # packed sequences per optimiser step (constant across world sizes)
    max_steps: int | None = None  # None: `epochs` passes over the packed data
    epochs: float = 1.0
    router_aux_loss_coef: float = 0.0  # >0 adds the MoE load-balancing loss
    freeze_vision: bool = False
    freeze_projector: bool = False


class ParallelConfig(_Section):
    mixed_precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 on GPU, fp32 on CPU
    activation_checkpointing: bool = True
    reshard_after_forward: bool = True


class CheckpointConfig(_Section):
    every_steps: int = 0  # 0: only at the end
    keep: int = 2
    resume: bool = True
    export: bool = True


class LogConfig(_Section):
    peak_tflops: float = 989.0  # per device, dense bf16 (H100 SXM); used for the MFU estimate
    every_steps: int = 1


class TrainConfig(_Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    parallel: ParallelConfig = Field(default_factory=ParallelConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    log: LogConfig = Field(default_factory=LogConfig)


def load_train_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read a training YAML; `overrides` is a nested dict merged on top (tests, CLI)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SFT config {path} not found; pick one in configs/sft/ (tiny.yaml, ...)")
    tree = yaml.safe_load(path.read_text()) or {}
    for key, value in (overrides or {}).items():
        set_path(tree, key, value)
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        raise ValueError(f"invalid SFT config {path}:\n{validation_message(exc)}") from None
