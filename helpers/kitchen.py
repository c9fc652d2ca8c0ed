"""Lesson 01's restaurant kitchen, run as a real asyncio simulation.

A chef preps each order by hand (the chef is busy, like CPU work), then the dish spends a while
in the oven (the chef is free, like waiting on I/O), then it is served. The *synchronous* chef
watches the oven with a blocking ``time.sleep``; the *asynchronous* chef puts the dish in the
oven with ``await asyncio.sleep`` and starts prepping the next order. Each chef is one thread
running its own event loop, and time is scaled down (by default 1 simulated minute = 20 ms), so
every timeline the learner sees is measured, and :func:`predict` gives the ideal to compare with.

Public API: :func:`run_kitchen`, :func:`predict`, :func:`compare`, :func:`kitchen_explorer`,
:class:`KitchenResult`, :class:`OrderRecord`, :class:`KitchenComparison`.
"""

from __future__ import annotations

import asyncio
import gc
import math
import numbers
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ._frontend import display_mode, ipython_shell
from .plots import Picture

if TYPE_CHECKING:
    import ipywidgets
    from matplotlib.axes import Axes

__all__ = [
    "ChefMode",
    "DEFAULT_MS_PER_MINUTE",
    "DEFAULT_OVEN_MIN",
    "DEFAULT_ORDERS",
    "DEFAULT_PREP_MIN",
    "KitchenComparison",
    "KitchenResult",
    "OrderRecord",
    "compare",
    "kitchen_explorer",
    "predict",
    "run_kitchen",
]

ChefMode = Literal["sync", "async"]

DEFAULT_ORDERS = 6
DEFAULT_PREP_MIN = 2.0
DEFAULT_OVEN_MIN = 10.0
# 20 ms per simulated minute: the default sync run (72 min) takes ~1.4 s, and a 2-minute prep
# is a 40 ms sleep, long enough that scheduler jitter on a busy 2-core machine stays small.
DEFAULT_MS_PER_MINUTE = 20.0

# When the caller does not choose a scale, pick one so the slowest kitchen takes about this long,
# but never finer than _MIN_AUTO_MS_PER_MINUTE (shorter sleeps drown in timer noise).
_AUTO_REAL_BUDGET_S = 1.5
_MIN_AUTO_MS_PER_MINUTE = 5.0
# Refuse runs that would freeze a notebook cell for longer than this.
_MAX_REAL_SECONDS = 30.0
_MAX_CHEFS = 32  # one thread per chef; more than this is a typo, not a kitchen

# Below this many simulated minutes, a dish "waiting for the chef" is timer noise, not a wait.
_VISIBLE_WAIT_MIN = 0.1

_PREP_COLOUR = "#d1495b"
_OVEN_COLOUR = "#edae49"
_WAIT_COLOUR = "#8d99ae"
_SERVED_COLOUR = "#2e4057"


# -- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderRecord:
    """One order's life in simulated minutes since the kitchen opened (t=0)."""

    order: int
    chef: int
    prep_start: float
    prep_end: float
    oven_start: float
    oven_end: float
    served: float

    @property
    def waited_for_chef(self) -> float:
        """Minutes the finished dish sat waiting because its chef's hands were busy."""
        return max(0.0, self.served - self.oven_end)


@dataclass(frozen=True)
class KitchenResult:
    """A kitchen run (measured) or its ideal timeline (predicted), with a timeline plot."""

    mode: ChefMode
    orders: int
    prep_min: float
    oven_min: float
    chefs: int
    records: tuple[OrderRecord, ...] = field(repr=False)
    measured: bool
    ms_per_minute: float | None = None  # real milliseconds per simulated minute (measured runs)
    real_seconds: float | None = None  # wall-clock time of the run, thread start and join included

    @property
    def total_minutes(self) -> float:
        """Simulated minutes until the last dish was served."""
        return max(record.served for record in self.records)

    @property
    def orders_per_hour(self) -> float:
        """Throughput: orders served per simulated hour."""
        return self.orders / self.total_minutes * 60.0

    @property
    def serving_order(self) -> tuple[int, ...]:
        """Order ids in the order their dishes reached the customers."""
        by_time = sorted(self.records, key=lambda record: (record.served, record.order))
        return tuple(record.order for record in by_time)

    @property
    def label(self) -> str:
        """Who cooked: "sync chef", "2 async chefs", ..."""
        return _kitchen_label(self.mode, self.chefs)

    def summary(self) -> str:
        """One line: "sync chef: 72 min, 5.0 orders/h"."""
        return (
            f"{self.label}: {_minutes_text(self.total_minutes)} min, "
            f"{self.orders_per_hour:.1f} orders/h"
        )

    def versus(self, ideal: KitchenResult) -> str:
        """This measured run next to its ideal: "sync chef: measured 72.6 min, ideal 72 min"."""
        gap = (self.total_minutes - ideal.total_minutes) / ideal.total_minutes * 100.0
        return (
            f"{self.label}: measured {_minutes_text(self.total_minutes)} min, "
            f"ideal {_minutes_text(ideal.total_minutes)} min ({gap:+.1f}%)"
        )

    def plot(self, ax: Axes | None = None) -> Picture | Figure:
        """Timeline: one row per order, prep and oven as coloured bars, chef named on each row.

        Draws into ``ax`` when given (the caller owns the legend and gets the Figure back), else
        into a new figure returned as a :class:`~helpers.plots.Picture`.
        """
        if ax is None:
            figure = _new_figure(width=8.0, rows=self.orders)
            ax = figure.add_subplot()
            _draw_timeline(self, ax)
            _add_legend(figure, [self])
            return Picture(figure, f"kitchen timeline: {self.summary()}")
        _draw_timeline(self, ax)
        return ax.figure  # type: ignore[return-value]

    def __str__(self) -> str:
        return self.summary()


@dataclass(frozen=True)
class KitchenComparison:
    """Both chefs on the same orders: measured results, their ideals and a side-by-side plot."""

    sync_chef: KitchenResult
    async_chef: KitchenResult
    ideal_sync: KitchenResult
    ideal_async: KitchenResult
    figure: Figure = field(repr=False)

    @property
    def summary(self) -> str:
        """One line: "sync chef: 72 min, 5.0 orders/h; async chef: 22 min, 16.4 orders/h"."""
        return f"{self.sync_chef.summary()}; {self.async_chef.summary()}"

    @property
    def measured_vs_ideal(self) -> str:
        """Two lines, one per chef: what was measured next to what the arithmetic predicts."""
        return (
            f"{self.sync_chef.versus(self.ideal_sync)}\n"
            f"{self.async_chef.versus(self.ideal_async)}"
        )

    def __str__(self) -> str:
        return f"{self.summary}\n{self.measured_vs_ideal}"

    def report(self, name: str) -> None:
        """Print and record each chef's real cooking time next to the arithmetic's ideal
        (``helpers.timing.report``), labelled ``"<name>: <chef>"``."""
        from .timing import report

        pairs = ((self.sync_chef, self.ideal_sync), (self.async_chef, self.ideal_async))
        for measured, ideal in pairs:
            assert measured.ms_per_minute is not None and measured.real_seconds is not None
            ideal_s = ideal.total_minutes * measured.ms_per_minute / 1000
            report(f"{name}: {measured.label}", measured.real_seconds, ideal_s=ideal_s)

    def plot(self) -> Picture:
        """Both kitchens side by side."""
        return Picture(self.figure, f"kitchens side by side: {self.summary}")

    def _ipython_display_(self) -> None:
        # Lets a lesson end a cell with `compare(...)` and get the text and the picture.
        from IPython.display import display

        print(self)
        display(self.plot())


# -- the arithmetic ------------------------------------------------------------------------


def predict(
    mode: ChefMode,
    orders: int = DEFAULT_ORDERS,
    prep_min: float = DEFAULT_PREP_MIN,
    oven_min: float = DEFAULT_OVEN_MIN,
    chefs: int = 1,
) -> KitchenResult:
    """The ideal timeline, by arithmetic: what a run would show if every wait were exact.

    Same rules as :func:`run_kitchen`: the next waiting order goes to the chef who is free first
    (lowest number on a tie); a sync chef stays with a dish until it is served; an async chef
    preps back to back, and a dish that leaves the oven while its chef is mid-prep is served when
    that prep ends (serving itself takes no time).
    """
    _validate(mode, orders, prep_min, oven_min, chefs)
    orders, chefs, prep_min, oven_min = int(orders), int(chefs), float(prep_min), float(oven_min)
    free_at = [0.0] * chefs
    # Each chef's prep intervals, so an async dish knows when its chef's hands are free again.
    preps_by_chef: list[list[tuple[float, float]]] = [[] for _ in range(chefs)]
    planned: list[tuple[int, int, float, float, float, float]] = []
    for order in range(1, orders + 1):
        chef_index = min(range(chefs), key=lambda index: (free_at[index], index))
        prep_start = free_at[chef_index]
        prep_end = prep_start + prep_min
        oven_end = prep_end + oven_min
        free_at[chef_index] = oven_end if mode == "sync" else prep_end
        preps_by_chef[chef_index].append((prep_start, prep_end))
        planned.append((order, chef_index, prep_start, prep_end, prep_end, oven_end))

    records = []
    for order, chef_index, prep_start, prep_end, oven_start, oven_end in planned:
        served = oven_end
        if mode == "async":
            for busy_from, busy_until in preps_by_chef[chef_index]:
                if busy_from < oven_end < busy_until:
                    served = busy_until
        records.append(
            OrderRecord(order, chef_index + 1, prep_start, prep_end, oven_start, oven_end, served)
        )
    return KitchenResult(
        mode=mode,
        orders=orders,
        prep_min=prep_min,
        oven_min=oven_min,
        chefs=chefs,
        records=tuple(records),
        measured=False,
    )


# -- the real kitchen ------------------------------------------------------------------------


def run_kitchen(
    mode: ChefMode,
    orders: int = DEFAULT_ORDERS,
    prep_min: float = DEFAULT_PREP_MIN,
    oven_min: float = DEFAULT_OVEN_MIN,
    chefs: int = 1,
    *,
    ms_per_minute: float | None = None,
) -> KitchenResult:
    """Cook ``orders`` for real with ``chefs`` sync or async chefs and return the measured timeline.

    Each chef is a thread running its own fresh event loop (``asyncio.run``), so this works from a
    Jupyter cell, whose thread already runs the kernel's loop. ``ms_per_minute`` is the real time
    of one simulated minute: by default 20 ms, or finer (down to 5 ms) when a kitchen would
    otherwise take longer than 1.5 s. Blocks until the last dish is served.
    """
    _validate(mode, orders, prep_min, oven_min, chefs)
    ideal = predict(mode, orders, prep_min, oven_min, chefs)
    scale = _choose_scale(ideal.total_minutes, ms_per_minute)
    with _no_gc_pauses():
        return _cook(ideal, scale)


def compare(
    orders: int = DEFAULT_ORDERS,
    prep_min: float = DEFAULT_PREP_MIN,
    oven_min: float = DEFAULT_OVEN_MIN,
    chefs: int = 1,
    *,
    ms_per_minute: float | None = None,
) -> KitchenComparison:
    """Run the sync and the async kitchen on the same orders and put them side by side.

    Both kitchens use the same time scale and run at the same time (they mostly sleep, so they
    do not disturb each other), which keeps the default comparison to about 1.5 s.
    """
    _validate("sync", orders, prep_min, oven_min, chefs)
    ideal_sync = predict("sync", orders, prep_min, oven_min, chefs)
    ideal_async = predict("async", orders, prep_min, oven_min, chefs)
    # The sync kitchen is never faster, so it sets the scale for both.
    scale = _choose_scale(ideal_sync.total_minutes, ms_per_minute)
    with _no_gc_pauses(), ThreadPoolExecutor(max_workers=2, thread_name_prefix="kitchen") as pool:
        sync_run = pool.submit(_cook, ideal_sync, scale)
        async_run = pool.submit(_cook, ideal_async, scale)
        sync_result, async_result = sync_run.result(), async_run.result()
    return KitchenComparison(
        sync_chef=sync_result,
        async_chef=async_result,
        ideal_sync=ideal_sync,
        ideal_async=ideal_async,
        figure=_side_by_side(sync_result, async_result),
    )


@contextmanager
def _no_gc_pauses() -> Iterator[None]:
    """Collect garbage now and hold the collector off while the kitchen cooks, as timeit does.

    A full collection in a kernel full of figures stops every thread for ~70 ms (measured here),
    which would show up as a late dish that no chef caused. The kitchen itself makes almost no
    garbage, so pausing the collector for a second or two costs nothing.
    """
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class _OrderLog:
    """Raw ``time.monotonic()`` stamps for one order, filled in by the chef who took it."""

    order: int
    chef: int
    prep_start: float = math.nan
    prep_end: float = math.nan
    oven_start: float = math.nan
    oven_end: float = math.nan
    served: float = math.nan


_ChefShift = Callable[
    ["queue.SimpleQueue[int]", int, float, float, list[_OrderLog]], Coroutine[Any, Any, None]
]


async def _sync_chef_shift(
    waiting: queue.SimpleQueue[int],
    chef: int,
    prep_s: float,
    oven_s: float,
    logs: list[_OrderLog],
) -> None:
    """A coroutine that never awaits: every wait is a blocking call, so its loop is stuck too."""
    while True:
        try:
            order = waiting.get_nowait()
        except queue.Empty:
            return
        log = _OrderLog(order, chef)
        logs.append(log)
        log.prep_start = time.monotonic()
        time.sleep(prep_s)  # hands-on work: the chef can do nothing else
        log.prep_end = log.oven_start = time.monotonic()
        time.sleep(oven_s)  # stands watching the oven: a blocking wait, nothing else gets done
        log.oven_end = log.served = time.monotonic()


async def _async_chef_shift(
    waiting: queue.SimpleQueue[int],
    chef: int,
    prep_s: float,
    oven_s: float,
    logs: list[_OrderLog],
) -> None:
    """Preps back to back; each dish waits in the oven as its own task, served once ready."""
    loop = asyncio.get_running_loop()
    in_oven: list[tuple[_OrderLog, asyncio.Task[None]]] = []

    async def bake_and_serve(log: _OrderLog) -> None:
        # loop.time() is time.monotonic(), so these stamps share the chefs' clock.
        log.oven_start = loop.time()
        # The oven keeps exact time on its own; the chef notices only when back at the loop.
        log.oven_end = log.oven_start + oven_s
        await asyncio.sleep(oven_s)
        log.served = time.monotonic()

    while True:
        # A free chef first serves every dish whose timer has gone off, then takes a new order.
        # Without this, asyncio would run this loop's next step before the dishes' wake-ups
        # and every ready dish would wait one extra prep.
        for log, dish in in_oven:
            if not dish.done() and log.oven_end <= loop.time():
                await dish
        try:
            order = waiting.get_nowait()
        except queue.Empty:
            break
        log = _OrderLog(order, chef)
        logs.append(log)
        log.prep_start = time.monotonic()
        time.sleep(prep_s)  # hands-on work blocks this chef's loop, exactly like CPU work would
        log.prep_end = time.monotonic()
        in_oven.append((log, asyncio.create_task(bake_and_serve(log))))
        await asyncio.sleep(0)  # one turn of the loop: the dish actually goes into the oven
    await asyncio.gather(*(dish for _, dish in in_oven))


def _cook(ideal: KitchenResult, ms_per_minute: float) -> KitchenResult:
    """Run the kitchen ``ideal`` describes, one thread and one fresh event loop per chef."""
    seconds_per_minute = ms_per_minute / 1000.0
    prep_s = ideal.prep_min * seconds_per_minute
    oven_s = ideal.oven_min * seconds_per_minute
    shift: _ChefShift = _sync_chef_shift if ideal.mode == "sync" else _async_chef_shift

    waiting: queue.SimpleQueue[int] = queue.SimpleQueue()
    for order in range(1, ideal.orders + 1):
        waiting.put(order)
    logs: list[_OrderLog] = []  # list.append is atomic, so chefs can share it
    errors: list[BaseException] = []
    opened_at: list[float] = []
    # The kitchen opens (t=0) only when every chef's thread and loop are ready, so thread
    # start-up is not counted as cooking time.
    all_chefs_ready = threading.Barrier(
        ideal.chefs, action=lambda: opened_at.append(time.monotonic())
    )

    async def work_shift(chef: int) -> None:
        all_chefs_ready.wait(timeout=10.0)
        await shift(waiting, chef, prep_s, oven_s, logs)

    def chef_thread(chef: int) -> None:
        try:
            asyncio.run(work_shift(chef))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread below
            errors.append(exc)
            all_chefs_ready.abort()  # release chefs still waiting for this one

    started = time.perf_counter()
    threads = [
        threading.Thread(
            target=chef_thread, args=(chef,), name=f"kitchen-{ideal.mode}-chef-{chef}", daemon=True
        )
        for chef in range(1, ideal.chefs + 1)
    ]
    for thread in threads:
        thread.start()
    # Generous, but finite: a stuck chef must not hang the learner's kernel.
    give_up_at = time.monotonic() + 3 * ideal.total_minutes * seconds_per_minute + 10.0
    for thread in threads:
        thread.join(timeout=max(0.0, give_up_at - time.monotonic()))
    real_seconds = time.perf_counter() - started

    if any(thread.is_alive() for thread in threads):
        raise RuntimeError(f"the {ideal.label} kitchen did not finish within {real_seconds:.1f} s")
    if errors:
        first_cause = next(
            (exc for exc in errors if not isinstance(exc, threading.BrokenBarrierError)), errors[0]
        )
        raise RuntimeError(f"the {ideal.label} kitchen failed: {first_cause!r}") from first_cause

    opened = opened_at[0]

    def minutes(stamp: float) -> float:
        return (stamp - opened) / seconds_per_minute

    records = tuple(
        OrderRecord(
            order=log.order,
            chef=log.chef,
            prep_start=minutes(log.prep_start),
            prep_end=minutes(log.prep_end),
            oven_start=minutes(log.oven_start),
            oven_end=minutes(log.oven_end),
            served=minutes(log.served),
        )
        for log in sorted(logs, key=lambda log: log.order)
    )
    return KitchenResult(
        mode=ideal.mode,
        orders=ideal.orders,
        prep_min=ideal.prep_min,
        oven_min=ideal.oven_min,
        chefs=ideal.chefs,
        records=records,
        measured=True,
        ms_per_minute=ms_per_minute,
        real_seconds=real_seconds,
    )


# -- input checks and scale -------------------------------------------------------------------


def _validate(
    mode: object, orders: object, prep_min: object, oven_min: object, chefs: object
) -> None:
    if mode not in ("sync", "async"):
        raise ValueError(f"mode must be 'sync' or 'async', got {mode!r}")
    _require_whole("orders", orders, at_most=None)
    _require_whole("chefs", chefs, at_most=_MAX_CHEFS)
    _require_positive("prep_min", prep_min, "minutes")
    _require_positive("oven_min", oven_min, "minutes")


def _require_whole(name: str, value: object, *, at_most: int | None) -> None:
    # bool is an int subclass, but `orders=True` is a mistake, not one order. numbers.Integral
    # also admits numpy integers.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    count = int(value)
    if count < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    if at_most is not None and count > at_most:
        raise ValueError(f"{name} must be at most {at_most}, got {value}")


def _require_positive(name: str, value: object, unit: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number of {unit}, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive, finite number of {unit}, got {value!r}")


def _choose_scale(longest_minutes: float, ms_per_minute: float | None) -> float:
    """Real ms per simulated minute: the caller's choice, or one that keeps the run short."""
    if ms_per_minute is None:
        fitting = _AUTO_REAL_BUDGET_S * 1000.0 / longest_minutes
        scale = max(_MIN_AUTO_MS_PER_MINUTE, min(DEFAULT_MS_PER_MINUTE, fitting))
    else:
        _require_positive("ms_per_minute", ms_per_minute, "milliseconds")
        scale = float(ms_per_minute)
    real_seconds = longest_minutes * scale / 1000.0
    if real_seconds > _MAX_REAL_SECONDS:
        raise ValueError(
            f"this kitchen would take {real_seconds:.0f} s of real time "
            f"({longest_minutes:g} simulated minutes at {scale:g} ms each); "
            f"the limit is {_MAX_REAL_SECONDS:g} s: use fewer orders or a smaller ms_per_minute"
        )
    return scale


# -- pictures ---------------------------------------------------------------------------------


def _new_figure(*, width: float, rows: int) -> Figure:
    height = min(12.0, 1.9 + 0.38 * rows)
    return Figure(figsize=(width, height), layout="constrained")


def _draw_timeline(result: KitchenResult, ax: Axes) -> None:
    """Draw one kitchen's timeline into ``ax``; every bar has a gid like "prep-3" for tests."""
    blocked = result.mode == "sync"
    for row, record in enumerate(result.records):
        ax.barh(
            row, record.prep_end - record.prep_start, left=record.prep_start, height=0.6,
            color=_PREP_COLOUR, gid=f"prep-{record.order}",
        )
        ax.barh(
            row, record.oven_end - record.oven_start, left=record.oven_start, height=0.6,
            color=_OVEN_COLOUR, hatch="///" if blocked else None, edgecolor="white",
            linewidth=0, gid=f"oven-{record.order}",
        )
        if record.waited_for_chef >= _VISIBLE_WAIT_MIN:
            ax.barh(
                row, record.waited_for_chef, left=record.oven_end, height=0.3,
                color=_WAIT_COLOUR, gid=f"wait-{record.order}",
            )
    ax.plot(
        [record.served for record in result.records], range(len(result.records)),
        linestyle="none", marker="o", markersize=4, color=_SERVED_COLOUR,
    )
    ax.axvline(result.total_minutes, color=_SERVED_COLOUR, linestyle=":", linewidth=1)

    ax.set_yticks(range(len(result.records)))
    if result.orders <= 30:  # beyond that the labels overlap into a grey smear
        ax.set_yticklabels(
            [f"order {record.order} · chef {record.chef}" for record in result.records],
            fontsize="small",
        )
    else:
        ax.set_yticklabels([])
    ax.invert_yaxis()  # order 1 on top, like a ticket rail
    ax.set_xlim(left=0)
    ax.set_xlabel("simulated minutes")
    ax.grid(axis="x", alpha=0.3)
    how = "measured" if result.measured else "ideal"
    ax.set_title(f"{result.summary()} ({how})", fontsize="medium")


def _legend_handles(results: list[KitchenResult]) -> list[Artist]:
    handles: list[Artist] = [Patch(facecolor=_PREP_COLOUR, label="prep: chef busy")]
    if any(result.mode == "async" for result in results):
        handles.append(Patch(facecolor=_OVEN_COLOUR, label="oven: chef free"))
    if any(result.mode == "sync" for result in results):
        handles.append(
            Patch(facecolor=_OVEN_COLOUR, hatch="///", edgecolor="white",
                  label="oven: chef stands and waits")
        )
    waits = (record.waited_for_chef for result in results for record in result.records)
    if any(wait >= _VISIBLE_WAIT_MIN for wait in waits):
        handles.append(Patch(facecolor=_WAIT_COLOUR, label="ready, chef's hands busy"))
    handles.append(
        Line2D([], [], linestyle="none", marker="o", markersize=4, color=_SERVED_COLOUR,
               label="served")
    )
    return handles


def _add_legend(figure: Figure, results: list[KitchenResult]) -> None:
    handles = _legend_handles(results)
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize="small")


def _side_by_side(sync_result: KitchenResult, async_result: KitchenResult) -> Figure:
    """Both timelines on one shared minute axis, so the difference in length is the message."""
    figure = _new_figure(width=12.0, rows=sync_result.orders)
    sync_ax, async_ax = figure.subplots(1, 2, sharex=True)
    _draw_timeline(sync_result, sync_ax)
    _draw_timeline(async_result, async_ax)
    _add_legend(figure, [sync_result, async_result])
    return figure


def _kitchen_label(mode: ChefMode, chefs: int) -> str:
    return f"{mode} chef" if chefs == 1 else f"{chefs} {mode} chefs"


def _minutes_text(minutes: float) -> str:
    """72.0 -> "72", 72.44 -> "72.4": whole numbers stay whole, measured ones keep a decimal."""
    text = f"{minutes:.1f}"
    return text[:-2] if text.endswith(".0") else text


# -- widgets ----------------------------------------------------------------------------------


def kitchen_explorer() -> ipywidgets.VBox | None:
    """Sliders for orders, prep, oven and chefs, and a button that runs both kitchens.

    Where widgets cannot show (``COURSE_QUIZ_MODE=text``, or no Jupyter kernel), it runs the
    default comparison once, shows the summary (and, inside IPython, the picture) and returns None.
    """
    if display_mode() == "text":
        comparison = compare()
        if ipython_shell() is not None:
            from IPython.display import display

            display(comparison)  # the text, then the picture a static export can keep
        else:
            print(comparison)
        return None
    return _build_explorer()


def _build_explorer() -> ipywidgets.VBox:
    import ipywidgets as widgets
    from IPython.display import display

    wide = {"description_width": "8em"}
    orders = widgets.IntSlider(
        value=DEFAULT_ORDERS, min=1, max=12, description="orders", style=wide
    )
    prep = widgets.FloatSlider(
        value=DEFAULT_PREP_MIN, min=0.5, max=10.0, step=0.5, description="prep (min)", style=wide
    )
    oven = widgets.FloatSlider(
        value=DEFAULT_OVEN_MIN, min=1.0, max=20.0, step=1.0, description="oven (min)", style=wide
    )
    chefs = widgets.IntSlider(value=1, min=1, max=4, description="chefs", style=wide)
    button = widgets.Button(
        description="Open the kitchen", button_style="primary", icon="play",
        layout=widgets.Layout(width="14em"),
    )
    output = widgets.Output()
    idle_description = button.description

    def cook(_: widgets.Button) -> None:
        button.disabled, button.description = True, "Cooking…"
        try:
            with output:
                output.clear_output(wait=True)
                try:
                    comparison = compare(orders.value, prep.value, oven.value, chefs.value)
                except Exception as exc:  # noqa: BLE001 - shown to the learner, not lost in a log
                    print(f"The kitchen could not run: {exc}")
                    return
                print(comparison)
                display(comparison.plot())
        finally:
            button.disabled, button.description = False, idle_description

    button.on_click(cook)
    intro = widgets.HTML(
        "Choose the orders, then predict which chef finishes first and by how much; "
        "press the button to cook them for real."
    )
    return widgets.VBox(
        [intro, widgets.HBox([widgets.VBox([orders, prep]), widgets.VBox([oven, chefs])]),
         button, output]
    )
