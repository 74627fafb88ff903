"""Viewer at scale: time to the first list page at 30,000 vs 300 trajectories, and site size.

Builds two synthetic filtered runs (raw/ shards of Trajectory records, a verdicts/ table with
every check's column, a kept/ set) through the run store, then for each:
  - index: `RunData.entries` (what `trajforge view` does once at start),
  - first list page: a fresh loopback server answers `list.html` + the first index chunk (what a
    browser needs before it shows rows), median of a few tries on fresh servers,
  - a trajectory page (one record from its shard),
and writes the 300-trajectory run as a static site to report bytes per trajectory.
The list page is flat when the ratio of first-page times 30,000 / 300 is <= 2.

    python bench/bench_view.py [--small 300] [--large 30000] [--tries 5]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pyarrow as pa
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from filters.run_checks import build_checks, verdict_schema
from pipeline.schema import Step, Trajectory
from pipeline.store import RunStore
from pipeline.view.data import RunData
from pipeline.view.server import serve_in_thread
from pipeline.view.site import Site

SHARD = 2000
CATEGORIES = ("perception", "search", "interleaved", "multihop")


def _images(store: RunStore, n: int = 24) -> list[str]:
    rng = random.Random(0)
    return [
        store.images.put_image(Image.effect_noise((320, 240), 40 + rng.random() * 40).convert("RGB"))
        for _ in range(n)
    ]


def _trajectory(i: int, refs: list[str]) -> Trajectory:
    crop = refs[(i * 7) % len(refs)]
    steps = [
        Step(index=0, think=f"Crop the region of interest in image {i}.", action="tool_call", tool_name="code",
             arguments=json.dumps({"code": f"img.crop(({i % 50}, 0, 200, 120)).save('crop.png')"}),
             observation_text="Saved crop.png <image>", observation_images=[crop], plan_step=1,
             teacher_latency_s=0.8, prompt_tokens=900, completion_tokens=60),
        Step(index=1, think="Search the web for it.", action="tool_call", tool_name="text_search",
             arguments=json.dumps({"queries": [f"landmark {i}"]}),
             observation_text="1. Landmark\n   Link: https://example.org/x\n   Snippet: built in 1899", plan_step=2,
             repairs=["unquoted_json"] if i % 11 == 0 else []),
        Step(index=2, think="The page says 1899.", action="answer", answer=str(1899 + i % 3)),
    ]  # fmt: skip
    return Trajectory(
        task_id=f"t-{i // 4:06d}", rollout=i % 4, teacher="teacher-a", prompt_version="v1",
        category=CATEGORIES[i % 4], question=f"When was the landmark in picture {i} built?",
        images=[refs[i % len(refs)]], gold_answer="1899", steps=steps, final_answer=str(1899 + i % 3),
        prompt_tokens=2700, completion_tokens=180, teacher_calls=3,
    )  # fmt: skip


def build_run(root: Path, n: int) -> float:
    """A filtered run of `n` trajectories; returns the seconds it took to write."""
    start = time.perf_counter()
    store = RunStore(root)
    refs = _images(store)
    checks = build_checks()
    rows, kept = [], []
    for first in range(0, n, SHARD):
        batch = [_trajectory(i, refs) for i in range(first, min(first + SHARD, n))]
        store.write_records("raw", batch, Trajectory)
        for t in batch:
            wrong = t.final_answer != t.gold_answer
            row = {c.name: {"keep": True, "score": 1.0, "reason": "", "steps": []} for c in checks}
            if wrong:
                row["answer"] = {"keep": False, "score": 0.0, "reason": f"step 2: wrong answer: '{t.final_answer}' vs gold '1899'",
                                 "steps": [{"step": 2, "ok": False, "reason": "wrong answer"}]}  # fmt: skip
            elif t.rollout:
                kept.append(t)
            rows.append({
                "trajectory_id": t.trajectory_id, "task_id": t.task_id, "category": t.category, "teacher": t.teacher,
                "source": "", "status": t.status, "tool_calls": 2, "injected_defects": [], "passed": not wrong,
                "score": 1.0, "keep": not wrong and bool(t.rollout), "reasons": [f"answer: {row['answer']['reason']}"]
                if wrong else ([] if t.rollout else ["best_per_task: ranks lower"]), **row,
            })  # fmt: skip
    store.write_table("verdicts", pa.Table.from_pylist(rows, schema=verdict_schema(checks)))
    for first in range(0, len(kept), SHARD):
        store.write_records("kept", kept[first : first + SHARD], Trajectory)
    return time.perf_counter() - start


def first_list_page(root: Path) -> tuple[float, float, float]:
    """(index s, first list page s, trajectory page s) on a fresh viewer, as `trajforge view` starts."""
    start = time.perf_counter()
    data = RunData(root)
    entries = data.entries
    index_s = time.perf_counter() - start
    server, url = serve_in_thread(Site(data))
    try:
        with httpx.Client(base_url=url) as client:
            start = time.perf_counter()
            html = client.get("/list.html")
            chunk = client.get("/data/list-0000.js")
            list_s = time.perf_counter() - start
            assert html.status_code == chunk.status_code == 200 and chunk.text.startswith("tfListChunk(0,")
            start = time.perf_counter()
            page = client.get(f"/t/{entries[len(entries) // 2].id}.html")
            page_s = time.perf_counter() - start
            assert page.status_code == 200
    finally:
        server.shutdown()
        server.server_close()
    return index_s, list_s, page_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=300)
    parser.add_argument("--large", type=int, default=30000)
    parser.add_argument("--tries", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.small, args.large):
            root = Path(tmp) / f"run{n}"
            built = build_run(root, n)
            timings = [first_list_page(root) for _ in range(args.tries)]
            results[str(n)] = {
                "build_run_s": round(built, 2),
                "index_s": round(statistics.median(t[0] for t in timings), 4),
                "first_list_page_s": round(statistics.median(t[1] for t in timings), 4),
                "trajectory_page_s": round(statistics.median(t[2] for t in timings), 4),
            }
            print(f"{n:>6} trajectories: {json.dumps(results[str(n)])}", flush=True)
        site = Site(RunData(Path(tmp) / f"run{args.small}")).write(Path(tmp) / "site")
        images = sum(p.stat().st_size for p in (Path(tmp) / "site" / "img").iterdir())
    small, large = results[str(args.small)], results[str(args.large)]
    ratio = large["first_list_page_s"] / small["first_list_page_s"]
    summary = {
        "first_list_page_ratio": round(ratio, 2),
        "flat": ratio <= 2,
        "index_s_per_1k": round(large["index_s"] / args.large * 1000, 4),
        "trajectory_page_ratio": round(large["trajectory_page_s"] / small["trajectory_page_s"], 2),
        "site_bytes_per_trajectory": site["bytes_per_trajectory"],
        "site_bytes_per_trajectory_without_images": round((site["bytes"] - images) / site["trajectories"]),
        "site_write_s_per_trajectory": round(site["wall_s"] / site["trajectories"], 4),
    }
    print(
        f"first list page: {large['first_list_page_s'] * 1000:.1f} ms at {args.large} vs "
        f"{small['first_list_page_s'] * 1000:.1f} ms at {args.small} -> ratio {ratio:.2f} "
        f"({'flat' if ratio <= 2 else 'NOT flat'}, <= 2); index {large['index_s']:.2f}s once at start; "
        f"static site {site['bytes_per_trajectory'] / 1e3:.1f} kB per trajectory "
        f"({summary['site_bytes_per_trajectory_without_images'] / 1e3:.1f} kB without images)"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
