"""The "stories over time" chart: articles per day stacked by language, as inline SVG (no JavaScript).

Rendered on the server so it shows without scripts and in screenshots. Input is
``{day: {lang: count}}``; days without coverage between the first and last day are drawn as gaps.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta

from sednaya_monitor.web.html import esc
from sednaya_monitor.web.models import EARLIEST_DATE, latest_date

WIDTH = 760  # viewBox units; the SVG scales to its container
HEIGHT = 240
MARGIN_LEFT = 40
MARGIN_BOTTOM = 40
MARGIN_TOP = 28
MAX_BARS = 120  # longer spans are binned by week, then month, so bars stay wider than a pixel
# Fixed colours for the languages we see most; others cycle through the tail of the palette.
LANG_COLOURS = {"ar": "#1f77b4", "en": "#d62728", "fr": "#2ca02c", "de": "#9467bd", "tr": "#ff7f0e"}
EXTRA_COLOURS = ("#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def colour(lang: str, order: list[str]) -> str:
    if lang in LANG_COLOURS:
        return LANG_COLOURS[lang]
    extras = [x for x in order if x not in LANG_COLOURS]
    return EXTRA_COLOURS[extras.index(lang) % len(EXTRA_COLOURS)] if lang in extras else EXTRA_COLOURS[0]


def plausible(volume: Mapping[date, Mapping[str, int]]) -> tuple[dict[date, Mapping[str, int]], int]:
    """``(days from 1990-01-01 to tomorrow, count of articles on other days)``.

    A store can hold dates like 0001-01-01 or 9999-12-31 (a bad feed); charting them would stretch the
    axis over millennia and flatten every real bar, so they are counted and named instead.
    """
    lo, hi = EARLIEST_DATE.date(), latest_date().date()
    kept = {d: langs for d, langs in volume.items() if lo <= d <= hi}
    dropped = sum(n for d, langs in volume.items() if not lo <= d <= hi for n in langs.values())
    return kept, dropped


def _month_starts(first: date, last: date) -> list[date]:
    out: list[date] = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        out.append(date(year, month, 1))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _year_step(years: int) -> int:
    """Years per bar so that ``years`` years fit in MAX_BARS bars: 1, 2, 5, 10, 20, 50, 100, ..."""
    step = 1
    while years > MAX_BARS * step:
        for factor in (2, 5, 10):
            if years <= MAX_BARS * step * factor:
                return step * factor
        step *= 10
    return step


def bins(first: date, last: date) -> tuple[str, list[date]]:
    """Bar width for the span ``first..last`` and the bin start dates, at most MAX_BARS bars.

    Units: ``day``, ``week`` (Monday), ``month``, ``year``, then ``N-year`` bins (N = 2, 5, 10, 20,
    ...), so any span of stored dates, 0001-01-01 to 9999-12-31 included, gives a drawable chart. No
    arithmetic leaves the ``date`` range (no ``OverflowError`` at either end).
    """
    span = (last - first).days + 1
    if span <= MAX_BARS:
        return "day", [first + timedelta(days=i) for i in range(span)]
    if span <= MAX_BARS * 7:
        start = first - timedelta(days=first.weekday())  # date.min is a Monday: never below it
        return "week", [start + timedelta(weeks=i) for i in range((last - start).days // 7 + 1)]
    months = (last.year - first.year) * 12 + last.month - first.month + 1
    if months <= MAX_BARS:
        return "month", _month_starts(first, last)
    step = _year_step(last.year - first.year + 1)
    unit = "year" if step == 1 else f"{step}-year"
    first_year = max(1, first.year - first.year % step)
    return unit, [date(y, 1, 1) for y in range(first_year, last.year + 1, step)]


def bin_of(day: date, unit: str) -> date:
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    if unit == "year":
        return date(day.year, 1, 1)
    if unit.endswith("-year"):
        step = int(unit.split("-", maxsplit=1)[0])
        return date(max(1, day.year - day.year % step), 1, 1)
    return day


def _label(day: date, unit: str, many: bool) -> str:
    """Axis label (ISO strings: ``strftime`` pads years below 1000 differently by platform)."""
    iso = day.isoformat()
    if unit == "month":
        return iso[:7]
    if unit == "year" or unit.endswith("-year"):
        return iso[:4]
    return iso[5:] if many else iso


def volume_svg(volume: Mapping[date, Mapping[str, int]], *, title: str = "Articles per day by language") -> str:
    """An ``<svg>`` stacked bar chart of ``volume``; a short note instead when there is nothing to draw.

    Bars are days; a span longer than MAX_BARS days is drawn by week, longer still by month (the
    title says which). Each bar segment carries ``data-day``/``data-lang``/``data-count`` and a tooltip.
    """
    drawn = [d for d, langs in volume.items() if any(n > 0 for n in langs.values())]  # days with a bar
    if not drawn:
        return '<p class="muted">No dated articles to chart.</p>'
    unit, days = bins(min(drawn), max(drawn))
    counts: dict[date, dict[str, int]] = {}
    for d in drawn:  # into the bars' bins in one pass (no filtered copy of the input first)
        slot = counts.setdefault(d if unit == "day" else bin_of(d, unit), {})
        for lang, n in volume[d].items():
            if n > 0:
                slot[lang] = slot.get(lang, 0) + n
    if unit != "day":
        per = f"{unit.split('-')[0]} years" if unit.endswith("-year") else unit
        title = title.replace("per day", f"per {per}")
    totals = {lang: 0 for d in days for lang in counts.get(d, {})}
    for d in days:
        for lang, n in counts.get(d, {}).items():
            totals[lang] += n
    langs = sorted(totals, key=lambda x: (-totals[x], x))
    peak = max(sum(counts.get(d, {}).values()) for d in days)
    plot_w = WIDTH - MARGIN_LEFT - 10
    plot_h = HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    step = plot_w / len(days)
    bar_w = max(1.0, step * 0.8)
    parts: list[str] = [
        (
            f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
            f'xmlns="http://www.w3.org/2000/svg" aria-label="{esc(title)}">'
        ),
        f"<title>{esc(title)}</title>",
        f'<text x="{MARGIN_LEFT}" y="16" font-size="13" font-weight="600">{esc(title)}</text>',
        (
            f'<line x1="{MARGIN_LEFT}" y1="{MARGIN_TOP + plot_h}" x2="{WIDTH - 10}" y2="{MARGIN_TOP + plot_h}" '
            'stroke="#888"/>'
        ),
        f'<text x="{MARGIN_LEFT - 6}" y="{MARGIN_TOP + 4}" font-size="10" text-anchor="end">{peak}</text>',
        f'<text x="{MARGIN_LEFT - 6}" y="{MARGIN_TOP + plot_h}" font-size="10" text-anchor="end">0</text>',
    ]
    shown = {lang: (esc(lang), colour(lang, langs)) for lang in langs}  # once per language, not per bar
    width = f"{bar_w:.1f}"  # the same for every bar, and x for every segment of a bar: formatted once
    for i, d in enumerate(days):
        per_lang = counts.get(d)
        if not per_lang:
            continue
        bar_x = f"{MARGIN_LEFT + i * step + (step - bar_w) / 2:.1f}"
        y = float(MARGIN_TOP + plot_h)
        iso = d.isoformat()
        for lang in langs:
            n = per_lang.get(lang, 0)
            if not n:
                continue
            h = plot_h * n / peak
            y -= h
            name, fill = shown[lang]
            parts.append(
                f'<rect class="bar" data-day="{iso}" data-lang="{name}" data-count="{n}" '
                f'x="{bar_x}" y="{y:.1f}" width="{width}" height="{h:.1f}" fill="{fill}">'
                f"<title>{iso} {name}: {n}</title></rect>"
            )
    label_every = max(1, len(days) // 8)
    for i in range(0, len(days), label_every):
        x = MARGIN_LEFT + i * step + step / 2
        parts.append(
            f'<text x="{x:.1f}" y="{MARGIN_TOP + plot_h + 14}" font-size="10" text-anchor="middle">'
            f"{_label(days[i], unit, len(days) > 16)}</text>"
        )
    lx = MARGIN_LEFT
    for lang in langs:
        parts.append(
            f'<rect x="{lx}" y="{HEIGHT - 14}" width="10" height="10" fill="{colour(lang, langs)}"/>'
            f'<text x="{lx + 14}" y="{HEIGHT - 5}" font-size="11">{esc(lang)} ({totals[lang]})</text>'
        )
        lx += 24 + 8 * len(f"{lang} ({totals[lang]})")
    parts.append("</svg>")
    return "".join(parts)
