"""LLaMA-Factory and ms-swift exports: each follows its format's rules and round-trips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from publish_helpers import deepresearch, make_run
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.schema import Trajectory
from pipeline.store import RunStore
from stages.publish.trainer_exports import (
    conversation,
    export_run,
    flat_messages,
    read_llamafactory,
    read_ms_swift,
    unflat_messages,
)


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return make_run(tmp_path / "run")


def _kept(store: RunStore) -> dict[str, Trajectory]:
    return {t.trajectory_id: t for t in store.read_records("kept", Trajectory)}


def _check_images(sample, store: RunStore) -> None:
    for ref, data in sample.images.items():
        assert data == store.images.read_bytes(ref)


def test_llamafactory_follows_sharegpt_rules_and_round_trips(store: RunStore, tmp_path: Path) -> None:
    import datasets

    out = tmp_path / "lf"
    result = CliRunner().invoke(app, ["export", "llamafactory", "--run", str(store.root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "10 conversations" in result.output

    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"trajforge_deepresearch", "trajforge_general", "trajforge_plan"}
    for entry in info.values():
        # LLaMA-Factory's sharegpt rules: system first (optional), then user/assistant alternating,
        # ending on assistant; as many <image> placeholders as images; paths relative to dataset_dir.
        tags = entry["tags"]
        rows = datasets.load_dataset("json", data_files=str(out / entry["file_name"]), split="train")
        for row in rows:
            turns = row[entry["columns"]["messages"]]
            assert turns[0][tags["role_tag"]] == tags["system_tag"]
            rest = [t[tags["role_tag"]] for t in turns[1:]]
            assert len(rest) % 2 == 0
            assert rest == [tags["user_tag"], tags["assistant_tag"]] * (len(rest) // 2)
            images = row[entry["columns"]["images"]]
            assert sum(t[tags["content_tag"]].count("<image>") for t in turns) == len(images)
            assert all(not Path(p).is_absolute() and (out / p).is_file() for p in images)

    kept = _kept(store)
    read = read_llamafactory(out)
    assert sum(len(v) for v in read.values()) == len(kept)
    for samples in read.values():
        for sample in samples:
            original = conversation(kept[sample.trajectory_id], observation_role="user")
            assert sample.messages == original  # same turns, same images in the same places
            _check_images(sample, store)


def test_ms_swift_trains_the_same_r1v4_text_and_round_trips(store: RunStore, tmp_path: Path) -> None:
    out = tmp_path / "swift"
    result = CliRunner().invoke(app, ["export", "ms-swift", "--run", str(store.root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    export_run(store, tmp_path / "lf", "llamafactory")
    kept = _kept(store)
    lf_rows = {}
    for path in (tmp_path / "lf").glob("trajforge_*.jsonl"):
        lf_rows.update({r["trajectory_id"]: r for r in map(json.loads, path.read_text().splitlines())})

    for subset in ("deepresearch", "general", "plan"):
        for line in (out / f"{subset}.jsonl").read_text().splitlines():
            row = json.loads(line)
            roles = [m["role"] for m in row["messages"]]
            # No tool roles: nothing for an agent template to re-render; the R1V4 text is the text.
            assert roles[:2] == ["system", "user"] and roles[-1] == "assistant"
            assert set(roles) == {"system", "user", "assistant"}
            assert row["messages"] == lf_rows[row["trajectory_id"]]["messages"]
            trajectory = kept[row["trajectory_id"]]
            assistant = [m["content"] for m in row["messages"] if m["role"] == "assistant"]
            calls = [text for text in assistant if text.startswith("<think>") and "<tool_call>{" in text]
            assert len(calls) == len(trajectory.tool_calls) == len(assistant) - 1
            observations = [m for m in row["messages"] if m["content"].startswith("<observation>")]
            assert len(observations) == len(trajectory.tool_calls)
            assert all(m["role"] == "user" for m in observations)
            placeholders = sum(m["content"].count("<image>") for m in row["messages"])
            assert placeholders == len(row["images"])
            assert all(Path(p).is_absolute() and Path(p).is_file() for p in row["images"])

    read = read_ms_swift(out)
    assert sum(len(v) for v in read.values()) == len(kept)
    for samples in read.values():
        for sample in samples:
            original = conversation(kept[sample.trajectory_id], observation_role="user")
            assert sample.messages == original
            _check_images(sample, store)


def test_exports_name_the_settings_that_reproduce_trajforge_text(tmp_path: Path) -> None:
    from PIL import Image

    from stages.sft.formatter import Formatter, Sample, store_image_size
    from stages.sft.processor import build_tiny_processor, save_processor

    store = make_run(tmp_path / "run", deep=2, gen=1, plans=0)
    tiny = build_tiny_processor(min_pixels=1024, max_pixels=16384)
    save_processor(tiny, store.root / "sft" / "processor")
    fmt = Formatter(tiny, max_len=1 << 20, image_size=store_image_size(store))
    longest = max(
        s.num_tokens for t in store.read_records("kept", Trajectory) if isinstance(s := fmt(t), Sample)
    )
    largest = max(Image.open(p).size[0] * Image.open(p).size[1] for p in store.images.root.rglob("*.*"))

    for fmt_name in ("llamafactory", "ms-swift"):
        out = tmp_path / fmt_name
        result = CliRunner().invoke(app, ["export", fmt_name, "--run", str(store.root), "--out", str(out)])
        assert result.exit_code == 0, result.output
        readme = (out / "README.md").read_text()
        if fmt_name == "llamafactory":
            info = json.loads((out / "dataset_info.json").read_text())
            settings = info["trajforge_deepresearch"]["trajforge_train_settings"]
            assert settings["template"] == "qwen3_vl_nothink" and settings["mask_history"] is False
            assert settings["cutoff_len"] >= longest and settings["image_max_pixels"] >= largest
            assert settings["dataset"].split(",") == sorted(info)
            assert 'template: "qwen3_vl_nothink"' in (out / "llamafactory_data_args.yaml").read_text()
            assert "qwen3_vl_nothink" in readme
        else:
            settings = json.loads((out / "ms_swift_args.json").read_text())
            assert settings["args"]["template"] == "qwen3_vl" and settings["args"]["agent_template"] is None
            assert settings["args"]["max_length"] >= longest
            assert settings["env"]["MAX_PIXELS"] == "16384" and settings["env"]["IMAGE_MAX_TOKEN_NUM"] == "16"
            assert "MAX_PIXELS=16384" in readme and "--agent_template" not in readme.split("```")[1]
            rows = [
                json.loads(line)
                for f in settings["args"]["dataset"]
                for line in Path(f).read_text().splitlines()
            ]
            # the exact budget per row: the env only carries whole 32x32 px image tokens
            assert rows and all(
                r["chat_template_kwargs"] == {"min_pixels": 1024, "max_pixels": 16384} for r in rows
            )


def test_literal_image_marker_in_text_is_neutralised(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "run")
    trajectory = deepresearch(store, 1)
    trajectory.question = "Is <image> a tag? Look at the picture."
    flat, refs = flat_messages(conversation(trajectory))
    assert sum(m["content"].count("<image>") for m in flat) == len(refs)
    assert "&lt;image&gt; a tag" in flat[1]["content"]
    assert unflat_messages(flat, refs)[2:] == conversation(trajectory)[2:]


def test_missing_image_skips_that_conversation_with_a_reason(tmp_path: Path) -> None:
    store = make_run(tmp_path / "run", deep=2, gen=1, plans=0)
    victim = next(t for t in store.read_records("kept", Trajectory) if t.mode == "general")
    store.images.path(victim.images[0]).unlink()
    report = export_run(store, tmp_path / "out", "llamafactory")
    assert report.total == 2 and len(report.skipped) == 1
    assert victim.trajectory_id in report.skipped[0] and "missing" in report.skipped[0]


def test_unknown_format_is_refused(store: RunStore, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["export", "alpaca", "--run", str(store.root), "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "llamafactory" in result.output
