"""The viewer's pages over real HTTP and as a written site, without a browser."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.schema import Trajectory
from pipeline.store import RunStore
from pipeline.view.data import RunData
from pipeline.view.listing import CHUNK_ROWS
from pipeline.view.site import Site
from tests.foundation.test_foundation_import import write_jsonl


def test_index_matches_the_run(view_run: Path) -> None:
    store = RunStore(view_run)
    raw = store.read_records("raw", Trajectory)
    kept = {t.trajectory_id for t in store.read_records("kept", Trajectory)}
    verdicts = {r["trajectory_id"]: r for r in pq.read_table(view_run / "verdicts").to_pylist()}
    data = RunData(view_run)
    by_id = {e.id: e for e in data.entries}
    assert {t.trajectory_id for t in raw} | kept == set(by_id)
    for t in raw:
        e = by_id[t.trajectory_id]
        assert e.turns == len(t.steps) and e.tool_calls == len(t.tool_calls)
        assert e.kept == (t.trajectory_id in kept) == verdicts[t.trajectory_id]["keep"]
        if not e.kept:
            assert e.dropped_by == verdicts[t.trajectory_id]["reasons"][0].split(":")[0]
    funnel = dict(data.funnel())
    assert funnel["rollouts"] == len(raw)
    assert funnel["answered"] == sum(t.status == "answered" for t in raw)
    assert funnel["kept trajectories"] == len(kept & {t.trajectory_id for t in raw})
    assert funnel["plan samples (derived)"] == len(kept - {t.trajectory_id for t in raw})
    assert funnel["tasks"] == len({t.task_id for t in raw})


def test_served_pages(served: tuple[Site, str]) -> None:
    site, url = served
    data = site.data
    dropped = next(e for e in data.entries if any(r.startswith("answer:") for r in e.reasons))
    with httpx.Client(base_url=url) as client:
        overview = client.get("/")
        assert overview.status_code == 200 and "Funnel" in overview.text and "<svg" in overview.text
        assert 'src="http' not in overview.text and "cdn" not in overview.text.lower()
        listing = client.get("/list.html")
        assert listing.status_code == 200 and '"chunks": 1' in listing.text
        chunk = client.get("/data/list-0000.js").text
        rows = json.loads(re.match(r"tfListChunk\(0,(.*)\);\s*$", chunk, re.S).group(1))
        assert len(rows) == len(data.entries) <= CHUNK_ROWS
        page = client.get(f"/t/{dropped.id}.html")
        assert page.status_code == 200
        assert "wrong answer" in page.text and 'class="hl"' in page.text
        refs = re.findall(r'src="\.\./(img/[0-9a-f]{64}\.\w+)"', page.text)
        assert refs and all(client.get("/" + r).status_code == 200 for r in refs)
        assert client.get(f"/task/{dropped.task_id}.html").text.count("rollout ") >= 2
        assert client.get("/t/nope.html").status_code == 404
        assert client.get("/img/../../config.yaml").status_code == 404
        assert client.get("/static/../site.py").status_code == 404


def test_written_site_is_self_contained(view_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = CliRunner().invoke(app, ["view", "--run", str(view_run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output.strip().splitlines()[-1])
    data = RunData(view_run)
    assert stats["trajectories"] == len(data.entries)
    assert (out / "index.html").is_file() and (out / "data" / "list-0000.js").is_file()
    for e in data.entries:
        html = (out / "t" / f"{e.id}.html").read_text()
        for ref in re.findall(r'src="\.\./(img/[^"]+)"', html):
            assert (out / ref).is_file(), ref
        assert "http://" not in re.sub(r">[^<]*<", "><", html)  # no URL in any tag: nothing fetched


def test_imported_r1v4_run(tmp_path: Path) -> None:
    run = tmp_path / "imported"
    result = CliRunner().invoke(app, ["import", "r1v4", str(write_jsonl(tmp_path)), "--run", str(run)])
    assert result.exit_code == 0, result.output
    site = Site(RunData(run))
    entries = site.data.entries
    assert entries and all(e.kept is None and e.outcome == "unfiltered" for e in entries)
    page = site.page(f"t/{next(e for e in entries if e.tool_calls).id}.html")
    assert (
        page is not None
        and b'class="hl"' in page.body
        and b"crop" in page.body
        and b"Zoom into the sign" in page.body
    )
    assert site.page("index.html") is not None and site.page("list.html") is not None


def test_not_a_run(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["view", "--run", str(tmp_path), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "no raw/ or kept/ shards" in result.output
    result = CliRunner().invoke(app, ["view", "--run", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "not a run folder" in result.output


@pytest.mark.parametrize("path", ["t/../../etc/passwd.html", "data/list-9999.js", "static/nope.css"])
def test_unknown_paths(served: tuple[Site, str], path: str) -> None:
    assert served[0].page(path) is None
