"""Server-rendered SVG charts (no script, nothing fetched): the funnel per day as grouped bars.

Every chart is an image with a title and a description that say its numbers in words
(screen readers), each bar has a tooltip, and the page shows the same numbers as a table.
"""
from __future__ import annotations

from markupsafe import Markup, escape

from .funnel import STAGES, Series

COLOURS = {"invited": "#173a5e", "registered": "#0f766e", "active": "#b45309"}
LABELS = {"invited": "Invited", "registered": "Registered", "active": "Active"}


def _nice_max(value: int) -> int:
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000):
        if value <= step * 4:
            return step * 4
    return ((value // 10000) + 1) * 10000


def funnel_chart(series: Series, title: str, chart_id: str) -> Markup:
    """Grouped bars (invited, registered, active) per day, with axes, gridlines and a legend."""
    days = series.days
    width, height = 880, 260
    left, right, top, bottom = 44, 12, 34, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    top_value = _nice_max(max([1] + [v for s in STAGES for v in series.per_day[s]]))
    slot = plot_w / max(1, len(days))
    bar = max(1.0, min(14.0, (slot - 4) / 3))
    desc = (f"From {days[0].isoformat()} to {days[-1].isoformat()}: {series.totals['invited']} invited, "
            f"{series.totals['registered']} registered, {series.totals['active']} active.")
    parts = [f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-labelledby="{escape(chart_id)}-title {escape(chart_id)}-desc" xmlns="http://www.w3.org/2000/svg">',
             f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
             f'<desc id="{escape(chart_id)}-desc">{escape(desc)}</desc>']
    for i in range(5):  # gridlines and y labels: 0, 1/4, ..., top
        value = top_value * i // 4
        y = top + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dde3ea"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12" fill="#3c4b5a">{value}</text>')
    label_every = max(1, round(len(days) / 10))
    for i, day in enumerate(days):
        x0 = left + i * slot + (slot - 3 * bar) / 2
        for j, stage in enumerate(STAGES):
            value = series.per_day[stage][i]
            if value:
                h = plot_h * value / top_value
                parts.append(f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                             f'fill="{COLOURS[stage]}" data-stage="{stage}" data-day="{day.isoformat()}" data-value="{value}">'
                             f'<title>{day.isoformat()}: {value} {stage}</title></rect>')
        if i % label_every == 0 or i == len(days) - 1:
            parts.append(f'<text x="{left + i * slot + slot / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" '
                         f'font-size="12" fill="#3c4b5a">{day.strftime("%b %d")}</text>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#5b6b7b"/>')
    x = left
    for stage in STAGES:  # the legend, with each stage's total for the period
        text = f"{LABELS[stage]} ({series.totals[stage]})"
        parts.append(f'<rect x="{x}" y="8" width="12" height="12" fill="{COLOURS[stage]}"/>'
                     f'<text x="{x + 17}" y="18" font-size="13" fill="#1b2733">{escape(text)}</text>')
        x += 30 + 8 * len(text)
    parts.append("</svg>")
    return Markup("".join(parts))
