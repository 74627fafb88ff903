"""The warm zygote that runs *inside* the sandbox (standalone: stdlib + numpy/PIL/cv2 only).

Started once per pool worker, it imports PIL, numpy and cv2, then serves requests framed as
4-byte big-endian length + JSON on its stdin/stdout. Each stateless call forks a fresh child
(copy-on-write of the warm interpreter, a few ms) that drops to an unprivileged uid, applies
rlimits and runs the code; the zygote enforces wall time and output size, kills every straggler
in the PID namespace, and copies what the code saved under the output folder to the transfer
folder the host reads. The child never sees the protocol pipes, cannot signal the zygote (other
uid, no capabilities) and has no network (the launcher unshares it).

Session mode keeps one long-lived child per session key that executes successive cells in one
namespace (variables persist; files under /output and /tmp do not). When the zygote may switch
uids, each live session child has a uid of its own (`uid + 1 + slot`), so one trajectory's code
cannot signal or trace another trajectory's session.

What the code saves is copied out under a name of the zygote's making (`<call>_<k>.img`); the
code's own name is only reported, cleaned and cut to NAME_CHARS. /output and /tmp are emptied
before and after every call, whatever happened. A request the zygote itself fails on is answered
with `internal: true`, and the host replaces the worker rather than reuse it.

With `decode_cache_bytes` > 0 the zygote decodes a call's large staged images before forking
and keeps them (`decode_cache.py`, loaded from beside this file): the child's code then loads
them without decoding. The child can read that memory: it holds decoded images of this run only.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import shutil
import signal
import stat
import struct
import sys
import time
import traceback

IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")
#: Characters of a saved file's name that are reported back (the copy is named by the zygote).
NAME_CHARS = 100


def clean_name(name: str) -> str:
    """A saved file's name as reported: printable, no path, at most NAME_CHARS characters."""
    name = "".join(ch if ch.isprintable() and ch not in "/\\" else "_" for ch in name)
    if len(name) > NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:10] if dot and stem else ""
        name = name[: NAME_CHARS - len(ext) - 2] + "~" + (f".{ext}" if ext else "")
    return name or "_"


# ------------------------------------------------------------------------------ framing


def read_exact(fd: int, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def recv(fd: int) -> dict | None:
    head = read_exact(fd, 4)
    if head is None:
        return None
    body = read_exact(fd, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


def send(fd: int, message: dict) -> None:
    body = json.dumps(message).encode()
    os.write(fd, struct.pack(">I", len(body)) + body) if len(body) < 65536 else _write_all(fd, body)


def _write_all(fd: int, body: bytes) -> None:
    view = memoryview(struct.pack(">I", len(body)) + body)
    while view:
        view = view[os.write(fd, view) :]


# ------------------------------------------------------------------------------ the child


def _vm_size() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def confine(limits: dict, uid: int | None, base_vm: int) -> None:
    """rlimits, then drop to the unprivileged uid (after which no capability is left)."""
    cpu = max(1, int(limits["cpu_s"] + 0.999))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    memory = base_vm + int(limits["memory_mb"]) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["max_file_bytes"], limits["max_file_bytes"]))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    if uid is not None:
        # RLIMIT_NPROC is not enforced for root, hence the uid drop; the uid is private to this worker.
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["max_processes"], limits["max_processes"]))
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)


def namespace_for(request: dict, paths: dict) -> dict:
    return {
        "__name__": "__main__",
        "__builtins__": __builtins__,
        "image_paths": [os.path.join(paths["input"], name) for name in request["images"]],
        "INPUT_DIR": paths["input"],
        "OUTPUT_DIR": paths["output"],
    }


def run_cell(code: str, namespace: dict) -> int:
    """Execute one cell; print the user's traceback (without our frames) to stderr."""
    try:
        exec(compile(code, "<code>", "exec"), namespace)
    except SystemExit as exc:
        return 0 if exc.code in (None, 0) else 1
    except BaseException as exc:
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename != "<code>":
            tb = tb.tb_next
        sys.stdout.flush()
        sys.stderr.write("".join(traceback.format_exception(type(exc), exc, tb)))
        return 1
    return 0


def _child_start(out_w: int, cache) -> None:
    """A forked child's first steps: its loads may take the decode cache's pixels, it leaves the
    zygote's session and process group, and what it prints goes to the output pipe."""
    if cache is not None:
        cache.serve()
    os.setsid()
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)


def stateless_child(request: dict, out_w: int, cfg: dict, base_vm: int, cache) -> None:
    """Runs in the forked child: never returns."""
    code = 1
    try:
        _child_start(out_w, cache)
        os.closerange(3, 65536)
        confine(request["limits"], cfg["uid"], base_vm)
        os.chdir(cfg["paths"]["output"])
        code = run_cell(request["code"], namespace_for(request, cfg["paths"]))
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def session_child(
    ctrl_r: int, status_w: int, out_w: int, cfg: dict, base_vm: int, limits: dict, cache
) -> None:
    """A long-lived child running successive cells in one namespace (session mode)."""
    try:
        _child_start(out_w, cache)
        for fd in range(3, 65536):
            if fd not in (ctrl_r, status_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
        session_limits = dict(limits, cpu_s=limits["cpu_s"] * limits.get("session_cpu_calls", 10))
        confine(session_limits, cfg["uid"], base_vm)
        os.chdir(cfg["paths"]["output"])
        namespace: dict = {}
        while True:
            request = recv(ctrl_r)
            if request is None:
                break
            fresh = namespace_for(request, cfg["paths"])
            namespace.update({k: fresh[k] for k in ("image_paths", "INPUT_DIR", "OUTPUT_DIR")})
            namespace.setdefault("__name__", "__main__")
            namespace.setdefault("__builtins__", __builtins__)
            code = run_cell(request["code"], namespace)
            sys.stdout.flush()
            sys.stderr.flush()
            send(status_w, {"code": code})
    finally:
        os._exit(0)


# ------------------------------------------------------------------------------ the zygote


class Zygote:
    def __init__(self, cfg: dict, cache=None) -> None:
        self.cfg = cfg
        self.paths = cfg["paths"]
        self.cache = cache  # decode_cache.DecodeCache, or None when off
        self.sessions: dict[str, dict] = {}
        #: session uid slots: a live session child runs as uid + 1 + slot (when uids are used)
        self.free_slots = list(range(cfg.get("session_uids", 0)))
        # entries of /output and /tmp that hold bind mounts (a venv or checkout under the host's
        # /tmp is bound below the sandbox's /tmp): never emptied, and never walked on each call
        self.mounted = {path: _mounted_entries(path) for path in (self.paths["output"], self.paths["tmp"])}

    # -- housekeeping
    def kill_stragglers(self) -> None:
        """SIGKILL what the calls left running, except init, us and live sessions."""
        keep = {1, os.getpid()} | {s["pid"] for s in self.sessions.values()}
        for _ in range(100):
            victims = [pid for pid in self._candidates() if pid not in keep]
            if not victims:
                break
            for pid in victims:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            self.reap()
            time.sleep(0.001)
        self.reap()

    def _candidates(self) -> list[int]:
        """Processes a call may have left. In the sandbox's own PID namespace: every process
        there of the sandbox's uids. Without one (unsafe-local, the host's PID namespace, where
        "every process" is the whole machine's): only the zygote's descendants, orphans
        included (the zygote is their subreaper)."""
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
        if self.cfg.get("own_pid_namespace", False):
            return [pid for pid in pids if self._is_ours(pid)]
        return descendants(os.getpid(), pids)

    def _is_ours(self, pid: int) -> bool:
        """In namespaces mode the PID namespace also holds the launcher; only sandbox uids die."""
        if self.cfg["uid"] is None:
            return True
        uid = self.cfg["uid"]
        try:
            return uid <= os.stat(f"/proc/{pid}").st_uid <= uid + self.cfg.get("session_uids", 0)
        except OSError:
            return False

    def reap(self) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    def clear_dirs(self) -> None:
        """Empty /output and /tmp (before and after each call: nothing carries over)."""
        self.clear_dir(self.paths["output"])
        self.clear_dir(self.paths["tmp"])

    def clear_dir(self, path: str) -> None:
        keep = self.mounted.get(path, set())
        for entry in os.scandir(path):
            if entry.name in keep:  # created by the launcher (root-owned): nothing of the code's
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass

    # -- output collection
    def collect(self, limits: dict, call_id: str) -> tuple[list[dict], str | None]:
        entries = []
        for entry in os.scandir(self.paths["output"]):
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            with open(entry.path, "rb") as handle:
                head = handle.read(8)
            if head.startswith(IMAGE_MAGIC):
                entries.append((info.st_mtime_ns, entry.name, entry.path))
        entries.sort()
        if len(entries) > limits["max_images"]:
            return (
                [],
                f"the code saved {len(entries)} images; at most {limits['max_images']} are allowed per call",
            )
        files = []
        for index, (_, name, path) in enumerate(entries):
            target = os.path.join(self.paths["xfer"], f"{call_id}_{index}.img")
            shutil.copyfile(path, target)
            files.append({"name": clean_name(name), "path": target})
        return files, None

    # -- a stateless call
    def prefill(self, request: dict) -> int:
        """Decode the call's large images the cache lacks (counted in the call's CPU)."""
        if self.cache is None:
            return 0
        return self.cache.prefill([os.path.join(self.paths["input"], name) for name in request["images"]])

    def run_stateless(self, request: dict) -> dict:
        limits = request["limits"]
        decoded = self.prefill(request)
        out_r, out_w = os.pipe()
        started = time.perf_counter()
        base_vm = _vm_size()  # now, not at start: the child's headroom stays memory_mb as the cache grows
        pid = os.fork()
        if pid == 0:
            os.close(out_r)
            stateless_child(request, out_w, self.cfg, base_vm, self.cache)
        os.close(out_w)
        output, reason = self.pump(out_r, pid, None, started + limits["wall_s"], limits["max_output_bytes"])
        if reason != "exited":
            os.kill(pid, signal.SIGKILL)
        status, code_cpu_s = self._status(pid)  # before the straggler sweep, which reaps whatever it finds
        self.kill_stragglers()
        output += self.drain(out_r, limits["max_output_bytes"] - len(output))
        os.close(out_r)
        exec_s = time.perf_counter() - started
        exit_code = os.waitstatus_to_exitcode(status) if status is not None else None
        reply = self.finish(request, output, reason, exit_code, exec_s)
        return dict(reply, decoded=decoded, code_cpu_s=round(code_cpu_s, 6))

    def _status(self, pid: int) -> tuple[int | None, float]:
        """The child's wait status and CPU seconds (its start in the fork and the code's run)."""
        try:
            _, status, usage = os.wait4(pid, 0)
            return status, usage.ru_utime + usage.ru_stime
        except ChildProcessError:
            return None, 0.0

    def pump(
        self, out_r: int, pid: int, status_r: int | None, deadline: float, cap: int
    ) -> tuple[bytes, str | None]:
        """Read output until the child exits (or a session cell ends), the deadline, or the cap."""
        output = bytearray()
        pidfd = os.pidfd_open(pid)
        watch = [out_r, pidfd] + ([status_r] if status_r is not None else [])
        reason = None
        try:
            while True:
                timeout = deadline - time.perf_counter()
                if timeout <= 0:
                    reason = "wall"
                    break
                ready, _, _ = select.select(watch, [], [], timeout)
                if not ready:
                    reason = "wall"
                    break
                if out_r in ready:
                    chunk = os.read(out_r, 65536)
                    if chunk:
                        output += chunk
                        if len(output) > cap:
                            reason = "output"
                            break
                    else:
                        watch.remove(out_r)
                if pidfd in ready:
                    reason = "exited"
                    break
                if status_r is not None and status_r in ready:
                    reason = "done"
                    break
        finally:
            os.close(pidfd)
        return bytes(output), reason

    def drain(self, fd: int, budget: int) -> bytes:
        """What is left in the pipe once every writer is dead (bounded)."""
        os.set_blocking(fd, False)
        data = bytearray()
        while budget > 0:
            try:
                chunk = os.read(fd, min(65536, budget + 1))
            except BlockingIOError:
                break
            if not chunk:
                break
            data += chunk
            budget -= len(chunk)
        return bytes(data)

    def finish(
        self, request: dict, output: bytes, reason: str | None, exit_code: int | None, exec_s: float
    ) -> dict:
        limits = request["limits"]
        error = None
        if reason == "wall":
            error = f"wall time limit exceeded ({limits['wall_s']:g} s); the code was killed"
        elif reason == "output":
            error = f"output limit exceeded (more than {limits['max_output_bytes']} bytes printed); the code was killed"
        elif exit_code is not None and exit_code < 0:
            sig = -exit_code
            if sig == signal.SIGXCPU or (sig == signal.SIGKILL and exec_s >= limits["cpu_s"]):
                error = f"CPU time limit exceeded ({limits['cpu_s']:g} s); the code was killed"
            elif sig == signal.SIGXFSZ:
                error = f"file size limit exceeded ({limits['max_file_bytes']} bytes per file)"
            else:
                error = f"the code crashed with signal {signal.Signals(sig).name} (memory limit {limits['memory_mb']} MB?)"
        elif exit_code:
            error = _last_line(output) or f"the code exited with status {exit_code}"
        files: list[dict] = []
        try:
            if error is None or reason != "output":
                files, image_error = self.collect(limits, request["id"])
                error = error or image_error
        finally:
            self.clear_dirs()
        text = output[: limits["max_output_bytes"]].decode("utf-8", "replace")
        return {"id": request["id"], "stdout": text, "error": error, "files": files, "exec_s": exec_s}

    # -- session calls
    def run_session(self, request: dict) -> dict:
        limits = request["limits"]
        key = request["session"]
        decoded = 0
        if key not in self.sessions:  # a session child sees what was cached when it was forked
            decoded = self.prefill(request)
        session = self.sessions.get(key) or self.open_session(key, limits)
        started, cpu_before = time.perf_counter(), _process_cpu_s(session["pid"])
        send(session["ctrl_w"], {"code": request["code"], "images": request["images"]})
        output, reason = self.pump(
            session["out_r"],
            session["pid"],
            session["status_r"],
            started + limits["wall_s"],
            limits["max_output_bytes"],
        )
        exit_code = None
        code_cpu_s = max(0.0, _process_cpu_s(session["pid"]) - cpu_before)  # 0 once the child is gone
        if reason == "done":
            status = recv(session["status_r"])
            exit_code = status["code"] if status else 1
            output += self.drain(session["out_r"], limits["max_output_bytes"] - len(output))
            self.kill_stragglers()
        else:
            self.close_session(key)  # killed, timed out or flooded: the state is gone
            exit_code = None
            if reason == "exited":
                reason = None
                exit_code = -signal.SIGKILL
        response = self.finish(request, output, reason, exit_code, time.perf_counter() - started)
        if key not in self.sessions and response["error"]:
            response["error"] += " (session state was reset)"
        return dict(response, decoded=decoded, code_cpu_s=round(code_cpu_s, 6))

    def open_session(self, key: str, limits: dict) -> dict:
        ctrl_r, ctrl_w = os.pipe()
        status_r, status_w = os.pipe()
        out_r, out_w = os.pipe()
        base_vm = _vm_size()
        slot = self.free_slots.pop(0) if self.free_slots else None
        child_cfg = self.cfg
        if self.cfg["uid"] is not None and slot is not None:
            child_cfg = dict(self.cfg, uid=self.cfg["uid"] + 1 + slot)
        pid = os.fork()
        if pid == 0:
            session_child(ctrl_r, status_w, out_w, child_cfg, base_vm, limits, self.cache)
        for fd in (ctrl_r, status_w, out_w):
            os.close(fd)
        session = {"pid": pid, "ctrl_w": ctrl_w, "status_r": status_r, "out_r": out_r, "slot": slot}
        self.sessions[key] = session
        return session

    def close_session(self, key: str) -> None:
        session = self.sessions.pop(key, None)
        if session is None:
            return
        with contextlib.suppress(OSError):
            os.kill(session["pid"], signal.SIGKILL)
        for fd in (session["ctrl_w"], session["status_r"], session["out_r"]):
            os.close(fd)
        self.kill_stragglers()
        if session["slot"] is not None:
            self.free_slots.append(session["slot"])

    def handle(self, request: dict) -> dict:
        op = request.get("op", "run")
        if op == "close":
            self.close_session(request["session"])
            return {"id": request["id"], "closed": True}
        before = _cpu_s()
        self.clear_dirs()
        if request.get("session"):
            while len(self.sessions) >= self.cfg["max_sessions"] and request["session"] not in self.sessions:
                self.close_session(next(iter(self.sessions)))
            reply = self.run_session(request)
        else:
            reply = self.run_stateless(request)
        # CPU of the zygote and the children it reaped: approximate per call (a session child's
        # counts when it ends, a straggler killed late in one call may be reaped in the next);
        # `code_cpu_s` is the part the code's own process spent (its fork's start included)
        reply["cpu_s"] = round(_cpu_s() - before, 6)
        return reply


def descendants(root: int, pids: list[int]) -> list[int]:
    """The processes among `pids` descended from `root` (by their /proc parent links)."""
    children: dict[int, list[int]] = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone, or unreadable: not ours to judge
        children.setdefault(parent, []).append(pid)
    found, queue = [], list(children.get(root, []))
    while queue:
        pid = queue.pop()
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def become_subreaper() -> None:
    """Orphans of this process's descendants are re-parented here (prctl PR_SET_CHILD_SUBREAPER),
    so a call's background process is still found among our descendants after its parent exits."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _mounted_entries(folder: str, mountinfo: str = "/proc/self/mountinfo") -> set[str]:
    """Names in `folder` that are, or lead to, a mount point."""
    prefix = folder.rstrip("/") + "/"
    names = set()
    try:
        with open(mountinfo) as handle:
            for line in handle:
                point = line.split()[4].encode().decode("unicode_escape")  # octal escapes (\040)
                if point.startswith(prefix):
                    names.add(point[len(prefix) :].split("/")[0])
    except OSError:
        pass
    return names


def _process_cpu_s(pid: int) -> float:
    """A live process's CPU seconds (user + system, at the clock tick's resolution); 0 if gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _last_line(output: bytes) -> str:
    lines = [line for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    return lines[-1].strip()[:500] if lines else ""


def fast_png_by_default(image_module, png_encode) -> None:
    """PNGs the code saves without choosing how are written fast: level 1, one row filter.

    Saved images are intermediate: the host reads each back, stores it and sends it to the
    teacher. PIL's default (zlib 6 after adaptive filtering) spent ~170 ms on a zoomed 612x412
    photo crop, and at level 1 most of what is left is PIL trying five row filters on every row:
    a plain L, RGB or RGBA image saved with no options goes through `png_encode` instead
    (libpng, level 1, the "up" filter: a crop call's sandbox CPU 0.71-0.87 of PIL's level 1,
    files 0.89-1.12 of the size). Pixels are the same either way. A level (or `optimize`) the
    code asks for is kept, and any other option, colour profile or transparency leaves the save
    to PIL (at level 1 unless chosen).
    """
    import numpy

    def wrap(save, *, single_frame: bool):
        def save_png(im, fp, filename, *args, **kwargs):
            plain = not im.encoderinfo and not {"icc_profile", "transparency"} & set(im.info)
            if single_frame and plain and im.mode in png_encode.CHANNELS:
                fp.write(png_encode.fast_png(numpy.asarray(im), level=1, row_filter="up"))
                return None
            if "compress_level" not in im.encoderinfo and not im.encoderinfo.get("optimize"):
                im.encoderinfo["compress_level"] = 1
            return save(im, fp, filename, *args, **kwargs)

        return save_png

    image_module.register_save("PNG", wrap(image_module.SAVE["PNG"], single_frame=True))
    if "PNG" in image_module.SAVE_ALL:
        image_module.register_save_all("PNG", wrap(image_module.SAVE_ALL["PNG"], single_frame=False))


def _sibling(name: str):
    """Import `name`.py from beside this file without putting the folder on sys.path (outside
    bwrap that folder is stages/tools, whose code.py would shadow the stdlib's `code`)."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"sandbox_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> None:
    cfg = json.loads(sys.argv[1])
    if cfg.get("nice", 0) > 0:  # teacher code is batch work: the host's event loop gets a CPU first
        os.nice(cfg["nice"])
    if not cfg.get("own_pid_namespace", False):
        become_subreaper()
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    import cv2
    import numpy
    import PIL.Image
    import PIL.ImageEnhance
    import PIL.ImageFilter
    import PIL.ImageOps

    cv2.setNumThreads(1)
    PIL.Image.init()  # every format plugin, once here rather than (~20 ms) in each call's child
    fast_png_by_default(PIL.Image, _sibling("png_encode"))
    del numpy, PIL
    cache = None
    if cfg.get("decode_cache_bytes", 0) > 0:
        cache = _sibling("decode_cache").install(cfg["decode_cache_bytes"], cfg["decode_cache_min_pixels"])
    zygote = Zygote(cfg, cache)
    send(proto_out, {"ready": True, "pid": os.getpid()})
    while True:
        request = recv(proto_in)
        if request is None:
            break
        try:
            response = zygote.handle(request)
        except Exception as exc:  # a zygote bug must not kill the worker silently
            response = {
                "id": request.get("id"),
                "stdout": "",
                "files": [],
                "error": f"sandbox internal error: {exc!r}",
                "internal": True,  # the host replaces this worker
            }
        send(proto_out, response)


if __name__ == "__main__":
    main()
