"""The tiny base every check shares: read one trajectory, return one Verdict with per-step reasons.

A check is a small class with a `name` and a synchronous `run` (rules, cheap, no I/O beyond
guarded image reads). Checks that can ask a judge override `arun`, which the runner awaits only
when a judge is configured; without one, `arun` is `run`. Per-step verdicts use the step's index
in `Trajectory.steps`, or -1 for the trajectory as a whole.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.config import FilterConfig
from pipeline.images import ImageError
from pipeline.phash import image_phash
from pipeline.schema import Step, StepVerdict, Trajectory, Verdict, parse_arguments
from pipeline.tool_spec import ToolTable

if TYPE_CHECKING:
    from filters.judges import Judge, JudgeResult
    from filters.ocr import ImageText
    from pipeline.leaks import LeakGuard
    from pipeline.store import RunStore

WHOLE = -1  # StepVerdict.step for the trajectory as a whole


@dataclass(frozen=True)
class ImageStats:
    """What the image checks need from one image, computed once per content reference."""

    width: int
    height: int
    std: float  # grayscale standard deviation on a small thumbnail (0: perfectly uniform)
    dominant: float  # share of the most common grayscale bin (1.0: one flat colour)


@dataclass
class CheckContext:
    """Everything a check may consult besides the trajectory itself."""

    config: FilterConfig = field(default_factory=FilterConfig)
    store: RunStore | None = None
    judge: Judge | None = None
    leaks: LeakGuard | None = None  # the host's needles (default: from the run folder and its config)
    tools: ToolTable | None = None  # the tools calls are judged against (default: the run's tools.json)
    _stats: dict[str, ImageStats | None] = field(default_factory=dict)
    _hashes: dict[str, int | None] = field(default_factory=dict)
    _text: ImageText | None = None

    def image_text(self) -> ImageText:
        """The OCR reader of produced images, made on first use (it starts tesseract lazily)."""
        if self._text is None:
            from filters.ocr import ImageText

            self._text = ImageText(self.store, enabled=self.config.ocr, tessdata=self.config.ocr_tessdata)
        return self._text

    def ocr_summary(self) -> dict[str, Any]:
        """What OCR did in this run (for the filter report); closes its cache."""
        if self._text is None:
            return {"engine": None, "unavailable": None, "note": "no thought claimed text in an image"}
        summary = self._text.summary()
        self._text.close()
        return summary

    def leak_guard(self) -> LeakGuard:
        """The guard the `leak` check scans with, built once from the run when none was given."""
        if self.leaks is None:
            from pipeline.leaks import LeakGuard

            self.leaks = LeakGuard.for_run(self.store.root if self.store is not None else None)
        return self.leaks

    def tool_table(self) -> ToolTable:
        """The tools the trajectories were offered: given, or recorded by the run's synth."""
        if self.tools is None and self.store is not None:
            self.tools = self.store.tool_table()
        if self.tools is None:
            raise ValueError(
                "no tool table: this run recorded none (tools.json); pass the tools the trajectories were "
                "offered (CheckContext(tools=...); `trajforge filter` uses trajforge's own)"
            )
        return self.tools

    def code_argument(self, step: Step) -> str | None:
        """The argument that holds the code a call runs in the sandbox (None: its tool runs none)."""
        spec = self.tool_table().get(step.tool_name)
        return spec.argument if spec is not None and spec.runs_code else None

    def code_of(self, step: Step) -> str | None:
        """The code a call ran in the sandbox (None when its tool runs no code)."""
        key = self.code_argument(step)
        code = call_arguments(step).get(key) if key else None
        return code if isinstance(code, str) else None

    def image_stats(self, ref: str) -> ImageStats | None:
        """Size and flatness of a stored image (None when absent or unreadable); cached by ref."""
        if ref not in self._stats:
            self._decode(ref)
        return self._stats[ref]

    def image_hash(self, ref: str) -> int | None:
        """Perceptual hash of a stored image for dedup (None when absent or unreadable); cached."""
        if ref not in self._hashes:
            self._decode(ref)
        return self._hashes[ref]

    def _decode(self, ref: str) -> None:
        """One decode fills both caches: an input image the crop check sized is the one dedup
        hashes (a 768-px PNG decodes in about 13 ms; its hash and stats take under 1 ms each)."""
        self._stats[ref] = self._hashes[ref] = None
        if self.store is None or not self.store.images.has(ref):
            return
        try:
            image = self.store.images.open(ref)
        except (ImageError, OSError):
            return
        for cache, compute in ((self._stats, compute_stats), (self._hashes, image_phash)):
            with suppress(ImageError, OSError):
                cache[ref] = compute(image)


def compute_stats(image: Any) -> ImageStats:
    """Flatness on a 64-px thumbnail: cheap, and blank crops are blank at any scale."""
    width, height = image.size
    thumb = image.convert("L")
    thumb.thumbnail((64, 64))
    pixels = np.asarray(thumb, dtype=np.float32)
    if pixels.size == 0:
        return ImageStats(width, height, 0.0, 1.0)
    hist = np.bincount((pixels // 8).astype(np.int64).ravel(), minlength=32)
    return ImageStats(width, height, float(pixels.std()), float(hist.max() / pixels.size))


class Check(ABC):
    """One consistency check. Subclasses set `name` and implement `run`."""

    name: str = ""
    #: whether `arun` can add a judge's opinion to the rules
    judged: bool = False
    #: whether that judge may overturn a rule *drop* (an answer the rules could not match)
    rescuable: bool = False

    @abstractmethod
    def run(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        """Rules only: fast, deterministic, no network."""

    async def arun(self, trajectory: Trajectory, ctx: CheckContext) -> Verdict:
        """Rules, then (in judged checks, when `ctx.judge` is set) a judge. Default: rules."""
        return self.run(trajectory, ctx)

    @staticmethod
    def judge_after(rules: Verdict, ctx: CheckContext) -> Judge | None:
        """The judge to ask after the rules: none when there is none, or when the rules dropped."""
        return ctx.judge if rules.keep else None

    def verdict(
        self,
        trajectory: Trajectory,
        steps: Iterable[StepVerdict],
        *,
        score: float | None = None,
        keep: bool | None = None,
        note: str = "",
    ) -> Verdict:
        """Fold per-step verdicts into one: keep when every step is ok (unless told otherwise)."""
        steps = sorted(steps, key=lambda s: (s.step, s.ok, s.reason))
        failed = [s for s in steps if not s.ok]
        if keep is None:
            keep = not failed
        if score is None:
            score = 1.0 - len(failed) / max(len(steps), 1) if steps else 1.0
        reason = "; ".join(_describe(s) for s in failed[:3])
        if len(failed) > 3:
            reason += f"; +{len(failed) - 3} more"
        if note:
            reason = f"{reason}; {note}" if reason else note
        return Verdict(
            trajectory_id=trajectory.trajectory_id,
            check=self.name,
            keep=keep,
            score=float(score),
            reason=reason,
            steps=steps,
        )


def _describe(step: StepVerdict) -> str:
    return step.reason if step.step == WHOLE else f"step {step.step}: {step.reason}"


def ok(step: int, reason: str = "") -> StepVerdict:
    return StepVerdict(step=step, ok=True, reason=reason)


def bad(step: int, reason: str) -> StepVerdict:
    return StepVerdict(step=step, ok=False, reason=reason)


def judge_step(step: int, result: JudgeResult, failure: str) -> StepVerdict:
    """A step as a judge saw it: ok with its note on a pass (or a kept unknown), the judge's
    reason on a dropped unknown, `failure` with the judge's reason on a fail."""
    if result.passed:
        return ok(step, result.note)
    if result.unknown:
        return bad(step, result.reason)
    return bad(step, f"{failure} (judge: {result.reason})")


@lru_cache(maxsize=8192)
def _read_arguments(text: str) -> Mapping[str, Any]:
    return MappingProxyType(parse_arguments(text))


def call_arguments(step: Step) -> Mapping[str, Any]:
    """`step.arguments_dict()`, parsed once per distinct text for all the checks; read-only,
    since the checks share it."""
    return _read_arguments(step.arguments) if step.arguments else _NO_ARGUMENTS


_NO_ARGUMENTS: Mapping[str, Any] = MappingProxyType({})


@lru_cache(maxsize=4096)
def lowered(text: str) -> str:
    """Casefolded text with whitespace collapsed: what containment rules compare."""
    return " ".join(text.casefold().split())


_SETBACK = re.compile(
    r"\b(?:miss(?:ed|es)?|not (?:visible|shown|there|clear|readable|legible|found|helpful|useful|in (?:the|this) "
    r"(?:crop|image|region))|(?:does|did|do)(?:n't| not) (?:show|contain|help|work|find|include|capture|match)|"
    r"can(?:'t|not) (?:see|read|find|tell|make out|determine)|unable to|blank|empty|uniform|no (?:text|label|results?|"
    r"useful|relevant|match(?:es)?)|nothing|fail(?:ed|s)?|error|wrong (?:region|area|place|crop|part)|"
    r"off[- ]target|outside|try (?:again|another|a different)|crop again|re-?crop|instead|unclear|unreadable|"
    r"illegible|too (?:small|blurry|dark))\b",
    re.IGNORECASE,
)


def acknowledges_setback(thought: str) -> bool:
    """Whether a thought says the previous step did not deliver (then it claims no success)."""
    return bool(_SETBACK.search(thought))
