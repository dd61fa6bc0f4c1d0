"""Server-drawn bar charts for the KPI dashboard: plain inline SVG, no script, no CDN.
Every text put in is escaped here, so the template can mark the result safe."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 560, 190
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 18, 40


def bars(title: str, items: Sequence[tuple[str, float | None, str]]) -> str:
    """One bar per (label, share 0..1 or None, caption under the label)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
    ]
    for tick in (0, 25, 50, 75, 100):
        y = TOP + plot_h * (1 - tick / 100)
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{tick}%</text>'
        )
    if not items:
        parts.append(
            f'<text x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" '
            'class="empty">no referrals</text></svg>'
        )
        return "".join(parts)
    slot = plot_w / len(items)
    bar_w = min(48.0, slot * 0.7)
    for n, (label, value, caption) in enumerate(items):
        x = LEFT + slot * n + (slot - bar_w) / 2
        middle = x + bar_w / 2
        if value is None:
            parts.append(
                f'<text x="{middle:.1f}" y="{TOP + plot_h - 4:.1f}" text-anchor="middle" '
                'class="none">n/a</text>'
            )
        else:
            h = plot_h * max(0.0, min(1.0, value))
            parts.append(
                f'<rect x="{x:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" class="bar"><title>{escape(label)}: {value * 100:.1f}% '
                f"({escape(caption)})</title></rect>"
                f'<text x="{middle:.1f}" y="{TOP + plot_h - h - 3:.1f}" text-anchor="middle" '
                f'class="value">{value * 100:.0f}%</text>'
            )
        parts.append(
            f'<text x="{middle:.1f}" y="{HEIGHT - BOTTOM + 15}" text-anchor="middle" '
            f'class="label">{escape(label)}</text>'
            f'<text x="{middle:.1f}" y="{HEIGHT - BOTTOM + 29}" text-anchor="middle" '
            f'class="caption">{escape(caption)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
