"""Code sandbox against the round-2 red team (issue 26): a file name that broke a worker for the
rest of the run, one trajectory's session killing another's, new namespaces from inside, and
host paths in /proc. Real bubblewrap workers; each case ends with the worker still serving."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import stages.tools.code.sandbox as sandbox_module
from pipeline.config import CodeToolConfig
from stages.tools.base import ToolContext
from stages.tools.code.code_tool import CodeTool
from stages.tools.code.isolation import bwrap_works
from stages.tools.code.seccomp_filter import program

pytestmark = pytest.mark.skipif(not bwrap_works(), reason="bubblewrap cannot create namespaces here")

LONG_NAME = "a" * 250 + ".png"


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def tool(loop):
    """One worker, so every call below lands on the worker the previous call may have broken."""
    tool = CodeTool(CodeToolConfig(workers=1, wall_s=4, cpu_s=2, memory_mb=512, session=False))
    loop.run_until_complete(tool.pool.start())
    yield tool
    loop.run_until_complete(tool.aclose())


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    path = tmp_path / "in.png"
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(path)
    return ToolContext(trajectory_id="t1", workdir=tmp_path, images={"image_0.png": path})


def run(loop, tool, code, ctx):
    return loop.run_until_complete(tool.run({"code": code}, ctx))


def test_a_255_character_file_name_neither_breaks_the_worker_nor_lingers(loop, tool, ctx):
    listing = "import os\nprint(sorted(os.listdir('/output')), sorted(os.listdir('/tmp')), 6 * 7)"
    # /tmp may hold the parents of bound host folders (a checkout under /tmp binds /tmp/<dir>/...)
    before = run(loop, tool, listing, ctx)
    assert before.error is None, before.text
    code = f"from PIL import Image\nImage.new('RGB', (4, 4)).save('/output/{LONG_NAME}')\nopen('/tmp/left', 'w').write('x')"
    obs = run(loop, tool, code, ctx)
    assert obs.error is None, obs.text
    assert len(obs.images) == 1 and Image.open(obs.images[0]).size == (4, 4)
    follow = run(loop, tool, listing, ctx)
    assert follow.error is None, follow.text
    assert follow.text.strip() == before.text.strip() and follow.text.strip().startswith("[] [")
    assert "left" not in follow.text and follow.text.strip().endswith(" 42")


def test_reported_names_are_cleaned_and_cut():
    from stages.tools.code.sandbox_worker import NAME_CHARS, clean_name

    assert clean_name("ok.png") == "ok.png"
    assert clean_name("a\nb\x00c.png") == "a_b_c.png"
    long = clean_name(LONG_NAME)
    assert len(long) <= NAME_CHARS and long.endswith(".png")


def test_a_worker_that_fails_internally_is_replaced(loop, tool, ctx, monkeypatch):
    """A zygote error (here: a request it cannot read) replaces the worker; the next call works."""
    first_pid = tool.pool.workers[0].proc.pid
    restarts = tool.pool.restarts
    monkeypatch.setattr(sandbox_module, "_limits", lambda cfg: {})
    broken = run(loop, tool, "print(1)", ctx)
    assert "sandbox internal error" in broken.error and "replaced" in broken.error
    monkeypatch.undo()
    follow = run(loop, tool, "print(6 * 7)", ctx)
    assert follow.error is None and follow.text.strip() == "42"
    assert tool.pool.workers[0].proc.pid != first_pid and tool.pool.restarts > restarts


UNSHARE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
for name, flag in (("user", 0x10000000), ("mount", 0x00020000), ("pid", 0x20000000), ("net", 0x40000000)):
    print(name, libc.unshare(flag), ctypes.get_errno())
import threading
box = []
thread = threading.Thread(target=lambda: box.append(1)); thread.start(); thread.join()
pid = os.fork()
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
print("threads and fork", box)
"""


@pytest.mark.skipif(program() is None, reason="libseccomp is not installed")
def test_sandboxed_code_cannot_make_namespaces_but_can_fork_and_thread(loop, tool, ctx):
    obs = run(loop, tool, UNSHARE, ctx)
    assert obs.error is None, obs.text
    lines = obs.text.splitlines()
    for line, name in zip(lines, ("user", "mount", "pid", "net"), strict=False):
        assert line == f"{name} -1 1", obs.text  # EPERM
    assert lines[-1] == "threads and fork [1]"


def test_proc_does_not_show_the_host_staging_folder(loop, tool, ctx):
    code = "print(open('/proc/1/cmdline', 'rb').read().replace(b'\\0', b' ').decode())"
    obs = run(loop, tool, code, ctx)
    assert obs.error is None, obs.text
    staging = str(tool.pool.root)
    assert staging not in obs.text and "--ro-bind" not in obs.text, obs.text


def test_one_session_cannot_kill_another(loop, tmp_path, ctx):
    session_tool = CodeTool(CodeToolConfig(workers=1, wall_s=4, cpu_s=2, session=True))
    other = ToolContext(trajectory_id="t2", workdir=tmp_path / "o", images=dict(ctx.images))
    try:
        first = run(loop, session_tool, "import os\ncounter = 41\nprint(os.getpid())", ctx)
        assert first.error is None, first.text
        victim = int(first.text.strip())
        attack = (
            "import os, signal\n"
            f"try:\n    os.kill({victim}, signal.SIGKILL)\n    print('killed')\n"
            "except PermissionError:\n    print('refused')"
        )
        assert run(loop, session_tool, attack, other).text.strip() == "refused"
        second = run(loop, session_tool, "counter += 1\nprint(counter)", ctx)
        assert second.error is None and second.text.strip() == "42", second.text
    finally:
        loop.run_until_complete(session_tool.aclose())


def test_saved_images_lose_their_text_chunks(loop, tool, ctx):
    """What the code read of /proc rode out in a PNG text chunk, byte for byte (issue 26)."""
    code = (
        "from PIL import Image, PngImagePlugin\n"
        "info = PngImagePlugin.PngInfo()\n"
        "info.add_text('mounts', open('/proc/self/mountinfo').read())\n"
        "info.add_itxt('note', 'hidden words', zip=True)\n"
        "Image.new('RGB', (6, 6), (1, 2, 3)).save('/output/a.png', pnginfo=info)\n"
    )
    obs = run(loop, tool, code, ctx)
    assert obs.error is None, obs.text
    with Image.open(obs.images[0]) as saved:
        assert saved.text == {} and saved.getpixel((0, 0)) == (1, 2, 3)
        assert b"mounts" not in Path(obs.images[0]).read_bytes()


def test_the_mount_table_names_no_checkout_file(loop, tool, ctx):
    from stages.tools.code.isolation import WORKER_MODULES, WORKER_SCRIPT

    obs = run(loop, tool, "print(open('/proc/self/mountinfo').read())", ctx)
    assert obs.error is None and "/input" in obs.text
    for path in (WORKER_SCRIPT, *WORKER_MODULES):
        assert str(path) not in obs.text
    assert str(WORKER_SCRIPT.parent) not in obs.text
