"""The HTML report: one self-contained page, tables and charts, readable offline. Pure: a
``Report`` and its ``MetricsTable`` in, a string out.

The charts are drawn with matplotlib and inlined as SVG: the most used and best kept plotting
library in Python, it needs no browser, no JavaScript and no network, and its SVG (text drawn as
paths, ``svg.fonttype = path``) depends on no installed font. A JavaScript charting library would
have to be inlined (hundreds of kilobytes) and run in the reader's browser. Each chart gets its
own ``svg.hashsalt``: matplotlib derives the SVG's element ids from it, and two inline SVGs of
one page must not share ids.

Every text that comes from the data (probe names, field names, persona values) is escaped; the
page has no script, no external stylesheet, font or image: nothing to fetch. Very long series are
thinned for drawing only (the minimum and maximum of each bucket are kept, so spikes stay
visible); every figure in the tables is computed from all values.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from html import escape

import numpy as np
from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from ..probe_log_format import DURATION, rfc3339_millis
from .analysis import Anomaly, FieldStatistics, ProbeReport, Report, numeric_fields
from .records import MetricsTable, ProbeSeries

# Points drawn per series at most (twice the buckets: each keeps its minimum and maximum).
DRAWN_BUCKETS = 1000
# Rows shown in the page's long tables (the JSON output has them all).
TABLE_ROWS = 50
CHART_WIDTH_INCHES = 11.0

ANOMALY_COLOUR = "#d62728"
LINE_COLOUR = "#1f77b4"
DOWN_COLOUR = "#ff9896"

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 2px solid #1f77b4; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .5em 0 1.5em; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eef3f8; }
.chart svg { width: 100%; height: auto; }
.note { color: #666; font-size: .85em; }
"""


def report_html(report: Report, table: MetricsTable) -> str:
    """The whole page."""
    ids = _Counter()
    # Texts from the data (field names, persona values) are drawn as written: matplotlib would
    # read "$...$" in them as mathematics, and fail on what is not ("$\frac{$"). Texts read
    # the setting when they are made, tick labels as late as the drawing: every figure is built
    # and drawn inside.
    with rc_context({"text.parse_math": False}):
        sections = [
            _probe_section(probe, table.probes[probe.probe], table.gauges, ids)
            for probe in report.probes
        ]
    sources = ", ".join(escape(source) for source in report.sources)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>Lumen metrics report</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n"
        "<h1>Lumen metrics report</h1>\n"
        f'<p class="note">From {sources}. Anomalies: |z| &gt; {report.z_threshold:g} '
        "with the sample standard deviation; percentiles by linear interpolation.</p>\n"
        + "".join(sections)
        + "</body>\n</html>\n"
    )


def _probe_section(
    probe: ProbeReport, series: ProbeSeries, gauges: tuple[str, ...], ids: _Counter
) -> str:
    parts = [f"<section>\n<h2>Probe {escape(probe.probe)}</h2>\n"]
    parts.append(
        _table(
            ["records", "first", "last", "span"],
            [
                [
                    str(probe.records),
                    rfc3339_millis(probe.first),
                    rfc3339_millis(probe.last),
                    _duration(probe.span_seconds),
                ]
            ],
        )
    )
    parts.append(_health(probe))
    parts.append(_chart(ids, _success_chart(series, probe)))
    parts.append("<h3>Statistics</h3>\n")
    parts.append(_statistics_table(probe.statistics))
    by_field: dict[str, list[Anomaly]] = {}
    for anomaly in probe.anomalies:
        by_field.setdefault(anomaly.field, []).append(anomaly)
    parts.append("<h3>Time series (anomalies marked)</h3>\n")
    for name in numeric_fields(series, gauges):
        times, values = series.field_values(name)
        parts.append(_chart(ids, _series_chart(name, times, values, by_field.get(name, []))))
    response_field = _response_field(probe.statistics)
    if response_field is not None:
        values = series.field_values(response_field)[1]
        parts.append(f"<h3>Response time distribution ({escape(response_field)})</h3>\n")
        parts.append(_chart(ids, _histogram(response_field, values)))
    parts.append(_personas(probe, ids))
    parts.append(_downtime_table(probe))
    parts.append(_anomaly_table(probe.anomalies))
    parts.append("</section>\n")
    return "".join(parts)


class _Counter:
    """Chart numbers, for distinct SVG id salts."""

    def __init__(self) -> None:
        self.next = 0

    def take(self) -> int:
        self.next += 1
        return self.next


def _health(probe: ProbeReport) -> str:
    health = probe.health
    mock = (
        f"{health.mock_mode_percent:.2f}% ({health.mock_records} of {health.mock_known})"
        if health.mock_mode_percent is not None
        else f"no {escape(health.mock_field)} values"
    )
    parts = [
        "<h3>Health</h3>\n",
        _table(
            ["uptime", "successes", "failures", "mock mode", "downtime periods"],
            [
                [
                    f"{health.uptime_percent:.2f}%",
                    str(health.successes),
                    str(health.failures),
                    mock,
                    str(len(health.downtime)),
                ]
            ],
            escaped=True,
        ),
    ]
    return "".join(parts)


def _downtime_table(probe: ProbeReport) -> str:
    health = probe.health
    parts = [f"<h3>Downtime periods ({len(health.downtime)})</h3>\n"]
    if health.downtime:
        longest = sorted(health.downtime, key=lambda d: (-d.records, d.start))[:TABLE_ROWS]
        rows = [
            [
                rfc3339_millis(d.start),
                rfc3339_millis(d.end),
                _duration(d.duration_seconds),
                str(d.records),
                "still down" if d.recovered_at is None else rfc3339_millis(d.recovered_at),
            ]
            for d in sorted(longest, key=lambda d: d.start)
        ]
        parts.append(_note_more("downtime periods", len(health.downtime), "longest"))
        parts.append(_table(["start", "end", "duration", "failed runs", "recovered"], rows))
    return "".join(parts)


def _statistics_table(statistics: Sequence[FieldStatistics]) -> str:
    rows = [
        [
            f.field,
            str(f.count),
            _number(f.minimum),
            _number(f.maximum),
            _number(f.mean),
            _number(f.median),
            "-" if f.stdev is None else _number(f.stdev),
            _number(f.p95),
            _number(f.p99),
        ]
        for f in statistics
    ]
    return _table(["field", "count", "min", "max", "mean", "median", "stdev", "p95", "p99"], rows)


def _anomaly_table(anomalies: Sequence[Anomaly]) -> str:
    if not anomalies:
        return "<p>No anomalies.</p>\n"
    strongest = sorted(anomalies, key=lambda a: -abs(a.z_score))[:TABLE_ROWS]
    rows = [
        [a.field, rfc3339_millis(a.timestamp), _number(a.value), f"{a.z_score:+.2f}"]
        for a in sorted(strongest, key=lambda a: (a.timestamp, a.field))
    ]
    return (
        f"<h3>Anomalies ({len(anomalies)})</h3>\n"
        + _note_more("anomalies", len(anomalies), "strongest")
        + _table(["field", "time", "value", "z-score"], rows)
    )


def _personas(probe: ProbeReport, ids: _Counter) -> str:
    title = f"<h3>Personas ({escape(probe.persona_field)})</h3>\n"
    if not probe.personas:
        return title + f"<p>No {escape(probe.persona_field)} values.</p>\n"
    rows = [[s.value, str(s.count), f"{s.percent:.2f}%"] for s in probe.personas]
    return title + _table(["persona", "runs", "share"], rows) + _chart(ids, _persona_chart(probe))


def _note_more(what: str, total: int, which: str) -> str:
    if total <= TABLE_ROWS:
        return ""
    return f'<p class="note">{total} {what}: the {TABLE_ROWS} {which} shown (JSON has all).</p>\n'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], escaped: bool = False) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if escaped else escape(c)}</td>" for c in row) + "</tr>\n"
        for row in rows
    )
    return f"<table>\n<tr>{head}</tr>\n{body}</table>\n"


def _number(value: float) -> str:
    return f"{value:.6g}"


def _duration(seconds: float) -> str:
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _response_field(statistics: Sequence[FieldStatistics]) -> str | None:
    names = [f.field for f in statistics]
    preferred = [n for n in names if n.endswith("response_time_ms")]
    if preferred:
        return preferred[0]
    return DURATION if DURATION in names else None


# Charts ------------------------------------------------------------------------------------


def _chart(ids: _Counter, figure: Figure) -> str:
    buffer = io.StringIO()
    with rc_context({"svg.hashsalt": f"lumen-chart-{ids.take()}", "svg.fonttype": "path"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    # Inline SVG needs no XML declaration nor DOCTYPE (which names an external DTD).
    svg = svg[svg.index("<svg") :]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.DOTALL)
    return f'<div class="chart">{svg}</div>\n'


def _figure(height: float) -> Figure:
    # Fixed margins rather than a tight bounding box: that would draw every chart twice.
    figure = Figure(figsize=(CHART_WIDTH_INCHES, height))
    figure.subplots_adjust(left=0.08, right=0.98, bottom=0.6 / height, top=1 - 0.3 / height)
    return figure


def _dates(times: Sequence[float] | np.ndarray) -> np.ndarray:
    return (np.asarray(times, dtype=np.float64) * 1000).astype("datetime64[ms]")


def thinned(times: Sequence[float], values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """At most ``2 * DRAWN_BUCKETS`` points: each bucket's minimum and maximum, in time order."""
    t = np.asarray(times, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if t.size <= 2 * DRAWN_BUCKETS:
        return t, v
    keep: list[int] = []
    for bucket in np.array_split(np.arange(t.size), DRAWN_BUCKETS):
        low, high = bucket[np.argmin(v[bucket])], bucket[np.argmax(v[bucket])]
        keep.extend(sorted({int(low), int(high)}))
    index = np.asarray(keep)
    return t[index], v[index]


def _time_axes(figure: Figure) -> Axes:
    axes = figure.add_subplot()
    # matplotlib.dates' constructors carry no annotations; their types are plain.
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    axes.grid(True, alpha=0.3)
    return axes


def _series_chart(
    name: str, times: Sequence[float], values: Sequence[float], anomalies: Sequence[Anomaly]
) -> Figure:
    figure = _figure(2.4)
    axes = _time_axes(figure)
    t, v = thinned(times, values)
    axes.plot(_dates(t), v, color=LINE_COLOUR, linewidth=0.7)
    if anomalies:
        marked = anomalies[: 2 * DRAWN_BUCKETS]
        axes.scatter(
            _dates([a.timestamp for a in marked]),
            [a.value for a in marked],
            s=12,
            color=ANOMALY_COLOUR,
            zorder=3,
            label=f"anomalies ({len(anomalies)})",
        )
    axes.set_title(name, fontsize=9, loc="left")
    if anomalies:
        axes.legend(loc="upper right", fontsize=8)
    return figure


def _success_chart(series: ProbeSeries, probe: ProbeReport) -> Figure:
    figure = _figure(1.6)
    axes = _time_axes(figure)
    for period in probe.health.downtime:
        end = period.recovered_at if period.recovered_at is not None else period.end
        axes.axvspan(*_dates([period.start, end]), color=DOWN_COLOUR, alpha=0.8, linewidth=0)
    t, v = thinned(
        [r.timestamp for r in series.records], [1.0 if r.success else 0.0 for r in series.records]
    )
    axes.step(_dates(t), v, where="post", color=LINE_COLOUR, linewidth=0.8)
    axes.set_yticks([0, 1], ["down", "up"])
    axes.set_ylim(-0.1, 1.1)
    axes.set_title("success (downtime shaded)", fontsize=9)
    return figure


def _histogram(name: str, values: Sequence[float]) -> Figure:
    figure = _figure(3.0)
    axes = figure.add_subplot()
    axes.hist(np.asarray(values, dtype=np.float64), bins=60, color=LINE_COLOUR)
    axes.set_xlabel(name)
    axes.set_ylabel("runs")
    axes.grid(True, alpha=0.3)
    return figure


def _persona_chart(probe: ProbeReport) -> Figure:
    shares = probe.personas[:20]
    figure = _figure(max(1.6, 0.6 + 0.3 * len(shares)))
    axes = figure.add_subplot()
    labels = [share.value for share in reversed(shares)]
    axes.barh(range(len(shares)), [s.count for s in reversed(shares)], color=LINE_COLOUR)
    axes.set_yticks(range(len(shares)), labels)
    axes.set_xlabel("runs")
    figure.subplots_adjust(left=0.3)  # room for long persona names
    return figure
