"""The FSDP2 trainer on CPU (gloo): loss falls, stop + resume reproduces the curve (also at
another world size), checkpoints are distributed, and the export loads with from_pretrained."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stages.sft.config import load_train_config
from stages.sft.prepare import prepare
from stages.sft.synthetic import write_kept_set

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "sft" / "tiny.yaml"
JOB = Path(__file__).with_name("sft_dist_job.py")


def _torchrun(nproc: int, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        str(JOB),
        *args,
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("sft")
    cfg = load_train_config(CONFIG)
    runs = []
    for name in ("a", "b"):
        write_kept_set(base / name, 8, seed=3)
        prepare(base / name, cfg)
        runs.append(base / name)
    out = base / "result.json"
    _torchrun(2, str(runs[0]), str(runs[1]), str(CONFIG), str(out))
    return base, runs, json.loads(out.read_text())


def test_loss_falls_and_log_has_one_line_per_step(two_process_runs):
    _, (run_a, _), result = two_process_runs
    losses = [r["loss"] for r in result["uninterrupted"]]
    assert len(losses) == 4 and losses[-1] < losses[0] - 0.2
    lines = [json.loads(x) for x in (run_a / "sft" / "train_log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3, 4]
    assert all(x["tokens_per_s"] > 0 and x["world_size"] == 2 and x["mfu"] > 0 for x in lines)
    assert lines[0]["aux_loss"] is not None  # router aux loss is on in the tiny config


def test_stop_and_resume_reproduces_the_uninterrupted_curve(two_process_runs):
    _, (_, run_b), result = two_process_runs
    full = [r["loss"] for r in result["uninterrupted"]]
    resumed = [r["loss"] for r in result["first_half"] + result["resumed"]]
    assert [r["step"] for r in result["resumed"]] == [3, 4]
    assert resumed == pytest.approx(full, abs=1e-6)
    logged = [json.loads(x)["loss"] for x in (run_b / "sft" / "train_log.jsonl").read_text().splitlines()]
    assert logged == pytest.approx(full, abs=1e-6)
    assert sorted(p.name for p in (run_b / "sft" / "checkpoints").iterdir()) == ["step-2", "step-4"]
    assert len(list((run_b / "sft" / "checkpoints" / "step-2").glob("*.distcp"))) == 2


def test_resume_at_a_different_world_size(two_process_runs):
    base, (_, run_b), result = two_process_runs
    run_c = base / "c"
    shutil.copytree(run_b / "sft" / "samples", run_c / "sft" / "samples")
    shutil.copytree(run_b / "sft" / "processor", run_c / "sft" / "processor")
    shutil.copytree(run_b / "images", run_c / "images")
    shutil.copytree(run_b / "sft" / "checkpoints" / "step-2", run_c / "sft" / "checkpoints" / "step-2")
    out = base / "result-c.json"
    _torchrun(1, "--resume-only", str(run_c), str(CONFIG), str(out))
    resumed = json.loads(out.read_text())["resumed_other_world"]
    assert [r["world_size"] for r in resumed] == [1, 1]
    full = [r["loss"] for r in result["uninterrupted"]]
    assert [r["loss"] for r in resumed] == pytest.approx(full[2:], abs=1e-4)


def test_export_loads_with_from_pretrained(two_process_runs):
    from safetensors import safe_open
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    from transformers import Qwen3VLMoeForConditionalGeneration

    base, (run_a, _), _ = two_process_runs
    export = run_a / "sft" / "export"
    model, info = Qwen3VLMoeForConditionalGeneration.from_pretrained(export, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    dcp_to_torch_save(run_a / "sft" / "checkpoints" / "step-4", base / "final.pt")
    trained = torch.load(base / "final.pt", weights_only=False)["model"]
    loaded = model.state_dict()
    assert set(trained) == set(loaded)
    for name, value in trained.items():  # export is bf16: compare at bf16 precision
        assert torch.allclose(loaded[name].float(), value.to(torch.bfloat16).float()), name
    text = model.config.text_config
    index = json.loads((export / "model.safetensors.index.json").read_text())["weight_map"]
    key = "model.language_model.layers.0.mlp.experts.gate_up_proj"
    with safe_open(export / index[key], "pt") as handle:  # the published on-disk expert layout
        assert tuple(handle.get_slice(key).get_shape()) == (
            text.num_experts,
            text.hidden_size,
            2 * text.moe_intermediate_size,
        )
    assert (export / "tokenizer.json").exists() and (export / "chat_template.jinja").exists()
