"""Pictures of load runs: a timeline of every request and a latency chart.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so nothing is shown
twice; :class:`Picture` gives Jupyter a PNG and a terminal a one-line description.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from matplotlib.figure import Figure

from ._threads import describe_threads, thread_order

if TYPE_CHECKING:
    from .loadgen import LoadResult

# Colour-blind-safe (Okabe–Ito); the event loop always gets the first colour.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
ERROR_COLOUR = "#B00020"


class Picture:
    """A matplotlib figure that shows itself as a PNG in Jupyter and as text elsewhere."""

    def __init__(self, figure: Figure, description: str) -> None:
        self.figure = figure
        self.description = description

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.save(buffer)
        return buffer.getvalue()

    def save(self, path: str | io.BytesIO) -> None:
        # An opaque white background, whatever the learner's matplotlibrc says: dark text on a
        # transparent PNG disappears in JupyterLab's dark theme.
        self.figure.savefig(
            path, format="png", dpi=100, bbox_inches="tight", facecolor="white", transparent=False
        )

    def __repr__(self) -> str:
        return f"[picture: {self.description}]"


def _unique_legend(axes: Any, **options: Any) -> None:
    """A legend with each label once (bars and spans repeat their labels), if there is any."""
    handles, labels = axes.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    if unique:
        axes.legend(unique.values(), unique.keys(), **options)


def _thread_colours(names: Sequence[str]) -> dict[str, str]:
    ordered = sorted(set(names), key=thread_order)
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(ordered)}


def _summary_legend(colours: dict[str, str], failed: bool, blocked: bool) -> list[Any]:
    """Legend entries for a run served by more threads than a legend can list."""
    from matplotlib.patches import Patch

    workers = [name for name in colours if name.startswith("worker")]
    handles = []
    if "event loop" in colours:
        handles.append(Patch(color=colours["event loop"], label="event loop"))
    if workers:
        label = f"{len(workers)} worker threads (colours repeat)"
        handles.append(Patch(color=colours[sorted(workers, key=thread_order)[0]], label=label))
    if failed:
        handles.append(Patch(color=ERROR_COLOUR, label="failed"))
    if blocked:
        handles.append(Patch(color="grey", alpha=0.2, label="event loop blocked"))
    return handles


def timeline(result: LoadResult, title: str | None = None, max_legend: int = 8) -> Picture:
    """One horizontal bar per request, from its start to its end, coloured by serving thread."""
    records = sorted(result.records, key=lambda r: (r.start_s, r.index))
    origin = result.started_s
    threads = [r.served_by or ("failed" if not r.ok else "unknown") for r in records]
    colours = _thread_colours([t for t in threads if t != "failed"])
    colours["failed"] = ERROR_COLOUR

    height = min(7.0, 1.6 + 0.12 * len(records))
    figure = Figure(figsize=(9, height))
    axes = figure.subplots()
    for row, (record, thread) in enumerate(zip(records, threads, strict=True)):
        axes.barh(
            row,
            record.latency_s,
            left=record.start_s - origin,
            color=colours[thread],
            height=0.8 if len(records) < 60 else 1.0,
            label=thread,
        )
    for block in result.loop_blocks:
        axes.axvspan(
            block.start_s - origin, block.end_s - origin, color="grey", alpha=0.2,
            label="event loop blocked",
        )
    # outside the axes, so it never hides a bar
    legend_place: dict[str, Any] = {
        "loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": "small", "frameon": False
    }
    if len(set(axes.get_legend_handles_labels()[1])) <= max_legend:
        _unique_legend(axes, **legend_place)
    else:
        # too many threads to list one by one: say what the colours mean instead
        summary = _summary_legend(colours, "failed" in threads, bool(result.loop_blocks))
        axes.legend(handles=summary, **legend_place)
    axes.set_xlabel("seconds since the first request started")
    paths = {r.path for r in records}
    axes.set_ylabel("request (in start order)")
    if 1 < len(paths) and len(records) <= 40:
        # a mixed run: name each row by the path it requested
        axes.set_yticks(range(len(records)), [r.path for r in records], fontsize="small")
    axes.invert_yaxis()
    axes.set_title(title or f"{result.n} requests, {result.wall_s:.2f} s wall")
    figure.tight_layout()
    served = describe_threads(result.served_by)
    return Picture(
        figure,
        f"timeline of {result.n} requests over {result.wall_s:.2f} s (served by {served})",
    )


def latency_chart(result: LoadResult, title: str | None = None) -> Picture:
    """Every request's latency, sorted from fastest to slowest, with p50 and p95 marked."""
    latencies_ms = sorted(latency * 1000 for latency in result.latencies_s)
    figure = Figure(figsize=(8, 3.2))
    axes = figure.subplots()
    axes.plot(
        range(1, len(latencies_ms) + 1), latencies_ms,
        marker="." if len(latencies_ms) < 80 else "", color=PALETTE[0],
    )
    for q, style in ((50, "--"), (95, ":")):
        value = result.percentile(q) * 1000
        axes.axhline(value, linestyle=style, color="grey")
        axes.annotate(
            f"p{q} {value:.0f} ms", (1, value),
            textcoords="offset points", xytext=(4, 4), fontsize="small",
        )
    axes.set_xlabel("requests, fastest to slowest")
    axes.set_ylabel("latency (ms)")
    axes.set_ylim(bottom=0)
    axes.set_title(title or f"latency of {result.n} requests")
    figure.tight_layout()
    return Picture(
        figure,
        f"latency chart: p50 {result.p50 * 1000:.0f} ms, p95 {result.p95 * 1000:.0f} ms, "
        f"max {result.max_s * 1000:.0f} ms",
    )


TaskLog = Sequence[tuple[float, str, str]]
"""``(perf_counter time, task name, event)`` rows, two per task: its start and its finish."""


def task_timeline(runs: dict[str, tuple[TaskLog, float]]) -> Picture:
    """One panel per run, one bar per task from its first to its last logged moment.

    ``runs`` maps a panel title to ``(log, t0)``; times are drawn relative to ``t0``.
    """
    figure = Figure(figsize=(8, 1.2 + 1.3 * len(runs)))
    panels = figure.subplots(len(runs), 1, sharex=True, squeeze=False)[:, 0]
    longest = max(max(at for at, _, _ in log) - t0 for log, t0 in runs.values())
    for axes, (title, (log, t0)) in zip(panels, runs.items(), strict=True):
        names = sorted({name for _, name, _ in log})
        for row, name in enumerate(names):
            moments = [at - t0 for at, who, _ in log if who == name]
            start, end = min(moments), max(moments)
            axes.barh(
                row, end - start, left=start, height=0.5,
                color=PALETTE[row % len(PALETTE)], alpha=0.35,
            )
            axes.plot([start, end], [row, row], "|", color="black", markersize=16, mew=2)
            axes.annotate(f"{name} done at {end:.2f} s", (end, row), xytext=(6, 0),
                          textcoords="offset points", va="center", fontsize="small")
        axes.set_yticks(range(len(names)), names)
        axes.invert_yaxis()
        axes.set_title(title, fontsize="medium")
    panels[-1].set_xlim(-0.02, longest * 1.3)
    panels[-1].set_xlabel("seconds since the first task started  (bar = suspended at await)")
    figure.tight_layout()
    return Picture(figure, "task timeline: " + "; ".join(runs))


def probe_latency(
    title: str,
    lines: Sequence[tuple[str, LoadResult, str]],
    busy: LoadResult | None = None,
) -> Picture:
    """What a health monitor sees: each probe's latency against the moment it was sent.

    ``lines`` holds ``(label, run, probe path)``; grey bands mark loop blocks, and ``busy``
    (optional) shades the time another run's slow traffic was in flight.
    """
    figure = Figure(figsize=(8, 3.2))
    axes = figure.subplots()
    for label, run, path in lines:
        sent = run.for_path(path).records
        axes.plot(
            [r.start_s - run.started_s for r in sent],
            [r.latency_s * 1000 for r in sent],
            marker="o", markersize=3, label=label,
        )
        for block in run.loop_blocks:
            axes.axvspan(
                block.start_s - run.started_s, block.end_s - run.started_s,
                color="grey", alpha=0.2, label="event loop blocked",
            )
    if busy is not None:
        origin = lines[0][1].started_s
        axes.axvspan(
            busy.started_s - origin, busy.ended_s - origin, color="orange", alpha=0.15,
            label="slow traffic in flight",
        )
    axes.set(xlabel="probe sent at (seconds since the run began)", ylabel="probe latency (ms)",
             title=title)
    axes.set_ylim(bottom=0)
    _unique_legend(axes, loc="upper right", fontsize="small")
    figure.tight_layout()
    worst = ", ".join(
        f"{label} worst {run.for_path(path).max_s * 1000:.0f} ms" for label, run, path in lines
    )
    return Picture(figure, f"{title}: {worst}")


def blocked_by_route(rows: Sequence[tuple[str, float]], threshold_ms: float) -> Picture:
    """How long each route's requests held the event loop, one bar per route: the app
    doctor's picture. ``rows`` holds ``(route, blocked ms)``."""
    height = max(1.6, 0.32 * len(rows) + 1.0)
    figure = Figure(figsize=(8, height))
    axes = figure.subplots()
    labels = [label for label, _ in rows][::-1]
    values = [value for _, value in rows][::-1]
    colours = [ERROR_COLOUR if value > 0 else PALETTE[2] for value in values]
    axes.barh(labels, values, color=colours)
    for y, value in enumerate(values):
        axes.text(value, y, f" {value:.0f} ms", va="center", fontsize="small")
    axes.set(xlabel=f"event loop blocked during the route's burst (ms; blocks of "
             f"{threshold_ms:g} ms or more)", title="Which routes hold the event loop")
    axes.set_xlim(0, max([*values, threshold_ms]) * 1.25)
    figure.tight_layout()
    blocked = [f"{label} {value:.0f} ms" for label, value in rows if value > 0]
    return Picture(figure, "loop blocked by route: " + ("; ".join(blocked) or "none"))
