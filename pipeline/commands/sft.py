"""`trajforge sft --run DIR`: format the kept set, then train with torchrun (FSDP2).

`trajforge sft estimate` prints parameter counts and per-GPU memory for a training config
(the 30B-A3B builds on the meta device: no weights, no GPU).
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

import typer

from pipeline.commands.common import ConfigOption, SetOption, fail, load, open_run, stage_logger
from pipeline.config import ConfigError, parse_override
from pipeline.run_files import is_remote


def torchrun_command(sft: object, run_dir: Path, train_config: Path) -> list[str]:
    """The launcher line: standalone on one node, c10d rendezvous across nodes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={sft.nproc}"]
    if sft.nnodes > 1:
        if not sft.rdzv_endpoint:
            raise ValueError(
                "sft.nnodes > 1 needs sft.rdzv_endpoint=HOST:PORT (node 0), the same on every node"
            )
        cmd += [f"--nnodes={sft.nnodes}", "--rdzv_backend=c10d", f"--rdzv_endpoint={sft.rdzv_endpoint}"]
        cmd += [f"--rdzv_id={sft.rdzv_id}"]
        if sft.node_rank is not None:
            cmd += [f"--node_rank={sft.node_rank}"]
    else:
        cmd += ["--standalone"]
    cmd += ["-m", "stages.sft.train", "--run-dir", str(run_dir), "--config", str(train_config)]
    if sft.max_steps:
        cmd += ["--max-steps", str(sft.max_steps)]
    for item in sft.overrides:
        cmd += ["--set", item]
    return cmd


def sft_callback(
    ctx: typer.Context,
    run: str | None = typer.Option(None, "--run", help="Run folder with kept/*.parquet (from filter)."),
    config: Path | None = ConfigOption,
    sets: list[str] | None = SetOption,
    format_only: bool = typer.Option(False, "--format-only", help="Write RUN/sft/samples and stop."),
) -> None:
    """Train the student on the run's kept set (format, pack, FSDP2 via torchrun, export)."""
    if ctx.invoked_subcommand is not None:
        return
    if run is None:
        raise fail("pass --run DIR (a run folder with kept/ shards), or use `trajforge sft estimate`")
    if is_remote(run):
        raise fail(
            f"{run}: sft trains from a local run folder (the trainer's nodes read samples and write "
            "checkpoints on disk); copy the run down first (its kept/, images/ and config.yaml), "
            "then pass --run LOCAL_FOLDER"
        )
    from pipeline.leaks import LeakGuard
    from stages.sft.config import load_train_config
    from stages.sft.prepare import prepare

    cfg = load(config, sets, run)
    store = open_run(cfg)
    logger = stage_logger(store, "sft")
    train_config = Path(cfg.sft.config)
    try:
        train_cfg = load_train_config(train_config, _overrides(cfg.sft.overrides))
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    if not store.shard_paths("kept"):
        raise fail(f"{store.where('kept')} has no shards; run `trajforge filter --run {store.root}` first")
    started = time.perf_counter()
    try:
        summary = prepare(store.root, train_cfg, logger=logger, guard=LeakGuard.for_run(store.root, cfg))
    except (ValueError, OSError) as exc:
        raise fail(f"formatting failed: {exc}") from None
    drops = ", ".join(f"{k}: {v}" for k, v in summary["drop_reasons"].items()) or "none"
    typer.echo(
        f"sft format: {summary['kept']} kept -> {summary['samples']} samples ({summary['tokens']} tokens, "
        f"{summary['target_tokens']} trained, {summary['images']} images); dropped {summary['dropped']} ({drops})"
    )
    if not summary["samples"]:
        raise fail("no trainable samples; see RUN/logs/sft.log for each drop's reason")
    if format_only:
        return
    cmd = torchrun_command(cfg.sft, store.root, train_config)
    typer.echo("launch: " + shlex.join(cmd))
    code = subprocess.call(cmd, cwd=Path(__file__).resolve().parents[2])
    if code != 0:
        raise fail(
            f"trainer exited with {code}; rerun the same command to resume from the last checkpoint", code
        )
    log_path = store.root / "sft" / "train_log.jsonl"
    lines = log_path.read_text().splitlines() if log_path.exists() else []
    store.update_report(
        "sft", {**summary, "steps": len(lines), "wall_s": round(time.perf_counter() - started, 1)}
    )
    typer.echo(
        f"sft: {len(lines)} steps logged in {log_path}, checkpoints in {store.root / 'sft' / 'checkpoints'}, "
        f"export in {store.root / 'sft' / 'export'} ({time.perf_counter() - started:.0f}s)"
    )


def _overrides(items: list[str]) -> dict:
    """`sft.overrides` items (`section.key=value`) as {dotted key: value} for the SFT YAML."""
    try:
        return dict(parse_override(item) for item in items)
    except ConfigError as exc:
        raise fail(f"sft.overrides: {exc}") from None


def estimate_command(
    train_config: Path = typer.Option(
        Path("configs/sft/qwen3-vl-30b-a3b.yaml"), "--train-config", help="SFT training YAML (configs/sft/)."
    ),
    gpus: int = typer.Option(16, "--gpus", help="GPUs the model is sharded over (all nodes)."),
    seq_len: list[int] = typer.Option(
        None, "--seq-len", help="Packed length(s); default: the config's max_len."
    ),
) -> None:
    """Parameter counts (total / active) and a per-GPU memory estimate, built on the meta device."""
    from stages.sft.config import load_train_config
    from stages.sft.estimate import config_30b_a3b, report

    try:
        cfg = load_train_config(train_config)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    if cfg.model.path and (Path(cfg.model.path) / "config.json").exists():
        from transformers import AutoConfig

        model_config = AutoConfig.from_pretrained(cfg.model.path)
        source = cfg.model.path
    else:
        model_config, source = (
            config_30b_a3b(),
            "built-in Qwen3-VL-30B-A3B architecture (model.path not present)",
        )
    typer.echo(f"model: {source}")
    typer.echo(
        report(
            model_config,
            gpus,
            seq_len or [cfg.data.max_len],
            activation_checkpointing=cfg.parallel.activation_checkpointing,
            frozen_vision=cfg.optim.freeze_vision,
        )
    )


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Train the student (FSDP2, torchrun) on a run's kept set.", no_args_is_help=False
    )
    group.callback(invoke_without_command=True)(sft_callback)
    group.command("estimate")(estimate_command)
    app.add_typer(group, name="sft")
