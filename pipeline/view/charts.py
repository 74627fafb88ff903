"""Charts as SVG pictures, drawn by the viewer itself (no script, no CDN, nothing to vendor).

Each function takes plain numbers and returns an inline `<svg>` (jinja2 `Markup`), so a page
renders identically served or opened from disk.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f", "#bab0ac")
FONT = 'font-family="system-ui,sans-serif" font-size="12"'


def _fmt(value: float) -> str:
    return f"{value:.1%}" if 0 < value < 1 and not float(value).is_integer() else f"{value:,.0f}"


def _empty(title: str) -> Markup:
    return Markup(f'<p class="empty">{escape(title)}: nothing recorded in this run</p>')


def hbars(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    width: int = 520,
    color: str = PALETTE[0],
    percent: bool = False,
    label_w: int = 250,
) -> Markup:
    """Horizontal bars, one per (label, value), longest scale = the largest value."""
    if not items:
        return _empty(title)
    top = max(v for _, v in items) or 1
    row_h = 22
    chars = label_w // 7
    height = 26 + row_h * len(items)
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {FONT}>',
        f'<text x="0" y="14" font-weight="600">{escape(title)}</text>',
    ]
    bar_w = width - label_w - 60
    for i, (label, value) in enumerate(items):
        y = 24 + i * row_h
        w = max(1.0, bar_w * value / top) if value else 0
        text = f"{value:.1%}" if percent else _fmt(value)
        short = label if len(label) <= chars else label[: chars - 1] + "…"
        parts.append(
            f"<g><title>{escape(label)}: {text}</title>"
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{escape(short)}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" fill="{color}"/>'
            f'<text x="{label_w + w + 4:.1f}" y="{y + 14}">{text}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def vbars(
    items: Sequence[tuple[str, float]], *, title: str, width: int = 460, color: str = PALETTE[2]
) -> Markup:
    """A histogram-like column chart: one column per (label, value) left to right."""
    if not items:
        return _empty(title)
    top = max(v for _, v in items) or 1
    height, base, left = 190, 160, 10
    col = (width - 2 * left) / len(items)
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {FONT}>',
        f'<text x="0" y="14" font-weight="600">{escape(title)}</text>',
        f'<line x1="{left}" y1="{base}" x2="{width - left}" y2="{base}" stroke="#999"/>',
    ]
    for i, (label, value) in enumerate(items):
        h = (base - 40) * value / top
        x = left + i * col
        parts.append(
            f"<g><title>{escape(label)}: {_fmt(value)}</title>"
            f'<rect x="{x + col * 0.12:.1f}" y="{base - h:.1f}" width="{col * 0.76:.1f}" height="{h:.1f}" fill="{color}"/>'
            f'<text x="{x + col / 2:.1f}" y="{base - h - 4:.1f}" text-anchor="middle">{_fmt(value)}</text>'
            f'<text x="{x + col / 2:.1f}" y="{base + 16}" text-anchor="middle">{escape(label)}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def donut(items: Sequence[tuple[str, float]], *, title: str, size: int = 200) -> Markup:
    """Shares of a whole (the tool mix of the R1V4 report's Figure 2b), with a legend."""
    total = sum(v for _, v in items)
    if not items or total <= 0:
        return _empty(title)
    r, inner, cx, cy = size / 2 - 4, size / 4, size / 2, size / 2 + 20
    width, height = size + 220, size + 30
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {FONT}>',
        f'<text x="0" y="14" font-weight="600">{escape(title)}</text>',
    ]
    angle = -math.pi / 2
    for i, (label, value) in enumerate(items):
        share = value / total
        color = PALETTE[i % len(PALETTE)]
        if share >= 0.9999:
            parts.append(f'<circle cx="{cx}" cy="{cy}" r="{r}" fill="{color}"/>')
        elif share > 0:
            end = angle + 2 * math.pi * share
            large = 1 if share > 0.5 else 0
            x0, y0 = cx + r * math.cos(angle), cy + r * math.sin(angle)
            x1, y1 = cx + r * math.cos(end), cy + r * math.sin(end)
            parts.append(
                f'<path d="M{cx},{cy} L{x0:.2f},{y0:.2f} A{r},{r} 0 {large} 1 {x1:.2f},{y1:.2f} Z" fill="{color}">'
                f"<title>{escape(label)}: {value:,.0f} ({share:.1%})</title></path>"
            )
            angle = end
        ly = 34 + i * 20
        parts.append(
            f'<rect x="{size + 16}" y="{ly}" width="12" height="12" fill="{color}"/>'
            f'<text x="{size + 34}" y="{ly + 11}">{escape(label)} {value:,.0f} ({share:.0%})</text>'
        )
    parts.append(f'<circle cx="{cx}" cy="{cy}" r="{inner}" fill="#fff"/>')
    parts.append(f'<text x="{cx}" y="{cy + 4}" text-anchor="middle">{total:,.0f}</text></svg>')
    return Markup("".join(parts))


def funnel(stages: Sequence[tuple[str, int | None]], *, title: str, width: int = 920) -> Markup:
    """Stage counts as centred bars narrowing from the widest; a stage the run lacks shows n/a."""
    known = [v for _, v in stages if v is not None]
    top = max(known) if known else 1
    row_h, label_w = 30, 150
    height = 26 + row_h * len(stages)
    span = width - label_w - 20
    parts = [
        f'<svg class="chart funnel" role="img" aria-label="{escape(title)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {FONT}>',
        f'<text x="0" y="14" font-weight="600">{escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(stages):
        y = 24 + i * row_h
        w = span * (value or 0) / (top or 1)
        x = label_w + (span - w) / 2
        slug = label.split()[0].lower().strip(":")
        shown = "n/a" if value is None else f"{value:,}"
        parts.append(
            f'<g class="stage" data-stage="{escape(slug)}" data-count="{"" if value is None else value}">'
            f'<text x="{label_w - 8}" y="{y + 18}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{x:.1f}" y="{y + 2}" width="{max(w, 1):.1f}" height="{row_h - 4}" '
            f'fill="{PALETTE[i % len(PALETTE)]}" rx="3"/>'
            f'<text x="{label_w + span / 2:.1f}" y="{y + 19}" text-anchor="middle" fill="#111" '
            f'font-weight="600">{shown}</text></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
