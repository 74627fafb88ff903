"""Task folders: `tasks.jsonl` (one `Task` record a line) beside the images it names.

The offline world writes its tasks this way; seeds and eval read them here, as they would any
folder of tasks in trajforge's own record layout, so neither needs to know who wrote it.
"""

from __future__ import annotations

import collections
from pathlib import Path

from pipeline.schema import Task


def read_task_folder(folder: Path) -> list[Task]:
    """The folder's tasks, with `images` as absolute file paths."""
    folder = Path(folder).resolve()
    listing = folder / "tasks.jsonl"
    if not listing.is_file():
        raise FileNotFoundError(
            f"{folder} has no tasks.jsonl; build the world with `trajforge world build --out {folder}`"
        )
    tasks = [
        Task.model_validate_json(line) for line in listing.read_text("utf-8").splitlines() if line.strip()
    ]
    for task in tasks:
        task.images = [str(folder / rel) for rel in task.images]
    return tasks


def round_robin(tasks: list[Task]) -> list[Task]:
    """Interleave categories (stable), so `seeds.limit` takes a mix rather than the first kind."""
    by_category: dict[str, list[Task]] = collections.defaultdict(list)
    for task in tasks:
        by_category[task.category].append(task)
    queues = [collections.deque(group) for group in by_category.values()]
    out: list[Task] = []
    while queues:
        out.extend(queue.popleft() for queue in queues)
        queues = [queue for queue in queues if queue]
    return out


def world_task_order(world_dir: Path) -> list[Task]:
    """The world's tasks in the order seeds take them (`seeds.limit` takes the first N): the
    rest are held out, which is what eval scores a student trained on the first N with."""
    return round_robin(read_task_folder(world_dir))
