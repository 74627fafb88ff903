"""What a published dataset folder is: its split, the `datasets` features of a row, and the
report of a build. Shared by the builder (`stages.publish.hub`) and the card (`stages.publish.card`),
so neither imports the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.schema import Trajectory

SPLIT = "train"


def features():
    """The `datasets` features of a Hub row (imported lazily: datasets is slow to import)."""
    from datasets import Features, Image, List, Value

    string = Value("string")
    return Features(
        {
            "messages": List({"role": string, "content": string}),
            "images": List(Image()),
            "trajectory_id": string,
            "task_id": string,
            "source": string,
            "category": string,
            "mode": string,
            "teacher": string,
            "prompt_version": string,
            "question": string,
            "gold_answer": string,
            "final_answer": string,
            "plan": string,
            "num_turns": Value("int32"),
            "num_tool_calls": Value("int32"),
            "tools": List(string),
            "num_images": Value("int32"),
        }
    )


@dataclass
class SubsetBuild:
    """What was written for one subset."""

    subset: str
    records: list[Trajectory] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    num_bytes: int = 0  # estimated uncompressed size (the card's dataset_size)
    download_bytes: int = 0  # parquet bytes on disk


@dataclass
class BuildReport:
    """A built dataset folder: per-subset shards, the card, and every trajectory left out."""

    folder: Path
    subsets: dict[str, SubsetBuild] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    card: Path | None = None

    @property
    def rows(self) -> int:
        return sum(len(s.records) for s in self.subsets.values())

    @property
    def files(self) -> list[Path]:
        return [f for s in self.subsets.values() for f in s.files]
