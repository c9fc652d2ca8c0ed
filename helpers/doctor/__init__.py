"""The app doctor: serve a FastAPI app, load each route while probing its event loop, and
report which routes block the loop, at which line, for how long, why, and what to change.

From a shell (exit status 0: nothing blocks, 1: something does, 2: usage or startup error)::

    python -m helpers.doctor myproject.main:app --json report.json

In a notebook, ``examine(app)`` returns the same :class:`Report`, shown as a table and a
picture. The JSON schema is documented in ``docs/doctor.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ._examine import (
    DEFAULT_CONCURRENCY,
    DEFAULT_REQUESTS,
    DEFAULT_THRESHOLD_MS,
    DEFAULT_TIMEOUT_S,
    Options,
    examine_app,
)
from ._findings import Finding
from ._report import Report, RouteReport

__all__ = ["Finding", "Report", "RouteReport", "examine"]


def examine(
    app: Any,
    *,
    requests: int = DEFAULT_REQUESTS,
    concurrency: int = DEFAULT_CONCURRENCY,
    threshold_ms: float = DEFAULT_THRESHOLD_MS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    routes: Sequence[tuple[str, str]] = (),
    params: Mapping[str, Any] | None = None,
) -> Report:
    """Examine every route of ``app`` (a FastAPI app, or ``"module:app"``): ``requests`` per
    route, ``concurrency`` at a time, each bounded by ``timeout_s``; loop blocks of
    ``threshold_ms`` or more count. ``routes`` limits it to ``[("GET", "/items"), ...]``;
    ``params`` gives named parameters their value in every route (``{"n": 5000}``)."""
    from tqdm.auto import tqdm

    from helpers.server import _resolve_app

    options = Options(requests, concurrency, float(threshold_ms), float(timeout_s),
                      tuple((m.upper(), p) for m, p in routes),
                      tuple((str(k), str(v)) for k, v in (params or {}).items()))
    resolved = _resolve_app(app)
    target = app if isinstance(app, str) else getattr(app, "title", "") or type(app).__name__
    # a bar only when it runs for more than two seconds; it disappears when done. No monitor
    # thread (tqdm's default starts one that lives as long as the process)
    quiet_bar = type("DoctorBar", (tqdm,), {"monitor_interval": 0})
    bar = quiet_bar(desc="examining", unit="route", delay=2.0, leave=False, total=None)

    def progress(route: str) -> None:
        bar.set_postfix_str(route, refresh=False)
        bar.update(1)

    try:
        return examine_app(resolved, options, target=target, progress=progress)
    finally:
        bar.close()
