"""What every importer shares: the record a reader builds, images, tools, rollouts, the write loop.

A reader (one module per published format) turns one source record into an `ImportRecord`: the
question, its images, the gold answer, the declared tools and one `Turn` per assistant turn with
the observation that answered it. Everything after that is here, once: image bytes go through the
guarded decoder into the run's image store, peers' tool names are mapped onto trajforge's
(`ToolMap`), rollouts of one question get distinct indices, and trajectories are written to
`raw/` in shards, resuming past ids already there. One broken record costs that record only; what
was dropped is counted with its reason.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.format import CALL_AND_ANSWER, IMAGE_MARKER, Turn, read_reply
from pipeline.images import ImageError, data_uri_bytes, is_data_uri
from pipeline.schema import Step, Trajectory, canonical_json, task_id_for, trajectory_id_for
from pipeline.store import RunStore

PROMPT_VERSION = "import"
CATEGORIES = {"perception", "search", "interleaved", "multihop", "general", "other"}
_DATA_URI_IN_TEXT = re.compile(r"data:image/[\w.+-]+;base64,[A-Za-z0-9+/=\s]+")
_ERROR_HINTS = ("Traceback (most recent call last)",)


class LineError(ValueError):
    """One unusable record; the message is what the user sees."""


# ------------------------------------------------------------------------------------- records


@dataclass
class ToolSpec:
    """A tool a record declares: its (mapped) name, the name it was declared under, its schema."""

    name: str
    declared_as: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "declared_as": self.declared_as, "parameters": self.parameters}


@dataclass
class Observation:
    text: str = ""
    images: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class ImportTurn:
    """One assistant turn as a reader found it, and the observation that answered it (if any)."""

    turn: Turn
    observation: Observation | None = None
    call_id: str | None = None


@dataclass
class ImportRecord:
    question: str
    turns: list[ImportTurn]
    images: list[str] = field(default_factory=list)
    gold: str | None = None
    aliases: list[str] = field(default_factory=list)
    source_id: str = ""
    rollout: int | None = None  # the record's own rollout index, when it names one
    tools: list[ToolSpec] = field(default_factory=list)
    teacher: str = ""
    mode: str = "deepresearch"
    category: str = "other"


# -------------------------------------------------------------------------------------- images


class Images:
    """Puts every image a record carries into the run's store (guarded decode), by reference.

    A value may be a data URI, a path (relative to the imported file, or absolute), or an object
    such as `{"bytes": ...}`, `{"path": ...}`, `{"url": ...}` or `{"image_url": {"url": ...}}`.
    """

    def __init__(self, store: RunStore, base: Path):
        self.store, self.base = store, base

    def ref(self, value: Any) -> str:
        try:
            return self._ref(value)
        except ImageError as exc:
            raise LineError(f"unreadable image: {exc}") from None

    def _ref(self, value: Any) -> str:
        if isinstance(value, Mapping):
            if isinstance(value.get("bytes"), (bytes, bytearray)) and value["bytes"]:
                return self.store.images.put_bytes(bytes(value["bytes"]))
            inner = value.get("image_url", value.get("url", value.get("path", value.get("image"))))
            if isinstance(inner, Mapping):
                inner = inner.get("url")
            return self._ref(inner)
        if not isinstance(value, str) or not value.strip():
            raise LineError(f"an image must be a path or a data URI, not {type(value).__name__}")
        value = value.strip()
        if is_data_uri(value):
            return self.store.images.put_bytes(data_uri_bytes(re.sub(r"\s+", "", value)))
        if value.startswith(("http://", "https://")):
            raise LineError(f"image {value[:80]!r} is a web address; download it and point to the file")
        path = (self.base / value).resolve()
        if not path.is_file():
            raise LineError(f"image {value!r} not found next to the imported file ({path})")
        return self.store.images.put_file(path)

    def refs(self, values: Any) -> list[str]:
        if values in (None, "", []):
            return []
        return [self.ref(v) for v in (values if isinstance(values, list) else [values])]

    def inline(self, text: str) -> tuple[str, list[str]]:
        """Text with each data URI in it stored and replaced by the image marker."""
        refs: list[str] = []

        def swap(match: re.Match[str]) -> str:
            refs.append(self.ref(match.group(0)))
            return IMAGE_MARKER

        return _DATA_URI_IN_TEXT.sub(swap, text), refs

    def observation(self, body: Any, extra: Iterable[Any] = ()) -> Observation:
        """A tool result in any shape: text, JSON text or an object (`{"result", "type", "images"}`,
        `{"text", "error"}`, OpenAI content parts); every image anywhere in it is kept, in order,
        with a marker in the text where it sat (or at the end when the shape gives no place).
        An unreadable image makes the observation a tool error, not a lost record."""
        try:
            return self._observation(body, extra)
        except LineError as exc:
            text = body if isinstance(body, str) else json.dumps(_without_images(body), ensure_ascii=False)
            return Observation(text=_without_images(text), error=f"unreadable image in observation: {exc}")

    def _observation(self, body: Any, extra: Iterable[Any]) -> Observation:
        if isinstance(body, str):
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            if isinstance(parsed, (dict, list)):
                body = parsed
        images: list[str] = []
        error: str | None = None
        if isinstance(body, dict):
            if body.get("error"):
                error = str(body["error"])
            main = next((body[k] for k in ("result", "text", "content", "output") if k in body), None)
            rest = {
                k: v for k, v in body.items() if k not in {"result", "text", "content", "output", "error"}
            }
            text = self._text_of(main, images) if main is not None else ""
            found = self._images_in(rest)
            images.extend(found)
            text += IMAGE_MARKER * len(found)
        elif isinstance(body, list):
            text = self._text_of(body, images)
        else:
            text = self._text_of("" if body is None else str(body), images)
        for value in extra:
            images.append(self.ref(value))
            text += IMAGE_MARKER
        if error is None and any(h in text for h in _ERROR_HINTS):
            error = text.strip().splitlines()[-1][:500]
        return Observation(text=text, images=images, error=error)

    def _text_of(self, value: Any, images: list[str]) -> str:
        """Text of an observation's main part (str, content parts or JSON), images swapped out."""
        if isinstance(value, str):
            text, refs = self.inline(value)
            images.extend(refs)
            return text
        if isinstance(value, list) and all(isinstance(p, dict) and "type" in p for p in value):
            parts = []
            for part in value:
                if part.get("type") == "text":
                    parts.append(self._text_of(str(part.get("text", "")), images))
                elif part.get("type") in ("image_url", "image"):
                    images.append(self.ref(part))
                    parts.append(IMAGE_MARKER)
            return "".join(parts)
        found = self._images_in(value)
        images.extend(found)
        return json.dumps(_without_images(value), ensure_ascii=False)

    def _images_in(self, value: Any) -> list[str]:
        if isinstance(value, str):
            return [self.ref(m.group(0)) for m in _DATA_URI_IN_TEXT.finditer(value)]
        if isinstance(value, dict):
            return [ref for v in value.values() for ref in self._images_in(v)]
        if isinstance(value, list):
            return [ref for v in value for ref in self._images_in(v)]
        return []


def _without_images(value: Any) -> Any:
    if isinstance(value, str):
        return _DATA_URI_IN_TEXT.sub(IMAGE_MARKER, value)
    if isinstance(value, dict):
        return {k: _without_images(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_images(v) for v in value]
    return value


def take_placeholders(text: str, queue: list[Any], images: Images, where: str) -> tuple[str, list[str]]:
    """Pop one entry of `queue` (the record's image list) per `<image>` in `text`, in order."""
    count = text.count(IMAGE_MARKER)
    if count > len(queue):
        raise LineError(f"{where}: {count} {IMAGE_MARKER} placeholders but only {len(queue)} images left")
    return text, [images.ref(queue.pop(0)) for _ in range(count)]


# --------------------------------------------------------------------------------------- tools

#: Peers' tool names -> (trajforge's name, argument renames). Formats add their own on top.
COMMON_TOOLS: dict[str, tuple[str, dict[str, str]]] = {
    "search": ("text_search", {"query": "queries"}),
    "web_search": ("text_search", {"query": "queries"}),
    "google_search": ("text_search", {"query": "queries"}),
    "text_search": ("text_search", {"query": "queries"}),
    "visit": ("web_visit", {"url": "urls"}),
    "web_visit": ("web_visit", {"url": "urls"}),
    "browse": ("web_visit", {"url": "urls"}),
    "image_search": ("image_search", {"image_path": "image_paths", "image_url": "image_paths"}),
    "reverse_image_search": ("image_search", {"image_path": "image_paths", "image_url": "image_paths"}),
    "code": ("code", {}),
    "python": ("code", {}),
    "python_interpreter": ("code", {}),
    "code_interpreter": ("code", {}),
    "execute_python": ("code", {}),
    "run_python": ("code", {}),
}


class ToolMap:
    """Maps a record's tool names (and argument names) onto trajforge's; `--tool-map a=b` wins.

    A tool trajforge does not have keeps its name, and the record's declared schema is what the
    format check holds its calls to.
    """

    def __init__(self, table: Mapping[str, tuple[str, dict[str, str]]], overrides: Mapping[str, str] = {}):
        self.table = {**COMMON_TOOLS, **table}
        self.overrides = dict(overrides)

    def name(self, name: str) -> str:
        if name in self.overrides:
            return self.overrides[name]
        return self.table.get(name, (name, {}))[0]

    def renames(self, name: str) -> dict[str, str]:
        if name in self.overrides and self.overrides[name] != self.table.get(name, (None,))[0]:
            return {}
        return self.table.get(name, (name, {}))[1]

    def arguments(self, name: str, arguments: dict[str, Any] | None) -> dict[str, Any] | None:
        if arguments is None:
            return None
        renames = self.renames(name)
        return {renames.get(k, k): v for k, v in arguments.items()}

    def spec(self, name: str, parameters: Any) -> ToolSpec:
        params = dict(parameters) if isinstance(parameters, Mapping) else {}
        renames = self.renames(name)
        if renames and isinstance(params.get("properties"), Mapping):
            params["properties"] = {renames.get(k, k): v for k, v in params["properties"].items()}
        if renames and isinstance(params.get("required"), list):
            params["required"] = [renames.get(k, k) for k in params["required"]]
        return ToolSpec(name=self.name(name), declared_as=name, parameters=params)

    def apply(self, turn: Turn) -> None:
        if turn.tool_name is not None:
            turn.arguments = self.arguments(turn.tool_name, turn.arguments)
            turn.tool_name = self.name(turn.tool_name)


def parse_tool_map(pairs: Iterable[str]) -> dict[str, str]:
    """`--tool-map a=b` options -> {a: b} (ValueError naming the bad option)."""
    out: dict[str, str] = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise ValueError(
                f"--tool-map {pair!r}: write it as PEER_NAME=TRAJFORGE_NAME, e.g. search=text_search"
            )
        out[source.strip()] = target.strip()
    return out


def tool_specs(declared: Any, tools: ToolMap) -> list[ToolSpec]:
    """Declared tools in the shapes peers write them: OpenAI `{"type": "function", "function":
    {...}}`, bare `{"name", "parameters"}`, Qwen-Agent `{"name_for_model", ...}`, or a JSON string."""
    if isinstance(declared, str):
        try:
            declared = json.loads(declared)
        except ValueError:
            return []
    if isinstance(declared, dict):
        declared = [declared]
    specs = []
    for item in declared if isinstance(declared, list) else []:
        if not isinstance(item, dict):
            continue
        item = item.get("function", item) if isinstance(item.get("function"), dict) else item
        name = item.get("name") or item.get("name_for_model")
        if isinstance(name, str) and name:
            specs.append(tools.spec(name, item.get("parameters", {})))
    return specs


# --------------------------------------------------------------------------------------- turns


def read_turn(text: str) -> Turn:
    """One assistant message written as text (think + one action), read by the one lenient reader."""
    return read_reply(text).turns[0]


_CODE_BLOCK = re.compile(r"<code>\s*(?:```[\w+-]*\n)?(.*?)(?:\n?```)?\s*</code>", re.DOTALL)
_THINK_TAGS = re.compile(r"</?think>")


def code_turn(text: str) -> Turn | None:
    """A turn whose action is a `<code>` block (Thyme, DeepEyesV2) as a call of `code`, or None.

    The prose before the block is the think (its `<think>` tags dropped; these formats leave the
    think open around the code). Text after the block that answers is the same defect as a call
    and an answer in one turn.
    """
    match = _CODE_BLOCK.search(text)
    if match is None:
        return None
    think = _THINK_TAGS.sub("", text[: match.start()]).strip()
    turn = Turn(
        think=think, tool_name="code", arguments={"code": match.group(1).strip("\n")}, raw=text, acted=True
    )
    if "<answer>" in text[match.end() :]:
        turn.errors.append(f"turn 0: {CALL_AND_ANSWER}")
    return turn


def gold_of(record: Mapping[str, Any]) -> tuple[str | None, list[str]]:
    """Gold answer and aliases wherever a format keeps them (`answer`, `gold_answer`, `solution`,
    `ground_truth`), including WebDancer's `answer: [[gold, alias, ...]]`."""
    for key in ("gold_answer", "answer", "solution", "ground_truth", "label"):
        value = record.get(key)
        if value in (None, "", []):
            continue
        flat = list(_flatten(value))
        if flat:
            aliases = flat[1:] + [str(a) for a in record.get("answer_aliases") or []]
            return flat[0], list(dict.fromkeys(aliases))
    return None, []


def _flatten(value: Any) -> Iterator[str]:
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _flatten(item)
    elif value is not None and str(value).strip():
        yield str(value).strip()


def rollout_of(record: Mapping[str, Any]) -> int | None:
    for key in ("rollout", "rollout_index", "rollout_idx", "sample_idx"):
        value = record.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


# -------------------------------------------------------------------------------- trajectories


def to_trajectory(record: ImportRecord, fmt: str, rollout: int) -> Trajectory:
    source = f"{fmt}-import"
    steps: list[Step] = []
    errors: list[str] = []
    last = len(record.turns) - 1
    for index, item in enumerate(record.turns):
        turn = item.turn
        turn_errors = [e.replace("turn 0", f"turn {index}", 1) for e in turn.errors]
        if turn.action == "answer" and index != last:
            turn_errors.append(f"turn {index}: <answer> before the end of the trajectory")
        errors.extend(turn_errors)
        obs = item.observation
        steps.append(
            Step(
                index=index,
                think=turn.think or "",
                action=turn.action if not turn.errors else "invalid",  # type: ignore[arg-type]
                tool_name=turn.tool_name,
                arguments=None if turn.arguments is None else json.dumps(turn.arguments, ensure_ascii=False),
                answer=turn.answer,
                raw=turn.raw,
                format_errors=turn_errors,
                repairs=turn.repairs,
                normalisations=turn.normalisations,
                observation_text=None if obs is None else obs.text,
                observation_images=[] if obs is None else obs.images,
                error=None if obs is None else obs.error,
                call_id=item.call_id,
            )
        )
    if not steps or steps[-1].action != "answer":
        errors.append("trajectory does not end with an <answer>")
    task_id = task_id_for(record.question, record.images, record.gold, source)
    meta: dict[str, Any] = {"import": {"format": fmt}}
    if record.tools:
        meta["tools"] = [t.as_dict() for t in record.tools]
    teacher = record.teacher or fmt
    return Trajectory(
        trajectory_id=trajectory_id_for(task_id, rollout, teacher, PROMPT_VERSION),
        task_id=task_id,
        rollout=rollout,
        teacher=teacher,
        prompt_version=PROMPT_VERSION,
        source=source,
        source_id=record.source_id,
        category=record.category if record.category in CATEGORIES else "other",  # type: ignore[arg-type]
        mode="general" if record.mode == "general" else "deepresearch",
        question=record.question,
        images=record.images,
        gold_answer=record.gold,
        answer_aliases=record.aliases,
        steps=steps,
        final_answer=steps[-1].answer if steps and steps[-1].action == "answer" else None,
        status="imported",
        format_errors=errors,
        meta=canonical_json(meta),
    )


# ------------------------------------------------------------------------------------- the loop


@dataclass
class ImportReport:
    format: str = ""
    lines: int = 0
    imported: int = 0
    already_present: int = 0
    malformed: int = 0
    with_format_errors: int = 0
    renumbered_rollouts: int = 0  # a record's own rollout index was taken already in this file
    images: int = 0
    errors: list[str] = field(default_factory=list)  # "line N: reason"

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "errors"} | {"errors": self.errors[:50]}


class Rollouts:
    """Distinct rollout indices per task: the record's own index, else the next in file order."""

    def __init__(self) -> None:
        self.taken: defaultdict[str, set[int]] = defaultdict(set)
        self.renumbered = 0

    def assign(self, task_id: str, wanted: int | None) -> int:
        taken = self.taken[task_id]
        if wanted is not None and wanted in taken:
            self.renumbered += 1
            wanted = None
        if wanted is None:
            wanted = next(i for i in range(len(taken) + 1) if i not in taken)
        taken.add(wanted)
        return wanted


Reader = Callable[[Any, "Context"], ImportRecord]


@dataclass
class Context:
    """What a reader gets besides the record: images, tool names, where the file lives."""

    images: Images
    tools: ToolMap
    base: Path
    file: Path | None = None  # the imported file (a format may read a sidecar that names it)


def iter_records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line or item number, record) from JSONL, a JSON array, or parquet; a bad line yields a LineError."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        for number, row in enumerate(pq.read_table(path).to_pylist(), 1):
            yield number, {k: _json_column(k, v) for k, v in row.items()}
        return
    with open(path, encoding="utf-8", errors="replace") as handle:
        head = handle.read(1 << 16).lstrip()
        handle.seek(0)
        if head.startswith("["):
            try:
                items = json.load(handle)
            except ValueError as exc:
                raise LineError(f"{path.name} is not valid JSON ({exc}); check the file") from None
            yield from enumerate(items, 1)
            return
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as exc:
                yield number, LineError(f"not valid JSON ({getattr(exc, 'msg', exc)})")


#: Columns that parquet exports (Mini-o3's, the Hub's) often hold as JSON text.
_JSON_COLUMNS = {"messages", "conversations", "trace", "answer", "functions", "images", "response"}


def _json_column(key: str, value: Any) -> Any:
    if key in _JSON_COLUMNS and isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def import_file(
    path: Path,
    store: RunStore,
    fmt: str,
    reader: Reader,
    tools: ToolMap,
    *,
    shard_size: int = 256,
    progress: bool = True,
) -> ImportReport:
    """Import every record of `path` into `store/raw`, skipping trajectories already there (resume)."""
    from tqdm import tqdm

    report = ImportReport(format=fmt)
    done = store.written_ids("raw", "trajectory_id")
    base = path.resolve().parent
    ctx = Context(images=Images(store, base), tools=tools, base=base, file=path.resolve())
    rollouts = Rollouts()
    batch: list[Trajectory] = []
    images_before = _count_images(store)
    for number, record in tqdm(iter_records(path), desc=f"import {fmt}", unit="record", disable=not progress):
        report.lines += 1
        try:
            if isinstance(record, LineError):
                raise record
            if not isinstance(record, dict):
                raise LineError("record is not a JSON object")
            parsed = reader(record, ctx)
            if not parsed.question.strip():
                raise LineError("no question found")
            task_id = task_id_for(parsed.question, parsed.images, parsed.gold, f"{fmt}-import")
            trajectory = to_trajectory(parsed, fmt, rollouts.assign(task_id, parsed.rollout))
        except LineError as exc:
            report.malformed += 1
            report.errors.append(f"line {number}: {exc}")
            continue
        if trajectory.trajectory_id in done:
            report.already_present += 1
            continue
        done.add(trajectory.trajectory_id)
        report.imported += 1
        report.with_format_errors += bool(trajectory.format_errors)
        batch.append(trajectory)
        if len(batch) >= shard_size:
            store.write_records("raw", batch, Trajectory, prefix="import")
            batch = []
    store.write_records("raw", batch, Trajectory, prefix="import")
    report.renumbered_rollouts = rollouts.renumbered
    report.images = _count_images(store) - images_before
    return report


def _count_images(store: RunStore) -> int:
    return store.images.count()
