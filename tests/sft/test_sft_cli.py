"""`trajforge sft estimate` on the meta device and the launcher line / format-only path."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.commands.sft import torchrun_command
from pipeline.config import SFTConfig
from stages.sft.estimate import config_30b_a3b, estimate
from stages.sft.synthetic import write_kept_set


def test_30b_a3b_builds_on_meta_with_published_size():
    counts, mem16 = estimate(config_30b_a3b(), 16, 8192)
    assert 30e9 < counts["total"] < 32e9  # Qwen3-VL-30B-A3B: ~31B with the vision tower
    assert 3e9 < counts["active"] < 4.5e9  # ~3B active per token (+ embeddings, head, vision)
    _, mem8 = estimate(config_30b_a3b(), 8, 8192)
    assert mem8.sharded_states == pytest.approx(2 * mem16.sharded_states)
    assert mem16.total / 2**30 < 78 and mem16.total < mem8.total < 139 * 2**30  # 16 x H100 or 8 x H200


def test_estimate_command_prints_counts_and_memory():
    result = CliRunner().invoke(app, ["sft", "estimate", "--gpus", "8", "--seq-len", "8192"])
    assert result.exit_code == 0, result.output
    assert "total 31.07B" in result.output and "over 8 GPUs" in result.output


def test_launcher_line_single_and_multi_node(tmp_path):
    single = torchrun_command(SFTConfig(nproc=2), tmp_path, tmp_path / "c.yaml")
    assert "--standalone" in single and single[-4:] == [
        "--run-dir",
        str(tmp_path),
        "--config",
        str(tmp_path / "c.yaml"),
    ]
    multi = torchrun_command(
        SFTConfig(nproc=8, nnodes=2, rdzv_endpoint="node0:29400", node_rank=1), tmp_path, tmp_path
    )
    assert "--nnodes=2" in multi and "--rdzv_endpoint=node0:29400" in multi and "--standalone" not in multi
    with pytest.raises(ValueError, match="rdzv_endpoint"):
        torchrun_command(SFTConfig(nnodes=2), tmp_path, tmp_path)


def test_format_only_writes_samples_and_reports_drops(tmp_path):
    run = tmp_path / "run"
    write_kept_set(run, 3)
    result = CliRunner().invoke(
        app, ["sft", "--run", str(run), "--format-only", "--set", "sft.overrides=[data.max_len=600]"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((run / "sft" / "format.json").read_text())
    assert summary["kept"] == 3 and summary["dropped"] >= 1 and "too long" in summary["drop_reasons"]
    assert summary["samples"] + summary["dropped"] == 3
    assert "too long" in (run / "logs" / "sft.log").read_text()
