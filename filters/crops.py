"""Crop boxes read from teacher-written code, without running it.

The code is parsed with `ast` and a tiny constant evaluator (literals, arithmetic, names bound to
constants earlier in the snippet, `int()`/`round()`); nothing is executed. Recognised forms:
PIL `.crop((x0, y0, x1, y1))` (also through a variable holding the box) and numpy slicing
`img[y0:y1, x0:x1]`. The source image is the `image_<k>` name (or `image_paths[k]`) the snippet
opens, so boxes are only compared within one coordinate frame. Unparseable code falls back to a
regular expression for the literal `.crop((...))` form.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache

from pipeline.schema import Trajectory

_IMAGE_NAME = re.compile(r"image_(\d+)\.(?:png|jpe?g|webp)")
_CROP_RE = re.compile(
    r"\.crop\(\s*[\(\[]\s*([-\d.]+)\s*,\s*([-\d.]+)\s*,\s*([-\d.]+)\s*,\s*([-\d.]+)\s*[\)\]]"
)


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def intersection(self, other: Box) -> float:
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return max(w, 0.0) * max(h, 0.0)

    def iou(self, other: Box) -> float:
        inter = self.intersection(other)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def coverage_of(self, other: Box) -> float:
        """Share of `other` inside this box."""
        return self.intersection(other) / other.area if other.area > 0 else 0.0


@dataclass(frozen=True)
class Crop:
    box: Box
    source: int | None  # k of image_<k> the snippet reads (None when it cannot be told)


class _Evaluator:
    """Constant folding over a snippet: enough for the boxes teachers write, nothing more."""

    def __init__(self) -> None:
        self.names: dict[str, object] = {}

    def value(self, node: ast.AST) -> object:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in self.names:
                return self.names[node.id]
            raise ValueError(node.id)
        if isinstance(node, (ast.Tuple, ast.List)):
            return tuple(self.value(e) for e in node.elts)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            inner = self.value(node.operand)
            if isinstance(inner, (int, float)):
                return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp):
            left, right = self.value(node.left), self.value(node.right)
            if isinstance(left, (int, float)) and isinstance(right, (int, float)):
                ops = {
                    ast.Add: lambda a, b: a + b,
                    ast.Sub: lambda a, b: a - b,
                    ast.Mult: lambda a, b: a * b,
                    ast.Div: lambda a, b: a / b,
                    ast.FloorDiv: lambda a, b: a // b,
                }
                op = ops.get(type(node.op))
                if op is not None:
                    return op(left, right)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("int", "round", "float")
            and len(node.args) == 1
        ):
            inner = self.value(node.args[0])
            if isinstance(inner, (int, float)):
                return {"int": int, "round": round, "float": float}[node.func.id](inner)
        raise ValueError(type(node).__name__)  # every caller treats it as "not a constant"

    def bind(self, node: ast.Assign) -> None:
        try:
            value = self.value(node.value)
        except (ValueError, ZeroDivisionError):
            value = None
        for target in node.targets:
            if isinstance(target, ast.Name):
                if value is None:
                    self.names.pop(target.id, None)
                else:
                    self.names[target.id] = value
            elif (
                isinstance(target, ast.Tuple) and isinstance(value, tuple) and len(value) == len(target.elts)
            ):
                for element, item in zip(target.elts, value, strict=True):
                    if isinstance(element, ast.Name):
                        self.names[element.id] = item


def _as_box(value: object) -> Box | None:
    if isinstance(value, tuple) and len(value) == 4 and all(isinstance(v, (int, float)) for v in value):
        return Box(*(float(v) for v in value))  # type: ignore[arg-type]
    return None


def _slice_bounds(node: ast.AST, ev: _Evaluator) -> tuple[float | None, float | None] | None:
    if not isinstance(node, ast.Slice) or node.step is not None:
        return None
    try:
        low = None if node.lower is None else ev.value(node.lower)
        high = None if node.upper is None else ev.value(node.upper)
    except (ValueError, ZeroDivisionError):
        return None
    if not all(v is None or isinstance(v, (int, float)) for v in (low, high)):
        return None
    return low, high  # type: ignore[return-value]


def _source(code: str) -> int | None:
    """The image a snippet reads: the first `image_<k>` name or `image_paths[k]` it mentions."""
    found = [(m.start(), int(m.group(1))) for m in _IMAGE_NAME.finditer(code)]
    found += [(m.start(), int(m.group(1))) for m in re.finditer(r"image_paths\[\s*(\d+)\s*\]", code)]
    return min(found)[1] if found else None


@lru_cache(maxsize=8192)
def crops_in_code(code: str) -> tuple[Crop, ...]:
    """Every crop box in a snippet, in source order (cached: rescoring sees the same code)."""
    source = _source(code)
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return tuple(Crop(Box(*(float(v) for v in m.groups())), source) for m in _CROP_RE.finditer(code))
    ev = _Evaluator()
    boxes: list[Box] = []
    for node in _ordered(tree):
        if isinstance(node, ast.Assign):
            ev.bind(node)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "crop":
            if node.args:
                try:
                    box = _as_box(ev.value(node.args[0]))
                except (ValueError, ZeroDivisionError):
                    box = None
                if box is not None:
                    boxes.append(box)
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.slice, ast.Tuple)
            and len(node.slice.elts) >= 2
        ):
            ys, xs = (_slice_bounds(e, ev) for e in node.slice.elts[:2])
            if ys is not None and xs is not None and None not in (*ys, *xs):
                boxes.append(Box(float(xs[0]), float(ys[0]), float(xs[1]), float(ys[1])))  # type: ignore[arg-type]
    return tuple(Crop(box, source) for box in boxes)


def _ordered(tree: ast.AST) -> list[ast.AST]:
    """Nodes in source order with each assignment before the calls that follow it."""
    nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.Call, ast.Subscript))]
    return sorted(
        nodes,
        key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0), not isinstance(n, ast.Assign)),
    )


def named_images(trajectory: Trajectory) -> list[str]:
    """Refs in the order the tools name them: `image_<k>` is the k-th of inputs, then outputs."""
    refs = list(trajectory.images)
    for step in trajectory.steps:
        refs.extend(step.observation_images)
    return refs
