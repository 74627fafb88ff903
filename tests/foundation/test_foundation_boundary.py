"""The core never knows the offline world: it talks to it only through the OpenAI protocol, web
pages and a search corpus, like any outside world. Config, seeds and the synth and world commands
are where a world is chosen and may name it; nothing below may."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.schema import ARROW_SCHEMAS, Trajectory

ROOT = Path(__file__).resolve().parents[2]
CORE = [
    "pipeline/schema.py",
    "pipeline/chat.py",
    "pipeline/format.py",
    "stages/publish/trainer_exports.py",
    "stages/synth/execute.py",
    "stages/synth/plan.py",
    "stages/sft",
    "filters",
    "prompts",
]
WORLD_NAMES = ("from world", "import world", "injected_defects")  # imports: test_foundation_dependencies


def _files() -> list[Path]:
    out: list[Path] = []
    for entry in CORE:
        path = ROOT / entry
        out += sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [p for p in out if "__pycache__" not in p.parts]


def test_core_files_never_name_the_world() -> None:
    offenders = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in _files()
        for name in WORLD_NAMES
        if name in p.read_text(encoding="utf-8", errors="replace")
    ]
    assert not offenders, offenders


@pytest.mark.slow  # imports torch and transformers in a fresh interpreter
def test_importing_the_core_loads_no_world_module() -> None:
    modules = sorted(
        {
            str(p.relative_to(ROOT).with_suffix("")).replace("/", ".").removesuffix(".__init__")
            for p in _files()
            if p.suffix == ".py"
        }
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in sys.modules if m == 'world' or m.startswith('world.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    assert len(modules) > 20 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_trajectory_holds_no_world_truth() -> None:
    fields = set(Trajectory.model_fields) | set(ARROW_SCHEMAS[Trajectory].names)
    assert not {f for f in fields if "defect" in f}
