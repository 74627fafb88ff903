"""The one tool interface: a name, a JSON schema for arguments, and an async run.

A tool never raises into the agent loop: every failure (bad arguments, timeout, sandbox kill,
HTTP error) comes back as an `Observation` with `error` set, so one failing tool costs one step,
never the trajectory. At this layer `Observation.images` holds *file paths* of images the tool
produced; the executor moves them into the run's content-addressed image store and records refs.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import ToolsConfig
from pipeline.schema import Observation
from pipeline.tool_spec import ToolSpec
from stages.tools.cache import ToolCache

CACHE_FILE = "tools_cache.sqlite"


class ToolContext:
    """Per-trajectory state the tools share.

    `images` maps the names the model may use (in code, in image_search) to files: the task's
    input images first, then every image a tool produced earlier in the trajectory.

    `workdir`, the trajectory's own folder for the files its tools write, is made on first use:
    most trajectories (those that never write a file) then cost no folder to make and remove,
    which at a thousand in flight was a twentieth of a synth worker's CPU.
    """

    def __init__(
        self,
        trajectory_id: str,
        workdir: Path,
        images: dict[str, Path] | None = None,
        question: str = "",
        goal: str = "",  # what the trajectory is after (for goal-directed page summaries)
    ) -> None:
        self.trajectory_id = trajectory_id
        self.images: dict[str, Path] = images if images is not None else {}
        self.question, self.goal = question, goal
        self._workdir, self.workdir_made = Path(workdir), False

    @property
    def workdir(self) -> Path:
        """The trajectory's folder, made now if this is its first use."""
        if not self.workdir_made:
            self._workdir.mkdir(parents=True, exist_ok=True)
            self.workdir_made = True
        return self._workdir

    def register_image(self, path: Path, name: str | None = None) -> str:
        """Make a produced image addressable by later calls; returns its name."""
        name = name or f"image_{len(self.images)}{path.suffix or '.png'}"
        self.images[name] = path
        return name


@dataclass(frozen=True)
class ToolEnv:
    """What a run gives its tools to be built with: the local corpus, the cache folder."""

    corpus_dir: Path | None
    cache_dir: Path

    def cache(self, enabled: bool) -> ToolCache:
        """A tool's own handle on the run's shared SQLite result cache (hit counts per tool)."""
        return ToolCache(self.cache_dir / CACHE_FILE, enabled=enabled)


class Tool(ABC):
    """Base class: a subclass declares its `spec` (name, modes, schema, how prompts and plans
    show it), builds itself from the config in `create`, and implements `_run`."""

    spec: ToolSpec
    name: str = ""
    description: str = ""
    parameters: dict[str, Any] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        spec = cls.__dict__.get("spec")
        if spec is not None:  # the declaration is the one source of the name and schema
            cls.name, cls.description, cls.parameters = spec.name, spec.description, dict(spec.parameters)
        elif cls.__dict__.get("name"):  # a bare tool (a test double): its spec from what it says
            cls.spec = ToolSpec(cls.name, description=cls.description, parameters=dict(cls.parameters))

    @classmethod
    def create(cls, cfg: ToolsConfig, env: ToolEnv) -> Tool:
        """The tool as a run's config sets it up (a tool the registry builds must define it)."""
        raise NotImplementedError(f"{cls.__name__} must define `create(cfg, env)` to be built from a config")

    def schema(self) -> dict[str, Any]:
        """OpenAI-style function schema (what native tool calling sends)."""
        return self.spec.function_schema()

    async def run(self, arguments: dict[str, Any], ctx: ToolContext) -> Observation:
        """Run the tool; any exception becomes an error observation with the latency measured."""
        start = time.perf_counter()
        try:
            observation = await self._run(arguments, ctx)
        except Exception as exc:  # a tool failure is an observation, never a crash
            observation = Observation(error=f"{self.name} failed: {type(exc).__name__}: {exc}")
        observation.latency_s = time.perf_counter() - start
        return observation

    @abstractmethod
    async def _run(self, arguments: dict[str, Any], ctx: ToolContext) -> Observation: ...

    def warm(self, ctx: ToolContext) -> None:  # noqa: B027 - optional hook, most tools need nothing
        """A trajectory starts with `ctx`: start (never wait for) work its first call would do,
        so the first teacher turn hides it. Must not raise."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, most tools hold nothing
        """Release pools, clients and caches."""


#: An absolute file path (two or more parts) that is not part of a URL.
_HOST_PATH = re.compile(r"(?<![:/\w])(?:/[\w.@+-]+){2,}/?")


def public_error(exc: BaseException, path: Path | None = None, name: str = "the image") -> str:
    """An error as the teacher may see it: no host path (run folder, cache, checkout). The file
    the call was about reads as its conversation name; other paths as `<path>`."""
    text = f"{type(exc).__name__}: {exc}"
    if path is not None:
        text = text.replace(str(path), name)
    return _HOST_PATH.sub("<path>", text)


def batch_observation(blocks: list[str], errors: list[str], asked: int) -> Observation:
    """One observation for a call over several inputs (queries, images, URLs): every input's
    block, an error only when all `asked` of them failed, partial failures in `meta`."""
    error = "; ".join(errors) if errors and len(errors) == asked else None
    return Observation(
        text="\n\n".join(blocks), error=error, meta={"partial_errors": errors} if errors else {}
    )
