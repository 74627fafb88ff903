"""The seccomp filter bubblewrap loads into the code sandbox (`bwrap --seccomp FD`).

Teacher code never needs to make namespaces, mount, load kernel objects or trace processes, and
those calls are how a sandbox is escaped or the kernel attacked: a new user namespace hands an
unprivileged process every capability inside it. bwrap's own `--disable-userns` needs
`--unshare-user`, which maps a single uid and so would end the per-call uid drop; a filter keeps
both. The program is compiled by libseccomp (the maintained C library every container runtime
uses, `libseccomp2` on Debian) through ctypes, for the native architecture only: calls made
through another ABI (i386 `int 0x80` on x86_64) kill the process, libseccomp's default.

Refused with EPERM: unshare, setns, namespace flags to clone, mount and the new mount API,
pivot_root, chroot, ptrace and process_vm_*, keyctl, bpf, perf_event_open, userfaultfd,
io_uring, module and kexec loading. clone3 answers ENOSYS: its flags live in memory a filter
cannot read, and glibc then falls back to clone, whose flags are checked.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import logging
import os

log = logging.getLogger(__name__)

_ALLOW = 0x7FFF0000
_CMP_MASKED_EQ = 7
#: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x80)
DENIED = (
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "ptrace", "process_vm_readv",
    "process_vm_writev", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register", "init_module",
    "finit_module", "delete_module", "kexec_load", "kexec_file_load", "acct", "swapon", "swapoff",
)  # fmt: skip


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)


@functools.cache
def _library() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("seccomp")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)
    ]  # fmt: skip
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


@functools.cache
def program() -> bytes | None:
    """The compiled BPF program, or None (with a warning, once) when libseccomp is missing."""
    lib = _library()
    if lib is None:
        log.warning(
            "libseccomp not found: the code sandbox runs without its seccomp filter (sandboxed code "
            "may create user namespaces); install libseccomp2"
        )
        return None
    ctx = lib.seccomp_init(_ALLOW)
    if not ctx:
        return None
    try:
        deny = _errno_action(errno.EPERM)
        for name in DENIED:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number >= 0 and lib.seccomp_rule_add_array(ctx, deny, number, 0, None) != 0:
                raise OSError(f"seccomp rule for {name} refused")
        clone = lib.seccomp_syscall_resolve_name(b"clone")
        for flag in NAMESPACE_FLAGS:
            cmp = _ArgCmp(0, _CMP_MASKED_EQ, flag, flag)
            if lib.seccomp_rule_add_array(ctx, deny, clone, 1, ctypes.byref(cmp)) != 0:
                raise OSError("seccomp rule for clone refused")
        clone3 = lib.seccomp_syscall_resolve_name(b"clone3")
        if clone3 >= 0:
            lib.seccomp_rule_add_array(ctx, _errno_action(errno.ENOSYS), clone3, 0, None)
        read_fd, write_fd = os.pipe()
        try:
            if lib.seccomp_export_bpf(ctx, write_fd) != 0:
                raise OSError("seccomp_export_bpf failed")
            os.close(write_fd)
            write_fd = -1
            chunks = []
            while chunk := os.read(read_fd, 65536):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
    except OSError as exc:
        log.warning("the code sandbox's seccomp filter could not be built (%s); running without it", exc)
        return None
    finally:
        lib.seccomp_release(ctx)


def program_fd() -> int | None:
    """A readable fd holding the program from its start (bwrap reads it to the end), or None."""
    data = program()
    if data is None:
        return None
    fd = os.memfd_create("trajforge-seccomp", 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
