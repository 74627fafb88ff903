"""Seeds -> tasks: read seed rows, normalise them into `Task` records, write `RUN/tasks/`.

Sources: the offline world (`seeds.source: world`), or rows read by the one reader seeds and eval
share (`stages/readers/rows.py`): a Hub dataset or a local copy of one (`hub`: id, subset,
split, streamed), a local Hugging Face dataset folder (`hf`: `datasets.save_to_disk` output, or a
folder of parquet files), a parquet file, or a JSONL file whose image columns name files next to
it. A column mapping (our field -> source column path) comes from `seeds.columns`, on top of an
optional preset (`stages/tasks/presets.py`: common layouts and the seed sets R1V4 used).

Every image is copied into the run's content-addressed image store (tasks hold refs, tools and
the teacher read the store). Rows are streamed (bounded memory); a broken row is skipped with a
reason in the log and the summary, never fatal. Rows whose images are smaller than
`seeds.min_resolution` on either side are dropped (R1V4 kept >= 1024x1024 for thinking with
images), and repeats of a question + images are dropped.
"""

from __future__ import annotations

import collections
import io
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_args

from PIL import Image

from pipeline.config import Config, config_hash
from pipeline.images import ImageError
from pipeline.schema import Category, Task, stable_hash
from pipeline.store import RunStore
from stages.readers.cells import MISSING, SeedError, image_bytes, pick
from stages.readers.rows import HubSource, rows
from stages.readers.task_files import world_task_order
from stages.tasks.presets import PRESETS, READER_COLUMNS, Preset, preset, read_row

__all__ = ["PRESETS", "SeedError", "TaskStats", "image_bytes", "prepare_tasks", "world_task_order"]
#: Fields a mapping may name.
FIELDS = ("id", "image", "images", "question", "answer", "aliases", "category", "mode")
#: Optional fields read from same-named columns when no mapping names them.
_OPTIONAL_DEFAULTS = ("answer", "aliases", "category", "mode")
_CATEGORIES = set(get_args(Category))


@dataclass
class TaskStats:
    rows: int = 0
    written: int = 0
    already_written: int = 0
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: int = 0

    def summary(self) -> dict[str, Any]:
        return {**asdict(self), "dropped": dict(self.dropped)}


# --------------------------------------------------------------------------- reading sources


def column_map(cfg: Config) -> dict[str, str]:
    """Preset + explicit columns, checked against the known fields."""
    seeds = cfg.seeds
    mapping: dict[str, str] = {}
    chosen = preset(seeds.preset)
    if chosen is not None:
        mapping.update(READER_COLUMNS if chosen.reader else chosen.columns)
    mapping.update(seeds.columns)
    unknown = set(mapping) - set(FIELDS)
    if unknown:
        raise SeedError(f"seeds.columns has unknown fields {sorted(unknown)}; known fields: {list(FIELDS)}")
    if seeds.source != "world" and "question" not in mapping:
        mapping.setdefault("question", "question")
    if seeds.source != "world" and "image" not in mapping and "images" not in mapping:
        mapping["image"] = "image"
    for name in _OPTIONAL_DEFAULTS:
        mapping.setdefault(name, "?" + name)  # "?": used only when the row has that column
    return mapping


def hub_source(cfg: Config) -> HubSource:
    """Which Hub rows `seeds.source: hub` reads: the configured id, else the preset's Hub copy."""
    seeds = cfg.seeds
    chosen = preset(seeds.preset)
    where = seeds.path or (chosen.hub if chosen else None)
    if not where:
        raise SeedError(
            "seeds.source=hub needs seeds.path (a Hub id such as lmms-lab/FVQA, or a local copy)"
            + (f"; preset {seeds.preset} has no Hub copy" if chosen else " or a seeds.preset with a Hub copy")
        )
    if chosen and chosen.needs_subset and not seeds.subset and where == chosen.hub:
        raise SeedError(chosen.needs_subset)
    split = seeds.split or (chosen.split if chosen else "train")
    return HubSource(where, seeds.subset, split, seeds.streaming)


#: What a file named by `seeds.source: jsonl|parquet` holds, whatever its suffix.
_SOURCE_BUILDERS = {"jsonl": "json", "parquet": "parquet"}


def seed_source(cfg: Config) -> HubSource:
    """The rows the seeds config names, for the one reader (`stages/readers/rows.py`)."""
    seeds = cfg.seeds
    if seeds.source == "hub":
        return hub_source(cfg)
    if not seeds.path:
        raise SeedError(f"seeds.source={seeds.source} needs seeds.path (a folder or file of seeds)")
    if not Path(seeds.path).exists():
        raise SeedError(f"seeds.path {seeds.path} does not exist; point it at your seed dataset")
    if seeds.source == "jsonl" and Path(seeds.path).is_dir():
        raise SeedError(f"seeds.source=jsonl reads one file; seeds.path {seeds.path} is a folder")
    # no split: a folder's every parquet file, a save_to_disk folder's first split
    return HubSource(seeds.path, split=None, builder=_SOURCE_BUILDERS.get(seeds.source))


def iter_rows(cfg: Config) -> Iterator[tuple[str, dict[str, Any], Path]]:
    """(row id, row, folder relative paths resolve against), streamed from the source; a broken
    row comes as `{"__error__": why}`, so it costs that row only."""
    source = seed_source(cfg)
    base = source.base()
    for row in rows(source):
        yield row.where, row.data if row.data is not None else {"__error__": row.error}, base


def _answers(value: Any) -> tuple[str | None, list[str]]:
    if value is None:
        return None, []
    if isinstance(value, list | tuple):
        texts = [str(v) for v in value if v is not None and str(v).strip()]
        counts = collections.Counter(texts)
        ordered = [t for t, _ in counts.most_common()]
        return (ordered[0], ordered[1:]) if ordered else (None, [])
    return str(value), []


# ------------------------------------------------------------------------------ normalising


class TaskBuilder:
    """Turns seed rows into tasks: images into the store, filters, dedupe."""

    def __init__(self, cfg: Config, store: RunStore):
        self.cfg, self.store = cfg, store
        self.mapping = column_map(cfg)
        self.preset: Preset | None = preset(cfg.seeds.preset)
        where = hub_source(cfg).id if cfg.seeds.source == "hub" else Path(cfg.seeds.path or "").name
        self.source = f"{cfg.seeds.source}:{where}"
        self._seen: set[str] = set()
        self._rows = 0

    def _store_image(self, data: bytes, where: str) -> str:
        minimum = self.cfg.seeds.min_resolution
        try:
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
        except Exception as exc:
            raise SeedError(f"{where}: not a readable image ({exc})") from None
        if minimum and min(width, height) < minimum:
            raise _Dropped("below_min_resolution")
        try:
            return self.store.images.put_bytes(data)
        except ImageError as exc:
            raise SeedError(f"{where}: {exc}") from None

    def build(self, row_id: str, row: dict[str, Any], base: Path) -> Task:
        """A task from one row; SeedError (broken) or _Dropped (filtered) otherwise."""
        chosen = self.preset
        if chosen is not None and chosen.reader and "__error__" not in row:
            row = read_row(chosen, row, self._rows, base)  # the benchmark reader owns the format
        self._rows += 1
        if "__error__" in row:
            raise SeedError(f"{row_id}: {row['__error__']}")
        m = self.mapping

        def get(name: str) -> Any:
            column = m.get(name)
            if column is None:
                return None
            optional = column.startswith("?")
            value = pick(row, column.lstrip("?"))
            if value is MISSING:
                if optional:
                    return None
                raise SeedError(
                    f"{row_id}: column {column!r} (for {name}) missing; columns: {sorted(row)[:12]}"
                )
            return value

        question = get("question")
        if not isinstance(question, str) or not question.strip():
            raise SeedError(f"{row_id}: empty or non-text question")
        if len(question) > self.cfg.seeds.max_question_chars:
            raise SeedError(
                f"{row_id}: the question has {len(question)} characters, over seeds.max_question_chars="
                f"{self.cfg.seeds.max_question_chars}; shorten it or raise the limit"
            )
        cells = get("images") if "images" in m else [get("image")]
        if cells is None or (isinstance(cells, list) and any(c is None for c in cells)):
            raise SeedError(f"{row_id}: no image")
        if not isinstance(cells, list):
            cells = [cells]
        refs = [self._store_image(image_bytes(c, base), f"{row_id} image {i}") for i, c in enumerate(cells)]
        answer, aliases = _answers(get("answer"))
        if isinstance(get("aliases"), list):
            aliases += [str(a) for a in get("aliases") if str(a) not in aliases]
        category = get("category") or self.cfg.seeds.category or (chosen and chosen.category) or "other"
        mode = get("mode") or self.cfg.seeds.mode or (chosen and chosen.mode) or "deepresearch"
        if category not in _CATEGORIES:
            raise SeedError(f"{row_id}: category {category!r} is not one of {sorted(_CATEGORIES)}")
        if mode not in ("deepresearch", "general"):
            raise SeedError(f"{row_id}: mode {mode!r} must be deepresearch or general")
        source_id = str(get("id")) if "id" in m else row_id
        return Task(
            source=self.source,
            source_id=source_id,
            category=category,
            mode=mode,
            question=question.strip(),
            images=refs,
            gold_answer=answer,
            answer_aliases=aliases,
        )

    def is_duplicate(self, task: Task) -> bool:
        key = stable_hash(" ".join(task.question.lower().split()), task.images)
        if key in self._seen:
            return True
        self._seen.add(key)
        return False


class _Dropped(Exception):
    """A row filtered out on purpose (not an error); the argument is the reason."""


def _world_tasks(cfg: Config, store: RunStore) -> Iterator[tuple[str, Task | Exception]]:
    for task in world_task_order(Path(cfg.world.dir)):
        try:
            refs = [store.images.put_file(path) for path in task.images]
        except (ImageError, OSError) as exc:
            yield task.task_id, SeedError(f"world task {task.task_id}: {exc}")
            continue
        if cfg.seeds.category and task.category != cfg.seeds.category:
            yield task.task_id, _Dropped("category")
            continue
        # keep the world's id (its gold files refer to it); images become store refs
        yield task.task_id, task.model_copy(update={"images": refs})


def _seed_tasks(cfg: Config, store: RunStore) -> Iterator[tuple[str, Task | Exception]]:
    builder = TaskBuilder(cfg, store)
    image_root = Path(cfg.seeds.image_root) if cfg.seeds.image_root else None
    for row_id, row, folder in iter_rows(cfg):
        base = image_root or folder
        try:
            task = builder.build(row_id, row, base)
        except (SeedError, _Dropped) as exc:
            yield row_id, exc
            continue
        except Exception as exc:  # an unexpected row shape is still one row's problem
            yield row_id, SeedError(f"{row_id}: {type(exc).__name__}: {exc}")
            continue
        if cfg.seeds.dedupe and builder.is_duplicate(task):
            yield row_id, _Dropped("duplicate")
            continue
        yield row_id, task


def seeds_fingerprint(cfg: Config) -> str:
    """What the tasks stage depends on: a rerun with the same seeds config skips the stage."""
    return stable_hash(cfg.seeds.model_dump(mode="json"), cfg.world.model_dump(mode="json"), length=12)


def prepare_tasks(cfg: Config, store: RunStore, log: logging.Logger, *, batch: int = 256) -> TaskStats:
    """Write `RUN/tasks/` from the configured seeds (resumable; complete runs are skipped)."""
    stats = TaskStats()
    report = store.read_report().get("tasks", {})
    walked = report.get("complete") and report.get("source") == "walk"  # `tasks walk` was this run's seeds
    if walked or (report.get("complete") and report.get("fingerprint") == seeds_fingerprint(cfg)):
        stats.already_written = int(report.get("written", 0)) + int(report.get("already_written", 0))
        return stats
    written = store.written_ids("tasks", "task_id")
    source = _world_tasks(cfg, store) if cfg.seeds.source == "world" else _seed_tasks(cfg, store)
    pending: list[Task] = []
    kept = 0
    for row_id, item in source:
        if cfg.seeds.limit is not None and kept >= cfg.seeds.limit:
            break
        stats.rows += 1
        if isinstance(item, _Dropped):
            stats.dropped[str(item.args[0])] += 1
            continue
        if isinstance(item, Exception):
            stats.errors += 1
            log.warning("seed %s skipped: %s", row_id, item)
            continue
        kept += 1
        if item.task_id in written:
            stats.already_written += 1
            continue
        written.add(item.task_id)
        pending.append(item)
        if len(pending) >= batch:
            store.write_records("tasks", pending, Task, prefix="tasks")
            stats.written += len(pending)
            pending = []
    if pending:
        store.write_records("tasks", pending, Task, prefix="tasks")
        stats.written += len(pending)
    store.update_report(
        "tasks",
        {
            **stats.summary(),
            "complete": True,
            "fingerprint": seeds_fingerprint(cfg),
            "config": config_hash(cfg),
        },
    )
    return stats
