"""The stages fit together: world -> synth -> filter -> sft samples -> Hub folder, through the CLI.

Each stage has its own tests; this one checks the contracts between them on a tiny world with
defect injection, so a change in one stage's output that another stage cannot read fails here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.schema import Trajectory
from pipeline.store import RunStore
from world.score import run_defects


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{args[0]} failed:\n{result.output}\n{result.exception!r}"
    return result.output


def test_offline_pipeline_end_to_end(tmp_path: Path) -> None:
    run, world = tmp_path / "run", tmp_path / "world"
    sets = [
        "--set", f"world.dir={world}", "--set", "world.entities=24", "--set", "world.tasks=8",
        "--set", "seeds.limit=8", "--set", "synth.rollouts=2",
        "--set", "world.knobs={defects: {wrong_answer: 0.25, sandbox_error: 0.25}}",
    ]  # fmt: skip
    invoke("synth", "--run", str(run), "--no-ray", *sets)
    store = RunStore(run)
    raw = store.read_records("raw", Trajectory)
    assert len(raw) == 16 and all(
        t.status in {"answered", "failed", "turn_limit", "token_limit"} for t in raw
    )
    assert {t.category for t in raw} >= {"perception", "search"}
    assert all(t.steps and t.steps[-1].action == "answer" for t in raw if t.status == "answered")

    invoke("filter", "--run", str(run), "--judge", "none", *sets)
    verdicts = pq.read_table(run / "verdicts").to_pylist()
    assert len(verdicts) == len(raw)
    # the world's truth lies beside the run, not in the data; `world score` joins it with verdicts
    planted, _ = run_defects(store)
    defective = {tid for tid, defects in planted.items() if defects}
    assert defective, "the world should have injected defects at these rates"
    scored = invoke("world", "score", str(run))
    assert "recall 1.000" in scored and store.read_report()["world_score"]["defective"] == len(defective)
    dropped = {v["trajectory_id"] for v in verdicts if not v["passed"]}
    assert defective <= dropped, "every injected wrong answer / sandbox error is caught by rules"
    kept = store.read_records("kept", Trajectory)
    assert kept and not {t.trajectory_id for t in kept} & defective
    assert any(t.mode == "plan" for t in kept)

    invoke("sft", "--run", str(run), "--format-only", *sets)
    samples = pq.read_table(run / "sft" / "samples")
    assert samples.num_rows > 0
    fmt = json.loads((run / "sft" / "format.json").read_text())
    assert fmt

    out = tmp_path / "hub"
    published = invoke("publish", "--run", str(run), "--repo", "me/demo", "--dry-run", "--out", str(out))
    card = (out / "README.md").read_text()
    assert card.startswith("---") and "config_name: plan" in card
    shards = sorted(out.glob("data/*/*.parquet"))
    assert sorted(p.parent.name for p in shards)

    # nothing of the host: search results carry URLs, so no kept trajectory, SFT sample or
    # published shard holds the checkout's or this test's (the world's, the run's) paths
    scanned = json.loads(published.strip().splitlines()[-1])["scanned"]
    assert scanned["matches"] == 0 and scanned["rows"] == len(kept)
    searched = [s for t in kept for s in t.steps if s.tool_name == "image_search" and s.observation_text]
    assert searched and all(
        "Image: http://world.trajforge.local/images/" in s.observation_text for s in searched
    )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(run / "sft" / "processor"))
    texts = {
        "kept": [t.model_dump_json() for t in kept],
        "sft": tokenizer.batch_decode(samples.column("input_ids").to_pylist()),
        "hub": [
            json.dumps(r["messages"]) + str(r["question"])
            for p in shards
            for r in pq.read_table(p).to_pylist()
        ],
    }
    checkout = str(Path(__file__).resolve().parents[2])
    for where, items in texts.items():
        assert items, where
        for text in items:
            assert checkout not in text and str(tmp_path) not in text, where
