"""Dataset card: the YAML parses with huggingface_hub, and report shapes render as pass rates."""

from __future__ import annotations

from pathlib import Path

import pytest
from publish_helpers import make_run

from stages.publish.card import pass_rates, size_category
from stages.publish.hub import build_folder


def test_card_parses_with_huggingface_hub_and_names_every_config(tmp_path: Path) -> None:
    from huggingface_hub import DatasetCard

    store = make_run(tmp_path / "run", deep=2, gen=0, plans=1)
    build_folder(store, tmp_path / "hub", repo="me/small")
    card = DatasetCard.load(tmp_path / "hub" / "README.md")
    data = card.data.to_dict()
    assert [c["config_name"] for c in data["configs"]] == ["deepresearch", "plan"]  # no empty subset
    assert data["configs"][0]["default"] is True
    assert data["dataset_info"][1]["splits"][0]["num_examples"] == 1
    assert "| `deepresearch` | 2 |" in card.text and "general" not in [
        c["config_name"] for c in data["configs"]
    ]


def test_card_without_filter_report_says_so(tmp_path: Path) -> None:
    store = make_run(tmp_path / "run", deep=1, gen=1, plans=0, report=False)
    build_folder(store, tmp_path / "hub", repo="me/x")
    text = (tmp_path / "hub" / "README.md").read_text()
    assert "no filter pass rates" in text


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ({"pass_rates": {"format": 0.9, "outcome": 0.5}}, [("format", 0.9), ("outcome", 0.5)]),
        (
            {"checks": {"format": {"pass_rate": 0.8, "by_category": {}}, "dedup": {"kept": 3}}},
            [("format", 0.8)],
        ),
        ({"pass_rates": {"judge": {"overall": 0.7, "search": 0.6}}}, [("judge", 0.7)]),
        ({"format_pass_rate": 0.4, "kept": 10, "enabled": True}, [("format_pass_rate", 0.4)]),
        ({}, []),
    ],
)
def test_pass_rates_reads_the_usual_report_shapes(section: dict, expected: list) -> None:
    assert pass_rates(section) == expected


def test_size_category_boundaries() -> None:
    assert [size_category(n) for n in (0, 999, 1000, 29_999, 100_000)] == [
        "n<1K",
        "n<1K",
        "1K<n<10K",
        "10K<n<100K",
        "100K<n<1M",
    ]
