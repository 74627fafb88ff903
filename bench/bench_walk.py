"""Walk benchmark: how hard and how well-formed `trajforge tasks walk --n N` questions are.

Runs the real command over the offline world (built in a temporary folder, or `--world`), then
reads every accepted task and measures, with the world's own local text search:
- clue alone first: the share of tasks where some hop's clue (its `property`), searched on its
  own, returns that hop's entity as the first hit (one clue gives the game away);
- question top 3: the share where the whole question, searched, has the answer's entity (the
  page that states the answer) among the first 3 hits;
- numeric answers: the share of gold answers that are numbers;
- grammar defects: doubled commas, a comma before "?", four or more "whose" in one question;
- the walk's own rejections by reason (report.json);
- with `--synth`: runs `trajforge synth` and `trajforge filter` on the walked tasks (the world's
  oracle as teacher) and counts the searches (text_search and image_search calls) of each kept
  multihop trajectory: the share with 5 or more, the spread, and the searches that came back
  without the entity they were after (the oracle searching in vain before it refines).

    python bench/bench_walk.py [--n 30] [--world DIR] [--keep DIR] [--hops 2..6] [--synth [--set K=V]]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.schema import Task, Trajectory
from pipeline.store import RunStore
from stages.tasks.walk.audit import audit
from stages.tools.search.text_index import LocalTextIndex
from world import build_world

FIGURES = {
    "clue_finds_entity": "one clue alone finds its entity first (share)",
    "question_finds_answer": "the whole question finds the answer's entity, top 3",
    "numeric_answers": "numeric answers",
    "grammar_defects": "grammar defects",
}


def measure(world: Path, run: Path) -> dict:
    tasks = RunStore(run).read_records("tasks", Task)
    index = LocalTextIndex(world / "corpus")
    found = audit(tasks, lambda query, k: [h.link for h in index.search(query, k)])
    report = json.loads((run / "report.json").read_text())["walk"]
    words = sorted(len(t.question.split()) for t in tasks) or [0]
    return {
        "tasks": len(tasks),
        **{key: found.share(key) for key in FIGURES},
        "median_words": words[len(words) // 2],
        "rejected": {k: v for k, v in report["rejected"].items() if v},
        "hop_candidates_rejected": report.get("hop_candidates_rejected", {}),
        "examples": found.examples,
        "sample": [t.question for t in tasks[:3]],
    }


SEARCH_TOOLS = ("text_search", "image_search")
DEEP = 5  # R1V4's enhanced questions need this many searches


def search_depth(run: Path, stage: str = "kept") -> dict:
    """Searches per kept multihop trajectory (derived plan samples left out): the share with
    `DEEP` or more, the count of each, and how many searches were refined (a search followed
    at once by another search for the same plan step)."""
    kept = [t for t in RunStore(run).read_records(stage, Trajectory) if t.category == "multihop"]
    counts: collections.Counter[int] = collections.Counter()
    refined = 0
    for trajectory in kept:
        calls = [s for s in trajectory.tool_calls if s.tool_name in SEARCH_TOOLS]
        counts[len(calls)] += 1
        refined += sum(
            1 for a, b in itertools.pairwise(trajectory.tool_calls)
            if a.tool_name == b.tool_name == "text_search" and a.plan_step is not None
            and a.plan_step == b.plan_step
        )  # fmt: skip
    deep = sum(n for searches, n in counts.items() if searches >= DEEP)
    return {"kept": len(kept), "deep_share": deep / len(kept) if kept else 0.0,
            "counts": dict(sorted(counts.items())), "refined": refined}  # fmt: skip


def synth_and_filter(world: Path, run: Path, extra: list[str]) -> tuple[str, str]:
    """`trajforge synth` then `trajforge filter` on the walked run, as a user runs them."""
    settings = ["--set", f"world.dir={world}", "--set", "world.tasks=8"]
    settings += [part for item in extra for part in ("--set", item)]
    lines = []
    for command in (
        ["synth", "--run", str(run), "--no-ray", *settings],
        ["filter", "--run", str(run), *settings],
    ):
        result = CliRunner().invoke(app, command)
        if result.exit_code != 0:
            sys.exit(f"trajforge {command[0]} failed:\n{result.output}")
        summary = re.findall(rf"{command[0]}: \d+ (?:trajectories|raw)[^\r\n]*", result.output)
        lines.append(summary[-1] if summary else "")
    return lines[0], lines[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--hops", default="2..6")
    parser.add_argument("--world", type=Path, default=None, help="a built world (default: build one)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run here")
    parser.add_argument("--synth", action="store_true", help="then synth and filter, count searches")
    parser.add_argument("--set", action="append", default=[], metavar="K=V",
                        help="a setting for synth and filter, e.g. world.knobs.refine=0")  # fmt: skip
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-walk-"))
    world = args.world or build_world(root / "world", seed=0, entities=300, tasks=8, progress=False)
    run = root / "run"
    result = CliRunner().invoke(
        app,
        ["tasks", "walk", "--run", str(run), "--n", str(args.n), "--hops", args.hops,
         "--set", f"world.dir={world}", "--set", "world.tasks=8"],
    )  # fmt: skip
    if result.exit_code != 0:
        sys.exit(f"tasks walk failed:\n{result.output}")
    print(result.output.strip().splitlines()[-2])
    figures = asyncio.run(asyncio.to_thread(measure, world, run))
    print(f"tasks walk --n {args.n} over the offline world: {figures['tasks']} tasks")
    for key, label in FIGURES.items():
        print(f"  {label:52s} {figures[key]:.2f}")
    print(f"  median words       {figures['median_words']}")
    print(f"  walks rejected     {figures['rejected']}")
    print(f"  hop candidates rejected {figures['hop_candidates_rejected']}")
    for key, text in figures["examples"].items():
        print(f"  e.g. {key}: {text}")
    for text in figures["sample"]:
        print(f"  sample: {text}")
    if args.synth:
        synth_line, filter_line = synth_and_filter(world, run, args.set)
        print(synth_line)
        print(filter_line)
        for stage in ("raw", "kept"):  # every rollout, then the best per task that the filter kept
            depth = search_depth(run, stage)
            print(f"{stage} multihop trajectories: {depth['kept']}")
            print(f"  with {DEEP} or more searches {depth['deep_share']:.2f}")
            print(f"  searches: count    {depth['counts']}")
            print(f"  refined searches   {depth['refined']}")


if __name__ == "__main__":
    main()
