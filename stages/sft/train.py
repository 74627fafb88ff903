"""The SFT trainer (run under torchrun): one readable loop, parallelism from `parallel.py`.

    python -m torch.distributed.run --nproc_per_node 2 -m stages.sft.train --run-dir runs/demo

Reads the formatted samples (`RUN/sft/samples/`, written by `trajforge sft`), packs them, and
trains with FSDP2, AdamW, warmup + cosine, clipping and gradient accumulation. The loss is the
mean over every trained token of the global batch (the same at any world size). Writes
`RUN/sft/train_log.jsonl`, `RUN/sft/checkpoints/step-N/` and `RUN/sft/export/`.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from pipeline.store import RunStore
from stages.sft import checkpoint
from stages.sft.config import TrainConfig, load_train_config
from stages.sft.data import (
    ImageLoader,
    PackedData,
    build_batch,
    dummy_segment,
    label_count,
    rng_state,
    set_rng_state,
)
from stages.sft.formatter import read_samples
from stages.sft.model import build_model, count_params, model_class, tiny_config
from stages.sft.packing import IGNORE
from stages.sft.parallel import Dist, freeze, init_distributed, materialise, mixed_precision, shard_model
from stages.sft.processor import reload_processor

# We never modify model outputs in place, which is what this FSDP2 warning is about.
warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")

SAMPLES_STAGE = "sft/samples"


def lr_lambda(cfg: TrainConfig, total_steps: int):
    """Linear warmup to the peak, then cosine down to `min_lr_ratio` of it."""
    warmup, floor = cfg.optim.warmup_steps, cfg.optim.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def build_sharded_model(cfg: TrainConfig, tokenizer: Any, d: Dist) -> torch.nn.Module:
    """Meta build on every rank, FSDP2 sharding, weights broadcast from rank 0."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig

    if cfg.model.path:
        config = AutoConfig.from_pretrained(cfg.model.path)
    else:
        config = tiny_config(tokenizer, **dict(cfg.model.tiny))
    full_state = None
    if d.is_main:
        if cfg.model.path:
            source = model_class().from_pretrained(cfg.model.path, dtype=torch.bfloat16)
        else:
            source = build_model(
                config, seed=cfg.model.seed, attn_implementation=cfg.model.attn_implementation
            )
        full_state = source.state_dict()
    with init_empty_weights(include_buffers=False):
        model = model_class()._from_config(config, attn_implementation=cfg.model.attn_implementation)
    model.float()
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    freeze(model, vision=cfg.optim.freeze_vision, projector=cfg.optim.freeze_projector)
    if cfg.parallel.activation_checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
    shard_model(
        model,
        mp_policy=mixed_precision(cfg.parallel.mixed_precision, d.device),
        reshard_after_forward=cfg.parallel.reshard_after_forward,
    )
    materialise(model, full_state, d.device, buffers)
    del full_state
    model.train()
    return model


def flops_per_token(model: torch.nn.Module, mean_len: float) -> float:
    """6 x active parameters + causal attention (6 x layers x attention width x mean context)."""
    text = model.config.text_config
    attention = 6 * text.num_hidden_layers * text.num_attention_heads * text.head_dim * mean_len
    return 6 * count_params(model).active + attention


class Trainer:
    def __init__(self, run: Path, cfg: TrainConfig, d: Dist):
        self.run, self.cfg, self.d = Path(run), cfg, d
        self.store = RunStore(self.run)
        self.out = self.run / "sft"
        samples = read_samples(self.store, SAMPLES_STAGE)
        if not samples:
            raise SystemExit(f"no formatted samples under {self.out / 'samples'}; run `trajforge sft` first")
        self.processor = reload_processor(self.out / "processor")
        self.model = build_sharded_model(cfg, self.processor.tokenizer, d)
        self.data = PackedData(samples, cfg.data.max_len, pack=cfg.data.pack, seed=cfg.data.seed)
        self.loader = ImageLoader(self.store, self.processor.image_processor)
        self.image_id = self.processor.image_token_id
        self.dummy = dummy_segment(
            self.processor.image_processor,
            self.processor.vision_start_token_id,
            self.image_id,
            self.processor.vision_end_token_id,
        )
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.params = params
        o = cfg.optim
        self.optimizer = torch.optim.AdamW(
            params, lr=o.lr, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
        )
        per_epoch = max(1, len(self.data) // o.global_batch)
        self.total_steps = o.max_steps or max(1, math.ceil(o.epochs * per_epoch))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda(cfg, self.total_steps))
        self.step = 0
        mean_len = sum(s.num_tokens for s in samples) / len(samples)
        self.flops_per_token = flops_per_token(self.model, mean_len)

    # -- state ---------------------------------------------------------------------------
    def resume(self) -> bool:
        folder = checkpoint.latest(self.out / "checkpoints")
        if folder is None or not self.cfg.checkpoint.resume:
            return False
        state, rng = checkpoint.load(folder, self.model, self.optimizer)
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = state["step"]
        if state["global_batch"] != self.cfg.optim.global_batch:
            raise SystemExit(
                "optim.global_batch changed since the checkpoint; keep it to resume the same run"
            )
        if rng is not None:
            set_rng_state(rng)
        if self.d.is_main:
            self._truncate_log(self.step)
            print(f"resumed from {folder} at step {self.step} (saved at world size {state['world_size']})")
        return True

    def save(self) -> Path:
        state = {
            "step": self.step,
            "slot": self.step * self.cfg.optim.global_batch,
            "global_batch": self.cfg.optim.global_batch,
            "scheduler": self.scheduler.state_dict(),
        }
        return checkpoint.save(
            self.out / "checkpoints",
            self.step,
            self.model,
            self.optimizer,
            state,
            rng_state(),
            keep=self.cfg.checkpoint.keep,
        )

    @property
    def log_path(self) -> Path:
        return self.out / "train_log.jsonl"

    def _truncate_log(self, step: int) -> None:
        if self.log_path.exists():
            lines = [
                ln for ln in self.log_path.read_text().splitlines() if ln and json.loads(ln)["step"] <= step
            ]
            self.log_path.write_text("".join(ln + "\n" for ln in lines))

    # -- one optimiser step --------------------------------------------------------------
    def train_step(self) -> dict[str, Any]:
        cfg, d = self.cfg, self.d
        started = time.perf_counter()
        torch.manual_seed(cfg.model.seed * 100_003 + self.step * 1009 + d.rank)
        slots = self.data.rank_slots(self.step, cfg.optim.global_batch, d.rank, d.world)
        micro = [self.data.sequence_at(s) for s in slots]
        counts = torch.tensor(
            [sum(label_count(seq) for seq in micro), sum(s.num_tokens for seq in micro for s in seq)],
            dtype=torch.float64,
            device=d.device,
        )
        dist.all_reduce(counts)
        n_targets, n_tokens = counts.tolist()
        ce_total = torch.zeros((), dtype=torch.float64, device=d.device)
        aux_total = torch.zeros((), dtype=torch.float64, device=d.device)
        coef = cfg.optim.router_aux_loss_coef
        rope = self.model.model.get_rope_index
        for seq in micro:
            batch = build_batch(seq, self.loader, rope, self.image_id, self.dummy).to(d.device)
            positions = (batch.targets[0] != IGNORE).nonzero().squeeze(1)
            out = self.model(**batch.model_inputs(), logits_to_keep=positions, output_router_logits=coef > 0)
            ce = F.cross_entropy(out.logits[0].float(), batch.targets[0, positions], reduction="sum")
            # FSDP averages gradients over ranks: scale so the result is the global token mean
            loss = ce * d.world / max(n_targets, 1)
            if coef > 0 and out.aux_loss is not None:
                loss = loss + coef * out.aux_loss / len(micro)
                aux_total += out.aux_loss.detach().double() / len(micro)
            loss.backward()
            ce_total += ce.detach().double()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.optim.clip_norm)
        if hasattr(grad_norm, "full_tensor"):
            grad_norm = grad_norm.full_tensor()
        self.optimizer.step()
        lr = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        dist.all_reduce(ce_total)
        dist.all_reduce(aux_total)
        self.step += 1
        elapsed = time.perf_counter() - started
        tokens_per_s = n_tokens / elapsed
        peak = cfg.log.peak_tflops * 1e12 * d.world
        record = {
            "step": self.step,
            "loss": float(ce_total) / max(n_targets, 1),
            "aux_loss": float(aux_total) / d.world if coef > 0 else None,
            "lr": lr,
            "grad_norm": float(grad_norm),
            "tokens": int(n_tokens),
            "target_tokens": int(n_targets),
            "tokens_per_s": tokens_per_s,
            "mfu": tokens_per_s * self.flops_per_token / peak,
            "step_s": elapsed,
            "world_size": d.world,
        }
        if d.device.type == "cuda":
            record["max_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        return record

    def fit(self, max_steps: int | None = None) -> list[dict[str, Any]]:
        self.resume()
        last = min(self.total_steps, max_steps or self.total_steps)
        records = []
        every = self.cfg.checkpoint.every_steps
        while self.step < last:
            record = self.train_step()
            records.append(record)
            if self.d.is_main:
                with open(self.log_path, "a") as handle:
                    handle.write(json.dumps(record) + "\n")
                if record["step"] % self.cfg.log.every_steps == 0:
                    print(
                        f"step {record['step']}/{self.total_steps} loss {record['loss']:.4f} "
                        f"lr {record['lr']:.2e} gnorm {record['grad_norm']:.3f} "
                        f"tok/s {record['tokens_per_s']:.0f} mfu {record['mfu']:.2%}",
                        flush=True,
                    )
            if every and self.step % every == 0 and self.step < last:
                self.save()
        self.save()
        return records


def train(
    run: Path,
    config: Path,
    *,
    overrides: dict | None = None,
    max_steps: int | None = None,
    export: bool = True,
):
    """Train (resuming if a checkpoint exists) and export; returns this process's step records."""
    d = init_distributed()
    cfg = load_train_config(config, overrides)
    trainer = Trainer(run, cfg, d)
    if d.is_main:
        counts = count_params(trainer.model)
        print(
            f"sft: {len(trainer.data.samples)} samples in {len(trainer.data)} packed sequences, "
            f"world {d.world}, {trainer.total_steps} steps, params {counts.total:,} (active {counts.active:,})",
            flush=True,
        )
    started = time.perf_counter()
    records = trainer.fit(max_steps)
    if export and cfg.checkpoint.export and trainer.step >= trainer.total_steps:
        from stages.sft.student_export import export as export_model

        export_model(trainer.model, trainer.out / "export", processor_dir=trainer.out / "processor")
    if d.is_main and records:
        tokens = sum(r["tokens"] for r in records)
        print(
            f"sft done: {len(records)} steps, loss {records[0]['loss']:.4f} -> {records[-1]['loss']:.4f}, "
            f"{tokens / (time.perf_counter() - started):.0f} tokens/s overall",
            flush=True,
        )
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=Path("configs/sft/tiny.yaml"))
    parser.add_argument("--max-steps", type=int, default=None, help="stop (and checkpoint) after this step")
    parser.add_argument("--set", action="append", default=[], help="override: section.key=value (YAML value)")
    parser.add_argument("--no-export", action="store_true")
    args = parser.parse_args(argv)
    from pipeline.config import parse_override

    overrides = dict(parse_override(item) for item in args.set)
    try:
        train(
            args.run_dir,
            args.config,
            overrides=overrides,
            max_steps=args.max_steps,
            export=not args.no_export,
        )
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
