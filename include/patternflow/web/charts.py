"""The two plots of the page and the report, as inline SVG: no script, no network, no library.

Colours are CSS classes (``pf-...``) that the page's stylesheet sets for light and dark, so one
SVG follows the Airflow UI's theme in the page and prints as it is in the report.
"""

from __future__ import annotations

import math
from html import escape

from patternflow.pipeline.layout import PATTERNS

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40


def nice_ticks(high: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``high`` (1, 2 or 5 times a power of ten apart)."""
    if high <= 0:
        return [0.0, 1.0]
    raw = high / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(math.ceil(high / step - 1e-9) + 1)]


def _number(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e5 else f"{value:,.0f}"


def lag_chart(chunks: list[dict]) -> str:
    """Lag from upload to commit per chunk (y, seconds) at the chunk's upload time (x, seconds since the first upload)."""
    title = "Lag per chunk, from upload to commit"
    if not chunks:
        return _empty(title, "no chunk processed yet")
    start = min(c["uploaded_at"] for c in chunks)
    points = [(c["uploaded_at"] - start, c["lag_seconds"], c["index"]) for c in chunks]
    x_ticks = nice_ticks(max(p[0] for p in points) or 1.0)
    y_ticks = nice_ticks(max(max(p[1] for p in points), 0.0) or 1.0)
    x_of = _scale(x_ticks[-1], LEFT, WIDTH - RIGHT)
    y_of = _scale(y_ticks[-1], HEIGHT - BOTTOM, TOP)
    parts = _axes(x_ticks, y_ticks, x_of, y_of, "seconds since the first upload", "lag (s)")
    path = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y, _ in points)
    parts.append(f'<polyline class="pf-line" points="{path}"/>')
    for x, y, index in points:
        parts.append(
            f'<circle class="pf-dot" cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="3">'
            f"<title>chunk {index}: lag {y:.2f} s, uploaded at +{x:.1f} s</title></circle>"
        )
    return _svg(title, parts)


def detections_chart(by_pattern: dict[str, int]) -> str:
    """Detections per pattern, one horizontal bar each, the count written at its end."""
    title = "Detections per pattern"
    ticks = nice_ticks(max(by_pattern.values(), default=0) or 1)
    x_of = _scale(ticks[-1], LEFT + 24, WIDTH - RIGHT - 48)
    band = (HEIGHT - TOP - BOTTOM) / max(len(by_pattern), 1)
    parts = []
    for tick in ticks:
        x = x_of(tick)
        parts.append(f'<line class="pf-grid" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}"/>')
        parts.append(f'<text class="pf-tick" x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{_number(tick)}</text>')
    for row, (pattern, count) in enumerate(by_pattern.items()):
        y = TOP + row * band + band * 0.2
        width = x_of(count) - x_of(0)
        css = f"pf-bar pf-{pattern.lower()}" if pattern in PATTERNS else "pf-bar"
        parts.append(f'<text class="pf-label" x="{LEFT + 16}" y="{y + band * 0.35:.1f}" text-anchor="end">{escape(pattern)}</text>')
        parts.append(f'<rect class="{css}" x="{x_of(0):.1f}" y="{y:.1f}" width="{width:.1f}" height="{band * 0.6:.1f}" rx="2">')
        parts.append(f"<title>{escape(pattern)}: {count} detections</title></rect>")
        parts.append(f'<text class="pf-value" x="{x_of(0) + width + 6:.1f}" y="{y + band * 0.35:.1f}">{count:,}</text>')
    parts.append(f'<text class="pf-axis-title" x="{(LEFT + WIDTH) / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle">detections</text>')
    return _svg(title, parts)


def _scale(high: float, start: float, end: float):
    return lambda value: start + (end - start) * (value / high if high else 0.0)


def _axes(x_ticks, y_ticks, x_of, y_of, x_title: str, y_title: str) -> list[str]:
    parts = []
    for tick in y_ticks:
        y = y_of(tick)
        parts.append(f'<line class="pf-grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>')
        parts.append(f'<text class="pf-tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_number(tick)}</text>')
    for tick in x_ticks:
        x = x_of(tick)
        parts.append(f'<text class="pf-tick" x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{_number(tick)}</text>')
    parts.append(f'<line class="pf-axis" x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}"/>')
    parts.append(f'<text class="pf-axis-title" x="{(LEFT + WIDTH) / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle">{x_title}</text>')
    parts.append(
        f'<text class="pf-axis-title" x="14" y="{(TOP + HEIGHT - BOTTOM) / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(TOP + HEIGHT - BOTTOM) / 2:.0f})">{y_title}</text>'
    )
    return parts


def _empty(title: str, message: str) -> str:
    return _svg(title, [f'<text class="pf-tick" x="{WIDTH / 2:.0f}" y="{HEIGHT / 2:.0f}" text-anchor="middle">{message}</text>'])


def _svg(title: str, parts: list[str]) -> str:
    body = "".join(parts)
    return (
        f'<svg class="pf-chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{body}</svg>'
    )
