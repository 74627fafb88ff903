"""Local seed and benchmark reading: this tree against a baseline commit, in one run.

Each case runs in a fresh interpreter per code version (so lazy imports such as `datasets` count
once, as in a real run), on the same files:
- demo-jsonl: the offline world's 200 tasks (`worlds/default/tasks.jsonl`, image paths relative
  to the file) read as `seeds.source: jsonl`;
- parquet-10k: a 10,000-row parquet (an image struct, question, answer) as `seeds.source: parquet`;
- saved-10k: the same rows as a `save_to_disk` folder, `seeds.source: hf`;
- hub-10k, hub-nostream: the parquet as a local copy, `seeds.source: hub`, streamed and not;
- eval-10k: the same rows as an MMSearch end2end parquet through `load_items` (eval `--data`).
For each: rows read and the CPU seconds of reading them (process CPU, imports included, best of
--repeat); for the seed cases the CPU of the whole tasks stage (images into the store) in a
process of its own; peak RSS, whether torch got imported, and the bytes left in `datasets`'
cache (`HF_DATASETS_CACHE` pointed at an empty folder; streaming leaves empty lock files).

    python bench/bench_readers.py [--baseline REV] [--world worlds/default] [--repeat 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: main before one reader served seeds and eval
BASELINE = "63d3af4"

CHILD = r"""
import json, logging, resource, sys
from pathlib import Path

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

case, mode, data, run_root = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
from pipeline.config import load_config
sets = {
    "demo-jsonl": ["seeds.source=jsonl", f"seeds.path={data / 'tasks.jsonl'}",
                   'seeds.columns={"images": "images", "answer": "gold_answer", "id": "source_id"}'],
    "parquet-10k": ["seeds.source=parquet", f"seeds.path={data / 'seeds.parquet'}"],
    "saved-10k": ["seeds.source=hf", f"seeds.path={data / 'saved'}"],
    "hub-10k": ["seeds.source=hub", f"seeds.path={data / 'seeds.parquet'}"],
    "hub-nostream": ["seeds.source=hub", f"seeds.path={data / 'seeds.parquet'}", "seeds.streaming=false"],
}
out = {}
if case == "eval-10k":
    from stages.evaluate.benchmarks import BadRow, load_items
    start = cpu()
    items = list(load_items(data / "end2end.parquet", "mmsearch"))
    out["read_cpu"] = cpu() - start
    out["rows"] = len(items)
    out["bad"] = sum(isinstance(i, BadRow) for i in items)
else:
    from stages.tasks.seeds import iter_rows, prepare_tasks
    from pipeline.store import RunStore
    cfg = load_config(None, [f"run.root={run_root}", "run.name=r", "seeds.limit=null", *sets[case]])
    if mode == "read":
        start = cpu()
        out["rows"] = sum(1 for _ in iter_rows(cfg))
        out["read_cpu"] = cpu() - start
    else:
        start = cpu()
        out["written"] = prepare_tasks(cfg, RunStore(cfg.run.dir), logging.getLogger("bench")).written
        out["stage_cpu"] = cpu() - start
out["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out["torch_imported"] = "torch" in sys.modules
print(json.dumps(out))
"""


def _png(shade: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (shade % 256, shade // 256 % 256, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def make_data(folder: Path, world: Path, n: int = 10_000) -> None:
    """The demo world's tasks beside their images (a link), and n-row parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if (world / "tasks.jsonl").exists():
        for name in ("tasks.jsonl", "scenes"):
            (folder / name).symlink_to((world / name).resolve())
    images = [{"bytes": _png(i), "path": None} for i in range(n)]
    questions = [f"What is shown in picture {i}?" for i in range(n)]
    answers = [f"thing {i}" for i in range(n)]
    seeds = pa.table({"image": images, "question": questions, "answer": answers})
    pq.write_table(seeds, folder / "seeds.parquet")
    import datasets

    datasets.disable_progress_bars()
    datasets.Dataset(seeds).save_to_disk(str(folder / "saved"))
    end2end = {
        "sample_id": [f"s{i}" for i in range(n)],
        "query": questions,
        "query_image": images,
        "area": ["news"] * n,
        "gt_answer": answers,
        "alternative_gt_answers": [[a.upper()] for a in answers],
    }
    pq.write_table(pa.table(end2end), folder / "end2end.parquet")


def checkout(rev: str, target: Path) -> Path:
    """The tree at `rev`, unpacked into `target`."""
    target.mkdir()
    archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def measure(code: Path, case: str, mode: str, data: Path) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "hf-datasets-cache"
        cache.mkdir()
        env = {**os.environ, "PYTHONPATH": str(code), "HF_DATASETS_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, case, mode, str(data), str(Path(scratch) / "runs")],
            cwd=code,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        result["cache_bytes"] = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--world", type=Path, default=ROOT / "worlds" / "default")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    cases = ["demo-jsonl", "parquet-10k", "saved-10k", "hub-10k", "hub-nostream", "eval-10k"]
    if not (args.world / "tasks.jsonl").exists():
        print(
            f"demo-jsonl skipped: no {args.world}/tasks.jsonl (make synth builds the world, or pass --world)"
        )
        cases.remove("demo-jsonl")
    print(f"load average at start: {Path('/proc/loadavg').read_text().split()[:3]}")
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch)
        make_data(data, args.world)
        codes = {"baseline": checkout(args.baseline, data / "baseline"), "this tree": ROOT}
        for case in cases:
            for label, code in codes.items():
                reads = [measure(code, case, "read", data) for _ in range(args.repeat)]
                best = min(reads, key=lambda r: r["read_cpu"])
                line = f"{case:12s} {label:10s} rows {best['rows']:6d}  read CPU {best['read_cpu']:.3f} s"
                if case != "eval-10k":
                    stages = [measure(code, case, "stage", data) for _ in range(args.repeat)]
                    stage = min(stages, key=lambda r: r["stage_cpu"])
                    line += f"  tasks stage CPU {stage['stage_cpu']:.3f} s ({stage['written']} tasks)"
                    reads += stages
                print(
                    line
                    + f"  peak RSS {max(r['max_rss_mb'] for r in reads):.0f} MB"
                    + f"  torch imported {any(r['torch_imported'] for r in reads)}"
                    + f"  datasets cache {max(r['cache_bytes'] for r in reads)} B"
                )
    print(f"load average at end: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
