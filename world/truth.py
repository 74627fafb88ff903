"""The world's truth, kept beside the run: which defects it planted in which rollout.

The server appends one JSON line per executor reply that carries a planned defect to
`RUN/world/truth.jsonl`: `{"task_id", "salt", "defects", "injected"}`, where `salt` is the
request's rollout salt (`seed=N` or `user=TRAJECTORY_ID`, see `oracle.salt_of`), `defects` the
defects planned for that rollout and `injected` those injected in that very turn. The core never
reads it (a trajectory carries no simulator truth); `trajforge world score RUN` joins it with
the filter's verdicts. Appending keeps a resumed run's truth: replies served from the replay
cache never reach the world again, but their rows are already in the file.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path

TRUTH_FILE = Path("world") / "truth.jsonl"


def truth_path(run_dir: str | Path) -> Path:
    """Where a run's world truth lives."""
    return Path(run_dir) / TRUTH_FILE


class TruthLog:
    """Thread-safe appender of truth rows (the server's handlers run in several threads)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()

    def write(self, task_id: str | None, salt: str, defects: list[str], injected: list[str]) -> None:
        if not task_id or not (defects or injected):
            return
        row = {"task_id": task_id, "salt": salt, "defects": defects, "injected": injected}
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")


def read_truth(path: str | Path) -> dict[tuple[str, str], set[str]]:
    """(task id, rollout salt) -> the defects planted in that rollout; unreadable lines skipped."""
    planted: dict[tuple[str, str], set[str]] = defaultdict(set)
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
            planted[(str(row["task_id"]), str(row["salt"]))].update(map(str, row["defects"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a killed server
    return dict(planted)


def planted_in(
    truth: dict[tuple[str, str], set[str]], task_id: str, rollout: int, trajectory_id: str
) -> set[str]:
    """The defects planted in one trajectory, whichever salt its requests carried."""
    return truth.get((task_id, f"seed={rollout}"), set()) | truth.get(
        (task_id, f"user={trajectory_id}"), set()
    )
