"""The open-file budget a run needs, raised at start or refused with the number and the fix.

Every teacher call in flight holds a socket, every sandbox worker a few pipes and a log, and
the stores keep some files open; past the soft RLIMIT_NOFILE (1,024 on most Linux systems)
the next `socket()` fails with EMFILE in the middle of a run, as a connection error retried
until it counts as a teacher failure. So a run asks for what it will need up front: the soft
limit is raised to it when the hard limit allows (an unprivileged process may), and otherwise
the run stops before it starts, saying how many it needs and how to get them.
"""

from __future__ import annotations

import resource
from pathlib import Path

#: Files a process holds besides the ones a run sizes: the interpreter, shards, sqlite caches,
#: Ray's sockets, the world server's client, logs.
MARGIN = 256
#: Pipes and the log a sandbox worker's host side keeps open (stdin, stdout, log, spare).
FILES_PER_SANDBOX_WORKER = 4


class OpenFilesError(RuntimeError):
    """The run needs more open files than this process may have."""


def files_needed(teacher_in_flight: int, sandbox_workers: int = 0) -> int:
    """Open files a worker needs: one socket per teacher call in flight, the sandbox's pipes,
    and `MARGIN` for everything else."""
    return teacher_in_flight + FILES_PER_SANDBOX_WORKER * sandbox_workers + MARGIN


def ensure_open_files(needed: int, why: str) -> int:
    """Raise the soft RLIMIT_NOFILE to at least `needed`; returns the soft limit now in force.

    Raises OpenFilesError (with the number needed and how to raise the hard limit) when the
    hard limit is below `needed`. `why` names what needs them, for that message.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise OpenFilesError(
            f"{why} needs {needed} open files, but this process may open at most {hard} "
            f"(hard RLIMIT_NOFILE). Raise it (`ulimit -Hn {needed}` as root, `LimitNOFILE={needed}` "
            f"in a systemd unit, `nofile` in /etc/security/limits.conf, or `--ulimit nofile={needed}` "
            "for a container), or lower teacher.concurrency / tools.code.max_workers"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


def local_ports() -> int | None:
    """How many local ports one endpoint's connections can use (Linux's ephemeral range), or
    None where the system does not say."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return None
    return high - low + 1
