"""Detection quality: the world's truth (`world.truth`) joined with the filter's verdicts.

A trajectory is defective when the world planted a defect in it that is still in the recorded
data. A `format_error` the lenient reader or a re-ask mended before it reached the data (no
unreadable step) leaves nothing for a filter to catch, so it is not counted as a miss.
Every figure says how many trajectories carried a target box (`gold_region`), which the crop
check uses when present: real sets (V*, TreeBench) have them, open-web data does not.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from pipeline.schema import Trajectory
from pipeline.store import RunStore
from world.truth import planted_in, read_truth, truth_path


class ScoreError(ValueError):
    """A run that cannot be scored, with what to do about it."""


def surviving(defects: set[str], trajectory: Trajectory) -> list[str]:
    """The planted defects still present in the recorded trajectory."""
    left = set(defects)
    if "format_error" in left and not any(s.action == "invalid" for s in trajectory.steps):
        left.discard("format_error")
    return sorted(left)


def detection(rows: list[dict[str, Any]], defects: dict[str, list[str]]) -> dict[str, Any]:
    """Precision and recall of `passed=False` at catching trajectories with defects, per defect too.

    `rows`: filter rows (`trajectory_id`, `passed`); `defects`: trajectory id -> its defects."""
    bad = [r for r in rows if defects.get(r["trajectory_id"])]
    tp = sum(1 for r in bad if not r["passed"])
    fn = len(bad) - tp
    fp = sum(1 for r in rows if not defects.get(r["trajectory_id"]) and not r["passed"])
    per_defect: dict[str, dict[str, int]] = defaultdict(lambda: {"injected": 0, "caught": 0})
    for r in bad:
        for d in defects[r["trajectory_id"]]:
            per_defect[d]["injected"] += 1
            per_defect[d]["caught"] += not r["passed"]
    return {
        "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
        "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0,
        "defective": tp + fn,
        "clean": len(rows) - len(bad),
        "per_defect_recall": {
            d: round(v["caught"] / v["injected"], 4) for d, v in sorted(per_defect.items())
        },
    }


def run_defects(store: RunStore) -> tuple[dict[str, list[str]], int]:
    """Trajectory id -> surviving planted defects for every raw trajectory; and how many of them
    carried a target box."""
    path = truth_path(store.root)
    if not path.exists():
        raise ScoreError(
            f"{path} not found: only runs synthesised against the offline world (`trajforge synth` "
            "with world.enabled and no teacher.base_url) carry the world's truth"
        )
    truth = read_truth(path)
    defects: dict[str, list[str]] = {}
    boxes = 0
    for t in store.iter_records("raw", Trajectory):
        defects[t.trajectory_id] = surviving(planted_in(truth, t.task_id, t.rollout, t.trajectory_id), t)
        boxes += t.gold_region is not None
    return defects, boxes


def score_run(run_dir: str | Path) -> dict[str, Any]:
    """The detection figures of a filtered world run (what `trajforge world score` reports)."""
    store = RunStore(Path(run_dir))
    table = store.read_table("verdicts", columns=["trajectory_id", "passed"])
    if table is None:
        raise ScoreError(f"{store.root} has no verdicts; run `trajforge filter --run {store.root}` first")
    defects, boxes = run_defects(store)
    rows = table.to_pylist()
    return {
        **detection(rows, defects),
        "trajectories": len(rows),
        "target_boxes": boxes,
        "target_boxes_used": store.read_report().get("filter", {}).get("use_gold_region", True),
    }
