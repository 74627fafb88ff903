"""`trajforge tools ...` prints JSON observations (code sandbox, local search, visit)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from stages.tools.code.isolation import bwrap_works

runner = CliRunner()


@pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot create namespaces here")
def test_code_command_writes_images_and_prints_json(tmp_path):
    pixels = np.arange(60 * 80 * 3, dtype=np.uint8).reshape(60, 80, 3)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.new("L", (10, 10), 200).save(tmp_path / "b.png")
    code = tmp_path / "c.py"
    code.write_text(
        "from PIL import Image\n"
        "a = Image.open(image_paths[0])\n"
        "a.rotate(180).save(OUTPUT_DIR + '/r.png')\n"
        "print(len(image_paths), Image.open(image_paths[1]).getpixel((0, 0)))\n"
    )
    result = runner.invoke(
        app,
        [
            "tools",
            "code",
            "--image",
            str(tmp_path / "a.png"),
            "--image",
            str(tmp_path / "b.png"),
            "--code-file",
            str(code),
            "--out",
            str(tmp_path / "out"),
            "--set",
            "tools.code.workers=1",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    assert payload["error"] is None
    assert payload["text"].splitlines() == ["2 200", "Saved image_2.png: <image>"]
    assert payload["images"] == [str(tmp_path / "out" / "image_2.png")]
    np.testing.assert_array_equal(np.asarray(Image.open(payload["images"][0])), pixels[::-1, ::-1])
    assert payload["timings"]["exec_s"] > 0


def test_search_text_and_visit_commands(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "pages.jsonl").write_text(
        json.dumps(
            {
                "url": "http://world.trajforge.local/wiki/zorbul",
                "title": "Zorbul",
                "text": "Zorbul is a moon.",
            }
        )
        + "\n"
    )
    (corpus / "images.jsonl").write_text("")
    sets = ["--set", f"tools.search.corpus_dir={corpus}", "--set", f"run.root={tmp_path}"]
    result = runner.invoke(app, ["tools", "search", "text", "zorbul moon", *sets])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    assert payload["error"] is None and "1. Zorbul" in payload["text"]
    result = runner.invoke(app, ["tools", "visit", "http://169.254.169.254/", *sets])
    assert result.exit_code == 1
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    assert "blocked" in payload["error"]


@pytest.mark.parametrize("command", [["tools", "code"], ["tools", "search", "image"]])
def test_image_options_take_only_real_image_files(tmp_path, command):
    """`--image /etc/passwd` once staged the file for the sandbox (issue 26)."""
    code = tmp_path / "c.py"
    code.write_text("print(open(image_paths[0]).read()[:40])\n")
    for path in ("/etc/passwd", "/dev/zero"):
        if command[1] == "code":
            argv = [*command, "--image", path, "--code-file", str(code), "--out", str(tmp_path / "out")]
        else:
            argv = [*command, path]
        result = runner.invoke(app, [*argv, "--set", "tools.code.workers=1"])
        assert result.exit_code != 0
        assert "--image takes image files" in result.output and "root:" not in result.output
