"""Hostile inputs (issue 26): peak memory and wall time, this tree against a baseline commit.

Each case runs in a fresh interpreter per code version, limited to --memory-mb of address space
and --timeout-s of wall time (a case that hits either is reported as such). The pages come from
a loopback server in this process:
- gzip-gzip: `Content-Encoding: gzip, gzip`, a few KB inflating to --bomb-mb MiB of zeros;
- gzip: one gzip layer of the same zeros (a plain bomb);
- drip: one byte every 0.5 s for --drip-s seconds, then the connection ends;
- unclosed-title: 2 MB of `<title>x` (web_visit fetch + extraction);
- dev-zero: `pipeline.images.read_image("/dev/zero")` (a seed row naming a device);
- json-array-10k: a pretty-printed one-array `.json` of 10,000 seed rows through the JSON reader.

    python bench/bench_hostile.py [--baseline REV] [--bomb-mb 512] [--only gzip-gzip,drip]
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "ca847f1"  # main before issue 26
CASES = ("gzip-gzip", "gzip", "drip", "unclosed-title", "dev-zero", "json-array-10k")

CHILD = r"""
import asyncio, json, resource, sys, time
from pathlib import Path
case, port, data = sys.argv[1], int(sys.argv[2]), sys.argv[3]
limit = int(sys.argv[4]) << 20
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
started = time.perf_counter()
outcome = ""
try:
    if case in ("gzip-gzip", "gzip", "drip", "unclosed-title"):
        from pipeline.config import VisitToolConfig
        from stages.tools.cache import ToolCache
        from stages.tools.visit.web_visit import WebVisitTool
        cfg = VisitToolConfig(host_overrides={"bench.local": f"127.0.0.1:{port}"})
        tool = WebVisitTool(cfg, ToolCache(None, enabled=False))
        async def go():
            try:
                return await tool.fetch(f"http://bench.local/{case}")
            finally:
                await tool.client.aclose()
        page = asyncio.run(go())
        outcome = f"read {len(page['text'])} chars"
    elif case == "dev-zero":
        from pipeline.images import read_image
        read_image("/dev/zero")
    elif case == "json-array-10k":
        from stages.readers.json_lines import json_records
        outcome = f"{sum(1 for _ in json_records(Path(data)))} rows"
except MemoryError:
    outcome = "MemoryError"
except Exception as exc:
    outcome = f"{type(exc).__name__}: {str(exc)[:90]}"
wall = time.perf_counter() - started
print(json.dumps({"wall_s": wall, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "outcome": outcome}))
"""


def zeros_gzip(mib: int) -> bytes:
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    return b"".join(squeeze.compress(block) for _ in range(mib)) + squeeze.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        case = self.path.strip("/")
        if case == "drip":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(self.server.drip_bytes))
            self.end_headers()
            for _ in range(self.server.drip_bytes):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.5)
            return
        body, encoding = self.server.pages[case]
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def checkout(rev: str, target: Path) -> Path:
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    target.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def run_case(code: Path, case: str, port: int, data: Path, args) -> dict:
    argv = [sys.executable, "-c", CHILD, case, str(port), str(data), str(args.memory_mb)]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=args.timeout_s,
            env={"PYTHONPATH": str(code)},
            cwd=code,
        )
    except subprocess.TimeoutExpired:
        return {
            "wall_s": time.perf_counter() - started,
            "peak_mb": float("nan"),
            "outcome": "killed at timeout",
        }
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {
            "wall_s": time.perf_counter() - started,
            "peak_mb": float("nan"),
            "outcome": done.stderr[-120:],
        }
    return json.loads(lines[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--bomb-mb", type=int, default=512)
    parser.add_argument("--drip-s", type=int, default=45)
    parser.add_argument("--memory-mb", type=int, default=3072, help="address-space limit of each case")
    parser.add_argument("--timeout-s", type=float, default=90)
    parser.add_argument("--only", default=",".join(CASES))
    args = parser.parse_args()
    inner = zeros_gzip(args.bomb_mb)
    server = Server(("127.0.0.1", 0), Handler)
    server.drip_bytes = args.drip_s * 2
    server.pages = {
        "gzip-gzip": (gzip.compress(inner, 9), "gzip, gzip"),
        "gzip": (inner, "gzip"),
        "unclosed-title": (("<html><head>" + "<title>x" * 250_000).encode(), None),
    }
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        data = Path(tmp) / "seeds.json"
        rows = [
            {"id": i, "question": f"What is in picture {i}?", "answer": f"thing {i}"} for i in range(10_000)
        ]
        data.write_text(json.dumps(rows, indent=2))
        codes = {"baseline": checkout(args.baseline, Path(tmp) / "baseline"), "this tree": ROOT}
        print(
            f"bombs inflate to {args.bomb_mb} MiB; each case limited to {args.memory_mb} MB and {args.timeout_s:g} s"
        )
        print(f"{'case':<16} {'version':<10} {'wall s':>8} {'peak MB':>8}  outcome")
        for case in args.only.split(","):
            for version, code in codes.items():
                result = run_case(code, case, port, data, args)
                print(
                    f"{case:<16} {version:<10} {result['wall_s']:>8.2f} {result['peak_mb']:>8.0f}  {result['outcome']}",
                    flush=True,
                )
    server.shutdown()


if __name__ == "__main__":
    main()
