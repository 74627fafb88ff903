"""What the oracle knows: the world's tasks, entities and scenes, loaded once, looked up fast.

Also the image checks the oracle and its judges share (does an observed image show a task's
gold region? is its plate's text readable?), cached by image bytes so a conversation that
resends every image on every turn pays for each image once, and computed once when the K
rollouts of a task send the same crop at the same moment.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from concurrent.futures import Future
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

import world.vision as vision
from pipeline.images import ImageError, data_uri_bytes, decode_image, read_image
from pipeline.schema import Task
from pipeline.singleflight import ThreadSingleFlight
from world.build import is_built, load_entities, load_signatures
from world.kg import Entity

#: Tasks `trajforge tasks walk` made over this world (one file per run): the oracle knows them
WALKS_DIR = "walks"
#: Decoded scenes kept for making templates (~21 MB each at 2560x2048).
_SCENES_KEPT = 8


class Knowledge:
    """Tasks by question, entities by slug, scenes and region templates on demand."""

    def __init__(self, world_dir: Path) -> None:
        self.dir = Path(world_dir).resolve()
        if not is_built(self.dir):
            raise FileNotFoundError(
                f"{self.dir} is not a built world; run `trajforge world build --out {self.dir}`"
            )
        lines = (self.dir / "tasks.jsonl").read_text(encoding="utf-8").splitlines()
        for walked in sorted((self.dir / WALKS_DIR).glob("*.jsonl")):  # tasks walked over this world
            lines += walked.read_text(encoding="utf-8").splitlines()
        self.tasks = [Task.model_validate_json(line) for line in lines if line.strip()]
        self.by_question = {t.question.strip(): t for t in self.tasks}
        self.by_text: dict[str, list[Task]] = {}
        for task in self.tasks:
            self.by_text.setdefault(task.question.strip(), []).append(task)
        # task-image thumbnails from the build (float, as compared), kept for good; a world built
        # before they were indexed decodes each image once. Data URIs' are a bounded cache.
        self._file_signatures: dict[str, np.ndarray] = {
            rel: thumb.astype(np.float32) for rel, thumb in load_signatures(self.dir).items()
        }
        self._uri_signatures: dict[str, np.ndarray] = {}
        self.by_id = {t.task_id: t for t in self.tasks}
        self._lock = threading.Lock()
        self._templates: dict[str, vision.RegionTemplate] = {}
        self._scenes: OrderedDict[str, Image.Image] = OrderedDict()
        self._checks: OrderedDict[tuple[str, str, str], dict[str, Any]] = OrderedDict()
        self._pending: ThreadSingleFlight[tuple[str, str, str], dict[str, Any]] = ThreadSingleFlight(
            self._remember
        )

    @cached_property
    def entities(self) -> dict[str, Entity]:
        return load_entities(self.dir)

    def find_task(self, text: str, images: list[str] | None = None) -> Task | None:
        """The task whose question appears verbatim in `text` (the longest, if several do).

        Many tasks share a question ("In what year was the organisation it represents founded?")
        and differ by image, so ties are broken by the first image (a data URI) when given.
        """
        exact = self.by_question.get(text.strip())
        question = exact.question if exact is not None else None
        if question is None:
            hits = [q for q in self.by_question if q in text]
            question = max(hits, key=len) if hits else None
        if question is None:
            return None
        candidates = self.by_text[question.strip()]
        if len(candidates) == 1 or not images:
            return candidates[0]
        try:
            signature = self._signature_of_uri(images[0])
        except ImageError:
            return candidates[0]
        return min(
            candidates,
            key=lambda t: (
                float(np.abs(self._signature_of_file(t.images[0]) - signature).mean()) if t.images else 1e9
            ),
        )

    def candidates(self, question: str) -> list[Task]:
        return self.by_text.get(question.strip(), [])

    def _signature_of_uri(self, uri: str) -> np.ndarray:
        key = hashlib.sha1(uri.encode()).hexdigest()
        with self._lock:
            if key in self._uri_signatures:
                return self._uri_signatures[key]
        value = _signature(decode_image(data_uri_bytes(uri), name="task image"))
        with self._lock:
            self._uri_signatures[key] = value
            if len(self._uri_signatures) > 4096:
                self._uri_signatures.pop(next(iter(self._uri_signatures)))
        return value

    def _signature_of_file(self, rel: str) -> np.ndarray:
        with self._lock:
            if rel in self._file_signatures:
                return self._file_signatures[rel]
        value = _signature(read_image(self.dir / rel))
        with self._lock:
            self._file_signatures[rel] = value
        return value

    @staticmethod
    def path(task: Task) -> list[dict[str, Any]]:
        return json.loads(task.gold_path or "[]")

    @staticmethod
    def meta(task: Task) -> dict[str, Any]:
        return json.loads(task.meta or "{}")

    def template(self, task: Task) -> vision.RegionTemplate | None:
        if task.gold_region is None or not task.images:
            return None
        with self._lock:
            cached = self._templates.get(task.task_id)
        if cached is not None:
            return cached
        # outside the lock: other tasks' checks go on while this scene is decoded
        colour = task.category == "interleaved"
        made = vision.region_template(self._scene(task.images[0]), task.gold_region, colour=colour)
        with self._lock:
            return self._templates.setdefault(task.task_id, made)

    def _scene(self, rel: str) -> Image.Image:
        """A decoded scene, shared by the tasks set in it (a few recent ones are kept)."""
        with self._lock:
            if rel in self._scenes:
                self._scenes.move_to_end(rel)
                return self._scenes[rel]
        scene = read_image(self.dir / rel)
        with self._lock:
            self._scenes[rel] = scene
            while len(self._scenes) > _SCENES_KEPT:
                self._scenes.popitem(last=False)
        return scene

    def check_image(self, task: Task, image_ref: str | bytes, kind: str) -> dict[str, Any]:
        """`kind` "region": does the image show the gold region; "label": is the plate readable.

        `image_ref` is a data URI or raw bytes; results are cached by content.
        """
        data = data_uri_bytes(image_ref) if isinstance(image_ref, str) else image_ref
        key = (task.task_id, kind, hashlib.sha1(data).hexdigest())
        with self._lock:
            if key in self._checks:
                self._checks.move_to_end(key)
                return self._checks[key]
        # the same check asked by several server threads at once (the K rollouts) runs once
        return self._pending.run(key, lambda: self._check(task, data, kind))

    def _remember(self, key: tuple[str, str, str], done: Future[dict[str, Any]]) -> None:
        if not done.cancelled() and done.exception() is None:
            with self._lock:
                self._checks[key] = done.result()
                while len(self._checks) > 4096:
                    self._checks.popitem(last=False)

    def _check(self, task: Task, data: bytes, kind: str) -> dict[str, Any]:
        template = self.template(task)
        if template is None:
            return {"found": False, "reason": "task has no gold region"}
        try:
            image: Image.Image = decode_image(data, name="observation image")
        except ImageError as exc:
            return {"found": False, "reason": str(exc)}
        if kind == "label":
            turns = int(self.meta(task).get("quarter_turns", 0))
            return vision.read_label(image, template, turns)
        match = vision.locate(image, template)
        return {"found": match.found, "score": round(match.score, 3)}


def _signature(image: Image.Image) -> np.ndarray:
    return vision.thumbnail_signature(image).astype(np.float32)
