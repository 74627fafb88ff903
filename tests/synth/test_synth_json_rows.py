"""The JSON seed reader on the shapes that hurt it (issue 26): one pretty-printed array of 10K
rows (re-parsed per line before: quadratic), items cut at every chunk boundary, and a broken
line that used to swallow the good line after it."""

from __future__ import annotations

import json
import time

import pytest

import stages.readers.json_lines as json_lines
from stages.readers.json_lines import json_records


def _rows(count: int) -> list[dict]:
    return [
        {
            "id": i,
            "question": f"What is shown in picture {i}?",
            "answer": [f"thing {i}", i * 1.5],
            "ok": i % 2 == 0,
        }
        for i in range(count)
    ]


@pytest.mark.timeout(60)
def test_a_pretty_printed_array_of_10k_rows_streams_in_linear_time(tmp_path):
    rows = _rows(10_000)
    path = tmp_path / "seeds.json"
    path.write_text(json.dumps(rows, indent=2))  # ~100K lines
    started = time.perf_counter()
    read = list(json_records(path))
    elapsed = time.perf_counter() - started
    assert [value for _, value, _ in read] == rows
    assert read[7][0] == "line 1 item 7" and not any(error for _, _, error in read)
    assert elapsed < 3.0, f"{elapsed:.1f} s"  # ~0.2 s; the line-by-line re-parse took 30+ s


@pytest.mark.parametrize("chunk", [7, 64, 4096])
def test_items_cut_at_chunk_boundaries_read_the_same(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(json_lines, "_CHUNK", chunk)
    rows = [*_rows(60), 123456789, -0.5e10, True, None, "caf\u00e9 \u2603", [], {}]
    path = tmp_path / "seeds.json"
    path.write_text("\n\n" + json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    read = list(json_records(path))
    assert [value for _, value, _ in read] == rows
    assert read[0][0] == "line 3 item 0"


def test_a_broken_array_item_is_reported_once(tmp_path):
    path = tmp_path / "seeds.json"
    path.write_text('[{"a": 1},\n {"b": oops},\n {"c": 3}]')
    read = list(json_records(path))
    assert read[0][1] == {"a": 1}
    assert read[1][1] is None and "not valid JSON" in read[1][2] and len(read) == 2


def test_a_broken_line_costs_that_line_only(tmp_path):
    path = tmp_path / "seeds.jsonl"
    path.write_text('{"id": 1}\n{"id": 2, "question": "cut off\n{"id": 3}\n{\n  "id": 4\n}\n')
    read = list(json_records(path))
    assert [value for _, value, _ in read if value is not None] == [{"id": 1}, {"id": 3}, {"id": 4}]
    errors = [(where, error) for where, value, error in read if value is None]
    assert len(errors) == 1 and errors[0][0] == "line 2", errors
    assert [where for where, value, _ in read if value is not None] == ["line 1", "line 3", "line 4"]
