"""Teacher styles: does a run survive the way real servers answer and real models slip?

The same world tasks (default 40 x 2 rollouts) are synthesised and filtered once per teacher
style, each through the real CLI, real HTTP and the real tools. The teacher is a world server
this bench starts (the oracle, its replies shaped by the style's knobs); `synth` serves the
world's web pages and seeds as always and sends its teacher calls there. Each run is filtered
twice: rules only, and with the teacher's judges (`--judge teacher`, the same server).

Styles:
- canonical: the oracle's R1V4 text as it is (the baseline of the text protocol);
- reasoning_content / reasoning: thinking split off by a reasoning parser (vLLM, SGLang /
  OpenRouter), content holds only the action;
- native: native function calling (the baseline of the native protocol);
- slips: formatting slips on about 30% of executor turns (every kind in pipeline.format.SLIPS);
- refusal+truncation: 5% of trajectories refused, 10% of turns cut at max_tokens;
- all: reasoning field + native calls + slips + streaming, together;
- mixed / mixed+native: what a fleet of real endpoints does at once (issue 25): per
  conversation the server shape is drawn (plain text, reasoning_content, reasoning, or a
  thinking model served without a reasoning parser, whose turns open inside the think); per
  turn, clustered (a conversation that slipped keeps slipping, x3): formatting slips, leaked
  template tokens (GLM-4.5V's answer box, end-of-turn markers), two calls in one turn, a call
  made before the think closed, a draft call quoted in the think, replies cut at max_tokens,
  replies without `usage`; 429 / 503 / dropped connections; judges that answer in one
  sentence, in prose around JSON, or (the first time) not at all. mixed+native also streams.

Printed per style, as ratios to its protocol's baseline (canonical for text styles, native for
native ones): trajectories answered; trajectories passing every rule check, and passing with
judges (kept before best-per-task selection, which would hide a lost rollout behind its task's
other rollout); teacher calls (synthesis replies received: re-asks count, attempts refused with
429/503 or dropped before a reply do not and are listed apart) per such trajectory; plus what
reading took:
normalised / repaired turns, re-asks, cut calls, replies without usage, judge verdicts by the
way they were read. Goals (issue 25, mixed styles): rules >= 0.95, judges >= 0.9, calls per
kept <= 1.1 of the baseline.

    python bench/bench_teacher_styles.py [--tasks 40] [--rollouts 2] [--only mixed mixed+native] [--keep DIR]

What it does not show: the oracle writes each behaviour the way a model would, but its content
is the oracle's gold path, so a real model's own mistakes (wrong reasoning, bad crops) are not
here; and the rates of each behaviour are this bench's choice, not measured from a real fleet.
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.format import SLIPS  # noqa: E402
from world import Knobs, WorldServer  # noqa: E402

NATIVE = ["teacher.tool_protocol=native"]


def _per_kind(share: float) -> float:
    """The per-kind slip rate that slips `share` of turns with at least one kind."""
    return round(1.0 - (1.0 - share) ** (1.0 / len(SLIPS)), 4)


def mixed_knobs(slip_share: float) -> dict[str, Any]:
    """Every behaviour at once, clustered, with errors: what the mixed styles serve."""
    return {
        "teacher_style": {
            "mixed": True,
            "cluster": 3.0,
            "slips": {"all": _per_kind(slip_share)},
            "special_tokens": 0.15,
            "two_calls": 0.05,
            "reasoning_only": 0.05,
            "quoted_call": 0.1,
            "truncate": 0.05,
            "no_usage": 0.2,
            "judge_sentence": 0.5,
            "judge_vague": 0.1,
            "judge_prose": 0.2,
        },
        "errors": {"429": 0.03, "503": 0.02, "drop": 0.02},
        "retry_after_s": 0.1,
    }


def styles(slip_share: float) -> dict[str, tuple[dict[str, Any], list[str]]]:
    """Style name -> (world knobs of the teacher server, client `--set` overrides)."""
    slips = {"slips": {"all": _per_kind(slip_share)}}
    return {
        "canonical": ({}, []),
        "reasoning_content": ({"teacher_style": {"reasoning_field": "reasoning_content"}}, []),
        "reasoning": ({"teacher_style": {"reasoning_field": "reasoning"}}, []),
        "native": ({"teacher_style": {"tool_protocol": "native"}}, NATIVE),
        "slips": ({"teacher_style": slips}, []),
        "refusal+truncation": ({"teacher_style": {"refusal": 0.05, "truncate": 0.1}}, []),
        "all": (
            {"teacher_style": {"reasoning_field": "reasoning_content", "tool_protocol": "native", **slips}},
            [*NATIVE, "teacher.stream=true"],
        ),
        "mixed": (mixed_knobs(slip_share / 3), []),
        "mixed+native": (
            _native(mixed_knobs(slip_share / 3)),
            [*NATIVE, "teacher.stream=true"],
        ),
    }


def _native(knobs: dict[str, Any]) -> dict[str, Any]:
    return {**knobs, "teacher_style": {**knobs["teacher_style"], "tool_protocol": "native"}}


def _cli(run: Path, command: list[str], common: list[str], name: str) -> None:
    cli = [sys.executable, "-m", "pipeline.cli"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [*cli, *command, "--run", str(run), *common], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{name}: trajforge {command[0]} failed:\n{done.stderr[-3000:]}")


def run_style(
    name: str,
    knobs: dict[str, Any],
    sets: list[str],
    args: argparse.Namespace,
    root: Path,
    server: WorldServer,
) -> dict[str, Any]:
    server.set_knobs(Knobs(**knobs))
    run = root / name.replace("+", "_")
    common = [
        f"--set=world.dir={args.world}",
        f"--set=seeds.limit={args.tasks}",
        f"--set=synth.rollouts={args.rollouts}",
        f"--set=teacher.base_url={server.openai_base_url}",
        *[f"--set={s}" for s in sets],
    ]
    start = time.monotonic()
    _cli(run, ["synth", "--no-ray"], common, name)
    _cli(run, ["filter", "--no-progress"], common, name)
    rules = json.loads((run / "report.json").read_text())
    _cli(run, ["filter", "--no-progress", "--judge", "teacher"], common, name)
    judged = json.loads((run / "report.json").read_text())
    synth, executor = rules["synth"], rules["synth"].get("executor", {})
    teacher = synth.get("teacher", {})
    failed = sum(v for k, v in teacher.items() if k.startswith("errors."))  # 429/503/dropped attempts
    verdicts = judged["filter"].get("judge_verdicts", {})
    return {
        "trajectories": synth["trajectories"],
        "answered": synth.get("statuses", {}).get("answered", 0),
        "kept_rules": rules["filter"]["passed_checks"],
        "kept_judges": judged["filter"]["passed_checks"],
        "calls": teacher.get("calls", 0) - failed,  # replies received (what a teacher bills)
        "failed_attempts": failed,
        "retries": teacher.get("retries", 0),
        "turns": executor.get("turns", 0),
        "normalised_turns": executor.get("normalised_turns", 0),
        "repaired_turns": executor.get("repaired_turns", 0),
        "reasks": executor.get("reasks", 0),
        "cut_calls": executor.get("cut_calls", 0),
        "no_usage": executor.get("estimated_token_replies", 0),
        "refusals": executor.get("refusals", 0),
        "truncations": executor.get("truncations", 0),
        "judge_read": verdicts.get("read_by", {}),
        "judge_reasks": verdicts.get("reasks", 0),
        "statuses": synth.get("statuses", {}),
        "drops_rules": rules["filter"].get("drops_by_check", {}),
        "drops_judges": judged["filter"].get("drops_by_check", {}),
        "seconds": round(time.monotonic() - start, 1),
    }


def _ratio(value: float, reference: float) -> float:
    return round(value / reference, 3) if reference else float("nan")


def _per(calls: int, kept: int) -> float:
    return calls / kept if kept else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--rollouts", type=int, default=2)
    parser.add_argument("--slip-share", type=float, default=0.3, help="share of executor turns with slips")
    parser.add_argument("--only", nargs="*", help="run only these styles (their baselines always run)")
    parser.add_argument("--world", type=Path, default=ROOT / "worlds" / "default", help="a built world")
    parser.add_argument("--keep", type=Path, help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="trajforge-styles-"))
    root.mkdir(parents=True, exist_ok=True)
    chosen = styles(args.slip_share)
    if args.only:
        native = any(chosen[s][1][:1] == NATIVE for s in args.only)
        wanted = {"canonical", *args.only, *(["native"] if native else [])}
        chosen = {k: v for k, v in chosen.items() if k in wanted}
    results: dict[str, dict[str, Any]] = {}
    with WorldServer(args.world) as server:
        for name, (knobs, sets) in chosen.items():
            print(f"== {name}: knobs {json.dumps(knobs)} {' '.join(sets)}", flush=True)
            results[name] = run_style(name, knobs, sets, args, root, server)
            print(f"   {json.dumps(results[name])}", flush=True)

    print(
        f"\n{args.tasks} tasks x {args.rollouts} rollouts per style; ratios to the protocol's baseline "
        "(canonical: text, native: native tool calls)"
    )
    print(
        "| style | answered | pass rules | pass rules+judges | calls/kept (rules) | calls/kept (judges) "
        "| normalised / repaired turns | re-asks | cut calls | no usage | failed attempts "
        "| judge verdicts json/prose/reask/unknown |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        base = results["native" if chosen[name][1][:1] == NATIVE and "native" in results else "canonical"]
        turns = max(r["turns"], 1)
        read = r["judge_read"]
        print(
            f"| {name} | {_ratio(r['answered'], base['answered'])} | {_ratio(r['kept_rules'], base['kept_rules'])} "
            f"| {_ratio(r['kept_judges'], base['kept_judges'])} "
            f"| {_ratio(_per(r['calls'], r['kept_rules']), _per(base['calls'], base['kept_rules']))} "
            f"| {_ratio(_per(r['calls'], r['kept_judges']), _per(base['calls'], base['kept_judges']))} "
            f"| {r['normalised_turns'] / turns:.2f} / {r['repaired_turns'] / turns:.2f} | {r['reasks']} "
            f"| {r['cut_calls']} | {r['no_usage']} | {r['failed_attempts']} "
            f"| {read.get('json', 0)}/{read.get('prose', 0)}/{read.get('reask', 0)}/{read.get('unknown', 0)} |"
        )
    print(f"\nruns in {root}")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
