"""Teacher styles: does a run survive the way real servers answer and real models slip?

The same world tasks (default 40 x 2 rollouts) are synthesised and rule-filtered once per
teacher style, each through the real CLI, the real HTTP server and the real tools:

- canonical: the oracle's R1V4 text as it is (the baseline);
- reasoning_content / reasoning: thinking split off by a reasoning parser (vLLM, SGLang /
  OpenRouter), content holds only the action;
- native: native function calling (`teacher.tool_protocol=native`, tools sent as schemas);
- slips: formatting slips on about 30% of executor turns (every kind in pipeline.format.SLIPS);
- refusal+truncation: 5% of trajectories refused, 10% of turns cut at max_tokens;
- all: reasoning field + native calls + slips + streaming, together.

Printed per style, as ratios to canonical: trajectories answered, trajectories that pass every
check (kept before best-per-task selection), teacher
calls per kept trajectory; plus the measured share of slipped turns, repairs and re-asks.
Goals (issue 13): answered and kept >= 0.95 of canonical, calls per kept <= 1.1 of canonical,
for every style but refusal+truncation (whose losses are the point: refused rollouts are lost).

    python bench/bench_teacher_styles.py [--tasks 40] [--rollouts 2] [--slip-share 0.3] [--keep DIR]

What it does not show: the oracle writes each slip the way a model would, but a real model's
slips are not drawn independently per turn, and its content is not the oracle's gold path.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.format import SLIPS  # noqa: E402


def styles(slip_share: float) -> dict[str, list[str]]:
    """Style name -> `--set` overrides (world style and, where it matters, the client)."""
    per_kind = 1.0 - (1.0 - slip_share) ** (1.0 / len(SLIPS))
    style = "world.knobs.teacher_style"
    slips = f"{style}.slips={{all: {per_kind:.4f}}}"
    native = [f"{style}.tool_protocol=native", "teacher.tool_protocol=native"]
    return {
        "canonical": [],
        "reasoning_content": [f"{style}.reasoning_field=reasoning_content"],
        "reasoning": [f"{style}.reasoning_field=reasoning"],
        "native": native,
        "slips": [slips],
        "refusal+truncation": [f"{style}.refusal=0.05", f"{style}.truncate=0.1"],
        "all": [f"{style}.reasoning_field=reasoning_content", *native, slips, "teacher.stream=true"],
    }


def run_style(name: str, sets: list[str], args: argparse.Namespace, root: Path, world: Path) -> dict:
    run = root / name.replace("+", "_")
    common = [
        f"--set=world.dir={world}",
        f"--set=seeds.limit={args.tasks}",
        f"--set=synth.rollouts={args.rollouts}",
    ]
    common += [f"--set={s}" for s in sets]
    cli = [sys.executable, "-m", "pipeline.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.monotonic()
    for command in (["synth", "--no-ray"], ["filter"]):
        done = subprocess.run(
            [*cli, *command, "--run", str(run), *common], cwd=ROOT, env=env, capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"{name}: trajforge {command[0]} failed:\n{done.stderr[-3000:]}")
    report = json.loads((run / "report.json").read_text())
    synth, filt = report["synth"], report["filter"]
    executor = synth.get("executor", {})
    # every trajectory that passed the checks (before best-per-task selection, which would hide
    # a lost rollout behind its task's other rollout)
    kept = filt["passed_checks"]
    return {
        "trajectories": synth["trajectories"],
        "answered": synth.get("statuses", {}).get("answered", 0),
        "kept": kept,
        "calls": synth.get("teacher", {}).get("calls", 0),
        "turns": executor.get("turns", 0),
        "repaired_turns": executor.get("repaired_turns", 0),
        "reasks": executor.get("reasks", 0),
        "refusals": executor.get("refusals", 0),
        "truncations": executor.get("truncations", 0),
        "statuses": synth.get("statuses", {}),
        "seconds": round(time.monotonic() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--rollouts", type=int, default=2)
    parser.add_argument("--slip-share", type=float, default=0.3, help="share of executor turns with slips")
    parser.add_argument("--only", nargs="*", help="run only these styles (canonical always runs)")
    parser.add_argument("--keep", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="trajforge-styles-"))
    root.mkdir(parents=True, exist_ok=True)
    world = ROOT / "worlds" / "default"  # built once, shared (the default world: 300 entities, 200 tasks)
    chosen = styles(args.slip_share)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k == "canonical" or k in args.only}
    results = {}
    for name, sets in chosen.items():
        print(f"== {name}: {' '.join(sets) or '(oracle as it is)'}", flush=True)
        results[name] = run_style(name, sets, args, root, world)
        print(f"   {json.dumps(results[name])}", flush=True)
    base = results["canonical"]

    def ratio(value: float, reference: float) -> float:
        return round(value / reference, 3) if reference else float("nan")

    print(
        f"\n{args.tasks} tasks x {args.rollouts} rollouts per style, rules-only filter; ratios to canonical"
    )
    print(
        "| style | answered | kept | calls per kept | slipped/repaired turns | re-asks | refused | truncated |"
    )
    print("|---|---|---|---|---|---|---|---|")
    per_kept_base = base["calls"] / base["kept"] if base["kept"] else float("nan")
    for name, r in results.items():
        per_kept = r["calls"] / r["kept"] if r["kept"] else float("nan")
        share = r["repaired_turns"] / r["turns"] if r["turns"] else 0.0
        print(
            f"| {name} | {ratio(r['answered'], base['answered'])} | {ratio(r['kept'], base['kept'])} | "
            f"{ratio(per_kept, per_kept_base)} | {share:.2f} | {r['reasks']} | {r['refusals']} | {r['truncations']} |"
        )
    print(f"\nruns in {root}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
