"""unsafe-local mode (rlimits only, the host's PID namespace): after each call the zygote
kills what the call left running, and only that. It once took "every process in the PID
namespace" to mean the sandbox's, which without a namespace of its own meant every process on
the machine the user could signal (the test runner and its shell included)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from pipeline.config import CodeToolConfig
from stages.tools.base import ToolContext
from stages.tools.code.code_tool import CodeTool
from stages.tools.code.sandbox_worker import descendants

BACKGROUND = (
    "import subprocess, sys\n"
    "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
    "print(p.pid)\n"
)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_only_the_calls_own_leftovers_are_killed(tmp_path: Path):
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    tool = CodeTool(CodeToolConfig(workers=1, isolation="unsafe-local", wall_s=10))
    ctx = ToolContext("t", tmp_path)

    async def calls() -> list[str]:
        try:
            return [(await tool.run({"code": BACKGROUND}, ctx)).text for _ in range(2)]
        finally:
            await tool.aclose()

    try:
        outputs = asyncio.run(calls())
        left = [int(text.strip()) for text in outputs]
        deadline = time.monotonic() + 5
        while any(alive(pid) for pid in left) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(pid) for pid in left)  # orphaned into their own session, still found
        assert bystander.poll() is None and alive(os.getpid())  # the machine's other processes live
    finally:
        bystander.kill()
        bystander.wait()


def test_descendants_follow_parent_links_and_nothing_else():
    """A child and its grandchild are found from us, the grandchild from the child, and neither
    we nor our parent are anyone's descendants here (this process may have other children:
    only these two are known)."""

    def pids() -> list[int]:
        return [int(p) for p in os.listdir("/proc") if p.isdigit()]

    code = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); time.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while not descendants(child.pid, pids()) and time.monotonic() < deadline:
            time.sleep(0.05)
        now = pids()
        grandchildren = descendants(child.pid, now)
        found = descendants(os.getpid(), now)
        assert len(grandchildren) == 1
        assert child.pid in found and grandchildren[0] in found
        assert os.getpid() not in found and os.getppid() not in found
        assert not descendants(grandchildren[0], now)
    finally:
        for pid in descendants(child.pid, pids()):
            os.kill(pid, 9)
        child.kill()
        child.wait()
