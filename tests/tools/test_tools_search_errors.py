"""image_search errors reach the teacher without host paths (issue 26): a run folder, a cache or
a publish folder named in an error would end up in trajectories and shards."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PIL import Image

from stages.tools.base import ToolContext, public_error
from stages.tools.cache import ToolCache
from stages.tools.search.search_tools import ImageSearchTool, SerperClient, SerperLens


def test_image_search_errors_do_not_name_run_folder_paths(tmp_path):
    run_folder = tmp_path / "runs" / "secret-project" / "images"
    run_folder.mkdir(parents=True)
    ctx = ToolContext(trajectory_id="t", workdir=tmp_path)
    kept = run_folder / "ab12.png"
    Image.new("RGB", (8, 8)).save(kept)
    ctx.register_image(kept, "image_0.png")
    ctx.register_image(run_folder / "gone.png", "image_1.png")  # deleted meanwhile: FileNotFoundError
    lens = SerperLens(SerperClient("NO_SUCH_KEY_ENV"), None, tmp_path / "runs" / "secret-project" / "publish")
    obs = asyncio.run(
        ImageSearchTool(lens, ToolCache(None)).run({"image_paths": ["image_0.png", "image_1.png"]}, ctx)
    )
    assert obs.error
    assert "secret-project" not in obs.text and "secret-project" not in obs.error, obs.text
    assert str(tmp_path) not in obs.text + obs.error
    assert "public_image_base_url" in obs.error and "image_1.png" in obs.text


def test_public_error_keeps_urls_and_names():
    exc = OSError(2, "No such file", "/srv/runs/r1/images/x.png")
    assert public_error(exc, Path("/srv/runs/r1/images/x.png"), "image_3.png").endswith("'image_3.png'")
    text = public_error(RuntimeError("see https://example.org/a/b and /srv/cache/c.sqlite or image/png"))
    assert (
        "https://example.org/a/b" in text and "<path>" in text and "/srv" not in text and "image/png" in text
    )
