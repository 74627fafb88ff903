"""How a sandbox worker is launched: bubblewrap, bare Linux namespaces, or (opt-in) nothing.

`resolve_isolation("auto")` probes once per process: bubblewrap if it can create a network- and
PID-isolated sandbox here, else `unshare` namespaces, else it refuses (SandboxUnavailable) unless
the config says `isolation: unsafe-local`, which runs with rlimits only and logs a loud warning.

What each mode guarantees (the hostile-snippet tests check the bwrap row):
- bwrap: empty root with read-only /usr, the Python install and the venv; /input read-only,
  /output and /tmp size-capped tmpfs; no network, own PID/IPC/UTS namespaces, cleared
  environment; the code runs under a per-worker unprivileged uid with no capabilities (each
  live session child under a uid of its own); a seccomp filter (`seccomp_filter`) refuses new
  namespaces, mounts, ptrace and kernel-object calls; the zygote is PID 1 (no bwrap init whose
  command line would show the host's staging paths) and its own code is copied in (`--file`),
  not bound from the checkout. /proc/self/mountinfo still names the host folders that must be
  bound (the Python install and venv, the staging folder): names only, nothing more is readable.
- namespaces: no network, own PID namespace, unprivileged uid and rlimits, but the host file
  system stays visible (read access is limited only by file permissions).
- unsafe-local: rlimits only. For a trusted laptop, never for teacher-written code at scale.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("sandbox_worker.py")
#: Modules the worker loads from beside itself (bound next to it under bwrap).
WORKER_MODULES = (Path(__file__).with_name("decode_cache.py"), Path(__file__).with_name("png_encode.py"))
#: Environment of the sandboxed interpreter: single-threaded maths libraries keep fork() safe.
SANDBOX_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "0",
    # malloc asks for transparent huge pages on large blocks: a decoded image is a fresh buffer
    # in a just-forked child, and 4 KB faults there (5,000 for a 2560x2048 scene) cost more
    # than its decode; glibc reads THP_SYSFS to know huge pages may be asked for
    "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1",
}
THP_SYSFS = Path("/sys/kernel/mm/transparent_hugepage")
ZYGOTE_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_FOWNER")


class SandboxUnavailable(RuntimeError):
    """No isolation could be set up and unsafe local execution was not opted into."""


@dataclass(frozen=True)
class WorkerDirs:
    """Host folders of one worker: staged inputs (read-only inside) and the transfer folder."""

    root: Path

    @property
    def input(self) -> Path:
        return self.root / "input"

    @property
    def xfer(self) -> Path:
        return self.root / "xfer"

    @property
    def output(self) -> Path:  # only used outside bwrap (inside, /output is a tmpfs)
        return self.root / "output"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def create(self) -> None:
        for path in (self.input, self.xfer, self.output, self.tmp):
            path.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        self.input.chmod(0o755)
        self.xfer.chmod(0o700)  # the sandboxed uid must not write here, only the zygote
        self.output.chmod(0o1777)
        self.tmp.chmod(0o1777)


def _probe(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@functools.cache
def bwrap_works() -> bool:
    exe = shutil.which("bwrap")
    if not exe:
        return False
    argv = [exe, "--ro-bind", "/", "/", "--unshare-net", "--unshare-pid", "--die-with-parent", "/bin/true"]
    return _probe(argv)


@functools.cache
def unshare_works() -> bool:
    exe = shutil.which("unshare")
    if not exe or os.geteuid() != 0:
        return False
    return _probe([exe, "--net", "--pid", "--fork", "--mount-proc", "/bin/true"])


def resolve_isolation(requested: str) -> str:
    """The isolation mode to use, or SandboxUnavailable with what to install or set."""
    if requested == "bwrap" and not bwrap_works():
        raise SandboxUnavailable(
            "isolation 'bwrap' requested but bubblewrap is missing or cannot create namespaces here; install bubblewrap (apt-get install bubblewrap) or use isolation: auto"
        )
    if requested == "namespaces" and not unshare_works():
        raise SandboxUnavailable(
            "isolation 'namespaces' needs root and util-linux `unshare`; use isolation: auto"
        )
    if requested != "auto":
        if requested == "unsafe-local":
            log.warning(
                "!!! code sandbox in UNSAFE-LOCAL mode: teacher code runs with rlimits only, "
                "with network and file access. Never use this for untrusted code. !!!"
            )
        return requested
    if bwrap_works():
        return "bwrap"
    if unshare_works():
        log.warning(
            "bubblewrap unavailable: code sandbox falls back to namespaces + rlimits (host files readable)"
        )
        return "namespaces"
    raise SandboxUnavailable(
        "no sandbox isolation is available: install bubblewrap (apt-get install bubblewrap, or `make setup` as root) "
        "or run as root with util-linux `unshare`; to run teacher code WITHOUT isolation set "
        "tools.code.isolation=unsafe-local (dangerous)"
    )


def _ancestors(path: Path) -> list[Path]:
    return [p for p in reversed(path.parents) if p != Path("/")]


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("/bin", "/sbin", "/lib", "/lib64", "/lib32"):
        path = Path(name)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), name]
        elif path.is_dir():
            args += ["--ro-bind", name, name]
    return args


def module_fds() -> dict[str, int]:
    """In-sandbox path -> readable fd of the worker's code, for bwrap's `--file` (a copy: the
    sandbox's mount table then names no checkout path). The caller closes them after launch."""
    fds = {}
    sources = [(WORKER_SCRIPT, "/sandbox/worker.py")]
    sources += [(module, f"/sandbox/{module.name}") for module in WORKER_MODULES]
    for source, target in sources:
        fd = os.memfd_create(f"trajforge-{source.name}", 0)
        os.write(fd, source.read_bytes())
        os.lseek(fd, 0, os.SEEK_SET)
        fds[target] = fd
    return fds


def bwrap_argv(
    dirs: WorkerDirs,
    *,
    output_bytes: int,
    tmp_bytes: int,
    seccomp_fd: int | None = None,
    files: dict[str, int] | None = None,
) -> list[str]:
    """bubblewrap command line for one worker (the zygote config is appended by the caller)."""
    python_roots = sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).absolute()})
    argv = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--new-session", "--as-pid-1"]
    argv += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    argv += ["--cap-drop", "ALL"]
    for cap in ZYGOTE_CAPS:
        argv += ["--cap-add", cap]
    # /tmp first: binds made later land on top of it, so a venv or checkout under /tmp stays visible
    argv += ["--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    made: set[Path] = set()
    for root in python_roots:  # parents of binds are created 0755 so the dropped uid can traverse
        for parent in _ancestors(root):
            if parent not in made and not str(parent).startswith("/usr"):
                argv += ["--perms", "0755", "--dir", str(parent)]
                made.add(parent)
    argv += _system_binds()
    for root in python_roots:
        if not str(root).startswith("/usr/"):
            argv += ["--ro-bind", str(root), str(root)]
    if files:
        for target, fd in files.items():
            argv += ["--perms", "0444", "--file", str(fd), target]
    else:
        argv += ["--ro-bind", str(WORKER_SCRIPT), "/sandbox/worker.py"]
        for module in WORKER_MODULES:
            argv += ["--ro-bind", str(module), f"/sandbox/{module.name}"]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    if THP_SYSFS.is_dir():  # read-only: how glibc learns it may ask for huge pages (see SANDBOX_ENV)
        argv += ["--ro-bind", str(THP_SYSFS), str(THP_SYSFS)]
    argv += ["--ro-bind", str(dirs.input), "/input", "--bind", str(dirs.xfer), "/xfer"]
    argv += ["--perms", "1777", "--size", str(output_bytes), "--tmpfs", "/output"]
    argv += ["--clearenv"]
    for key, value in SANDBOX_ENV.items():
        argv += ["--setenv", key, value]
    argv += ["--chdir", "/", sys.executable, "-I", "/sandbox/worker.py"]
    return argv


def launch_argv(
    mode: str,
    dirs: WorkerDirs,
    *,
    output_bytes: int,
    tmp_bytes: int,
    seccomp_fd: int | None = None,
    files: dict[str, int] | None = None,
) -> tuple[list[str], dict]:
    """(argv, in-sandbox paths) for a worker under the given isolation mode."""
    if mode == "bwrap":
        paths = {"input": "/input", "output": "/output", "xfer": "/xfer", "tmp": "/tmp"}
        argv = bwrap_argv(
            dirs, output_bytes=output_bytes, tmp_bytes=tmp_bytes, seccomp_fd=seccomp_fd, files=files
        )
        return argv, paths
    paths = {
        "input": str(dirs.input),
        "output": str(dirs.output),
        "xfer": str(dirs.xfer),
        "tmp": str(dirs.tmp),
    }
    python = [sys.executable, "-I", str(WORKER_SCRIPT)]
    if mode == "namespaces":
        unshare = shutil.which("unshare") or "unshare"
        return [unshare, "--net", "--pid", "--fork", "--mount-proc", "--ipc", "--uts", *python], paths
    return python, paths
