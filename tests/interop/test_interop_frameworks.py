"""The exports and the student load where users train: the real LLaMA-Factory and ms-swift
preprocess trajforge's exports with their own dataset and template code, under the settings the
export wrote, and train exactly trajforge's text.

Per framework: every sample loads, image placeholders equal images, labels fall only on assistant
turns (all of them), and each sample's tokens decode to trajforge's own SFT text for it.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.schema import Trajectory
from stages.sft.formatter import IGNORE, Formatter, Sample, store_image_size
from stages.sft.processor import build_tiny_processor, reload_processor, save_processor
from stages.sft.synthetic import write_kept_set

ROOT = Path(__file__).resolve().parents[2]

VENVS = Path(os.environ.get("INTEROP_DIR", ROOT / ".cache" / "interop"))
HERE = Path(__file__).parent


def _python(name: str) -> Path:
    venv = VENVS / name
    if (venv / ".failed").exists():
        pytest.skip(f"{name} could not be installed here: {(venv / '.failed').read_text()}")
    if not (venv / ".installed").exists():
        pytest.skip(f"{name} venv missing: run tests/interop/setup_envs.sh (make test-interop does)")
    return venv / "bin" / "python"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A small kept set, its exported student (tiny model + standard processor) and both exports."""
    from stages.sft.model import build_model, tiny_config
    from stages.sft.student_export import export

    base = tmp_path_factory.mktemp("interop")
    # Images of at least 28 px a side: LLaMA-Factory stretches smaller ones to 28 px before the
    # processor (Qwen2VLPlugin), which changes their token count; the export README says so.
    # 96x32 px scenes under a 3136 px minimum (the 30B-A3B config's): 3072 px is just under it, so
    # the processor scales them up to 8 image tokens, where a budget rounded to whole tokens (ms-swift's
    # environment variables) would leave them at 3; the crops (32x32 px) scale up to 4 tokens.
    store = write_kept_set(base / "run", 12, image_size=(96, 32))
    tiny = build_tiny_processor(min_pixels=3136, max_pixels=16384)
    processor_dir = save_processor(tiny, store.root / "sft" / "processor")
    student = export(
        build_model(tiny_config(tiny.tokenizer)), store.root / "sft" / "export", processor_dir=processor_dir
    )
    exports = {}
    for fmt in ("llamafactory", "ms-swift"):
        out = base / fmt
        result = CliRunner().invoke(app, ["export", fmt, "--run", str(store.root), "--out", str(out)])
        assert result.exit_code == 0, result.output
        exports[fmt] = out
    processor = reload_processor(processor_dir)
    fmt = Formatter(processor, max_len=1 << 20, image_size=store_image_size(store))
    samples = {}
    for trajectory in store.read_records("kept", Trajectory):
        sample = fmt(trajectory)
        assert isinstance(sample, Sample)
        samples[trajectory.trajectory_id] = sample
    return {"base": base, "student": student, "exports": exports, "samples": samples, "fmt": fmt}


def _run_probe(framework: str, args: list[str], env: dict[str, str] | None = None) -> dict:
    python = _python(framework)
    done = subprocess.run(
        [str(python), str(HERE / f"probe_{framework.replace('-', '_')}.py"), *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": "", **(env or {})},
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith("PROBE-RESULT ")]
    assert done.returncode == 0 and lines, done.stdout[-4000:] + done.stderr[-6000:]
    return json.loads(lines[-1][len("PROBE-RESULT ") :])


def _exported_ids(out: Path, file_name: str) -> list[str]:
    return [json.loads(line)["trajectory_id"] for line in (out / file_name).read_text().splitlines()]


def _assistant_turns(fmt: Formatter, ids: list[int]) -> tuple[set[int], list[int]]:
    """Positions inside assistant turns of these ids (content through `<|im_end|>`, plus the newline
    after it, which templates that write `<|im_end|>\\n` as one assistant slot label) and the
    position of each turn's `<|im_end|>`. Computed from the framework's own tokens, so a token shift
    elsewhere (say, an image with another token count) cannot hide or invent a labelled turn."""
    ours = fmt.assistant_labels(ids)
    allowed = {i for i, x in enumerate(ours) if x != IGNORE}
    ends = [i for i in sorted(allowed) if ids[i] == fmt.im_end]
    newline = fmt.tokenizer.encode("\n", add_special_tokens=False)
    for i in ends:
        if ids[i + 1 : i + 1 + len(newline)] == newline:
            allowed.update(range(i + 1, i + 1 + len(newline)))
    return allowed, ends


def _trained_text(fmt: Formatter, ids: list[int], labels: list[int]) -> str:
    """The labelled tokens decoded turn by turn (`<|im_end|>` closes a turn), less the newline that
    some templates label right after `<|im_end|>` (the template's fixed framing, not trajforge's text)."""
    newline = fmt.tokenizer.encode("\n", add_special_tokens=False)
    turns, current = [], []
    for i, (token, label) in enumerate(zip(ids, labels, strict=True)):
        after_end = i > 0 and ids[i - 1] == fmt.im_end and labels[i - 1] != IGNORE
        if label == IGNORE or (after_end and [token] == newline):
            continue
        current.append(token)
        if token == fmt.im_end:
            turns.append(current)
            current = []
    if current:
        turns.append(current)
    return "\x00".join(fmt.tokenizer.decode(turn) for turn in turns)


def _first_diff(theirs: str, ours: str) -> str:
    at = next((i for i, (a, b) in enumerate(zip(theirs, ours, strict=False)) if a != b), None)
    at = min(len(theirs), len(ours)) if at is None else at
    return (
        f"at char {at}: theirs {theirs[max(0, at - 60) : at + 60]!r} ours {ours[max(0, at - 60) : at + 60]!r}"
    )


def _check(world, result: dict, ids_by_dataset: dict[str, list[str]]) -> dict:
    fmt, samples = world["fmt"], world["samples"]
    tokenizer = fmt.tokenizer
    vision_start = tokenizer.convert_tokens_to_ids("<|vision_start|>")
    figures = {"samples": 0, "loaded": 0, "placeholders_equal_images": 0, "labels_on_assistant_only": 0}
    figures |= {
        "assistant_turns": 0,
        "assistant_turns_labelled": 0,
        "text_equal": 0,
        "trained_text_equal": 0,
        "errors": [],
        "text_diffs": [],
    }
    for name, rows in result["datasets"].items():
        ids_in_file = ids_by_dataset[name]
        figures["samples"] += len(ids_in_file)
        assert len(rows) == len(ids_in_file), f"{name}: {len(rows)} rows loaded of {len(ids_in_file)}"
        for trajectory_id, row in zip(ids_in_file, rows, strict=True):
            if "error" in row:
                figures["errors"].append(f"{trajectory_id}: {row['error']}")
                continue
            figures["loaded"] += 1
            ids, labels = row["input_ids"], row["labels"]
            figures["placeholders_equal_images"] += ids.count(vision_start) == row["images"]
            allowed, ends = _assistant_turns(fmt, ids)
            labelled = {i for i, x in enumerate(labels) if x != IGNORE}
            figures["labels_on_assistant_only"] += labelled <= allowed
            figures["assistant_turns"] += len(ends)
            figures["assistant_turns_labelled"] += sum(1 for i in ends if i in labelled)
            ours = samples[trajectory_id]
            theirs_text, ours_text = tokenizer.decode(ids), tokenizer.decode(ours.input_ids)
            if theirs_text == ours_text:
                figures["text_equal"] += 1
            else:
                figures["text_diffs"].append(f"{trajectory_id} text {_first_diff(theirs_text, ours_text)}")
            theirs_trained = _trained_text(fmt, ids, labels)
            ours_trained = _trained_text(fmt, ours.input_ids, ours.labels)
            if theirs_trained == ours_trained and ours_trained:
                figures["trained_text_equal"] += 1
            else:
                figures["text_diffs"].append(
                    f"{trajectory_id} trained text {_first_diff(theirs_trained, ours_trained)}"
                )
    return figures


def _report(framework: str, result: dict, figures: dict) -> None:
    line = {"framework": framework, "version": result["version"], "processor": result["processor_class"]}
    print(
        "INTEROP "
        + json.dumps({**line, **{k: v for k, v in figures.items() if k not in ("errors", "text_diffs")}})
    )
    (Path(os.environ.get("INTEROP_REPORT_DIR", VENVS)) / f"{framework}.figures.json").write_text(
        json.dumps({**line, **figures}, indent=2)
    )


def _assert_all(figures: dict) -> None:
    assert not figures["errors"], figures["errors"][:3]
    n = figures["samples"]
    assert n > 0 and figures["loaded"] == n
    assert figures["placeholders_equal_images"] == n
    assert figures["labels_on_assistant_only"] == n
    assert figures["text_equal"] == n, figures["text_diffs"][:3]
    assert figures["trained_text_equal"] == n, figures["text_diffs"][:3]
    assert figures["assistant_turns_labelled"] == figures["assistant_turns"] > 0


def test_llamafactory_trains_trajforge_text(world):
    out = world["exports"]["llamafactory"]
    result = _run_probe("llamafactory", [str(world["student"]), str(out), str(world["base"] / "lf-work")])
    assert result["processor_class"] == "Qwen3VLProcessor"
    info = json.loads((out / "dataset_info.json").read_text())
    ids = {name: _exported_ids(out, entry["file_name"]) for name, entry in info.items()}
    figures = _check(world, result, ids)
    _report("llamafactory", result, figures)
    _assert_all(figures)


def test_ms_swift_trains_trajforge_text(world):
    out = world["exports"]["ms-swift"]
    settings = json.loads((out / "ms_swift_args.json").read_text())
    result = _run_probe("ms-swift", [str(world["student"]), str(out)], env=settings["env"])
    assert result["processor_class"] == "Qwen3VLProcessor"
    ids = {Path(p).stem: _exported_ids(out, Path(p).name) for p in settings["args"]["dataset"]}
    figures = _check(world, result, ids)
    _report("ms-swift", result, figures)
    _assert_all(figures)


@pytest.mark.parametrize("framework", ["llamafactory", "ms-swift"])
def test_auto_processor_tests_pass_with_the_frameworks_transformers(framework):
    """The normal suite's AutoProcessor tests, run where torchvision imports (each framework's venv)."""
    python = _python(framework)
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            "-v",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "-W",
            "ignore::pytest.PytestConfigWarning",  # the venv has no pytest-timeout: `timeout` is unknown
            "tests/sft/test_sft_processor.py",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    assert "skipped" not in done.stdout.splitlines()[-1]
    passed = [
        line for line in done.stdout.splitlines() if "::test_auto_processor" in line and "PASSED" in line
    ]
    assert len(passed) == 3, done.stdout[-3000:]  # both folders through AutoProcessor, and its chat template
