"""The leak guard reads the text images carry (PNG text chunks, comments), not only text
columns (issue 26): a run-folder path or a key written into a PNG chunk is found."""

from __future__ import annotations

import io

from PIL import Image, PngImagePlugin

from pipeline.leaks import LeakGuard, image_text_fields


def _png(**chunks: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_itxt(key, value, zip=True) if key.startswith("z") else info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_text_chunks_of_an_image_are_scanned(tmp_path, monkeypatch):
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    monkeypatch.setenv("TRAJFORGE_TEST_KEY", "tf-secret-value-123456")
    guard = LeakGuard.for_run(run_dir)
    data = _png(Comment=f"saved from {run_dir}/images/x.png", zNote="plain words")
    matches = guard.scan_image("traj-1", data, "images[0]")
    assert [m.label for m in matches] == ["run folder"]
    assert matches[0].field == "images[0][Comment]"
    assert guard.scan_image("traj-1", _png(zNote="a crop of the harbour")) == []
    assert guard.scan_image("traj-1", b"not an image") == []


def test_compressed_and_international_chunks_are_read():
    fields = dict(image_text_fields(_png(Title="t", zBlob="/somewhere/deep/inside")))
    assert fields == {"Title": "t", "zBlob": "/somewhere/deep/inside"}


def test_publish_refuses_a_kept_image_whose_text_chunk_holds_the_run_folder(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from pipeline.schema import Trajectory
    from tests.publish.publish_helpers import deepresearch, make_run

    run, out = tmp_path / "run", tmp_path / "hub"
    store = make_run(run, deep=1, gen=0, plans=0)
    trajectory = deepresearch(store, 7)
    chunk = _png(Comment=f"mounted at {run.resolve()}/cache/x")
    trajectory.steps[0].observation_images = [store.images.put_bytes(chunk)]
    store.write_records("kept", [trajectory], Trajectory)
    argv = ["publish", "--run", str(run), "--repo", "me/demo", "--dry-run", "--out", str(out)]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code != 0
    assert (
        "publish refused" in result.output and "[Comment]" in result.output and "run folder" in result.output
    )
    assert not list(out.glob("data/*/*.parquet")), "nothing is written before the scan passes"
