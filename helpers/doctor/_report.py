"""The doctor's report: one row per route, as a text table, JSON, or a notebook display."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from typing import Any

from helpers import plots

from ._findings import Finding, source_only
from ._plan import Function, Plan, Skipped

SCHEMA_VERSION = 1


@dataclass
class RouteReport:
    """What the doctor measured for one route (or why it skipped it)."""

    OK = "ok"
    BLOCKS = "blocks the loop"
    SATURATES = "saturates the threadpool"
    FAILS = "every request failed"
    HANGS = "no answer"
    STUCK = "holds the loop for good"
    SKIPPED = "skipped"

    method: str
    path: str
    verdict: str
    endpoint: Function | None = None
    runs_on: str = ""
    url: str = ""
    sent: int = 0
    ok: int = 0
    failed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    app_errors: list[str] = field(default_factory=list)
    response_sample: str = ""
    p50_ms: float | None = None
    p95_ms: float | None = None
    probe_p50_ms: float | None = None
    probe_max_ms: float | None = None
    findings: list[Finding] = field(default_factory=list)
    threadpool_tokens: int = 0
    threadpool_peak: int = 0
    threadpool_waiting: int = 0
    reason: str = ""
    """Why it was skipped, or what stopped it (no answer, a loop held for good)."""
    fix: str = ""
    bursts: int = 1
    """2 when the first burst's block was short enough to be the machine's, and the doctor sent a
    second burst to see it repeat."""

    # -- constructors ------------------------------------------------------------------------
    @classmethod
    def skipped(cls, plan: Skipped | Plan) -> RouteReport:
        reason = plan.reason if isinstance(plan, Skipped) else ""
        return cls(plan.method, plan.path, cls.SKIPPED, plan.endpoint, reason=reason)

    @classmethod
    def hung(cls, plan: Plan, timeout_s: float) -> RouteReport:
        return cls(
            plan.method, plan.path, cls.HANGS, plan.endpoint, plan.runs_on, plan.url,
            sent=1, failed=1, statuses={"no answer": 1},
            reason=f"no answer within {timeout_s:g} s, while the event loop stayed free",
            fix="find what it waits for and give that wait a timeout "
                "(`async with asyncio.timeout(...)`), answering 504 when it passes",
        )

    @classmethod
    def stuck(cls, plan: Plan, timeout_s: float, held: tuple[str, int, str]) -> RouteReport:
        file, line, code = held[0], held[1], source_only(held[2])
        finding = Finding(
            timeout_s * 1000.0, 1, timeout_s * 1000.0, file, line, code, "endpoint",
            "held the event loop and never let go",
            "a call that never returns runs on the loop: give it a timeout, and run blocking "
            "calls in a plain `def` endpoint or `await run_in_threadpool(...)`",
        )
        return cls(
            plan.method, plan.path, cls.STUCK, plan.endpoint, plan.runs_on, plan.url,
            sent=1, failed=1, statuses={"no answer": 1}, findings=[finding],
            reason=f"no answer within {timeout_s:g} s, and the event loop is still held at "
                   f"{finding.where} `{code}`",
            fix=finding.fix,
        )

    @classmethod
    def measured(cls, plan: Plan, *, threshold_ms: float, **figures: Any) -> RouteReport:
        route = cls(plan.method, plan.path, cls.OK, plan.endpoint, plan.runs_on, plan.url,
                    **figures)
        if any(f.longest_ms >= threshold_ms for f in route.findings):
            route.verdict = cls.BLOCKS
            route.fix = route.findings[0].fix
        elif route.threadpool_waiting > 0:
            route.verdict = cls.SATURATES
            route.fix = (
                f"up to {route.threadpool_waiting} requests waited for one of the "
                f"{route.threadpool_tokens} threads: make the slow part async (`async def` "
                "with `await`), or raise the limit in the lifespan"
            )
        elif route.sent and route.ok == 0:
            route.verdict = cls.FAILS
            route.fix = _failure_hint(route)
        return route

    # -- reading it ----------------------------------------------------------------------------
    @property
    def blocked_ms(self) -> float:
        """All the loop blocks the route's burst caused, added up."""
        return sum(f.duration_ms for f in self.findings)

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def is_problem(self) -> bool:
        """Blocks the loop or saturates the threadpool: what makes the exit status 1."""
        return self.verdict in (self.BLOCKS, self.SATURATES, self.STUCK)

    def failure_text(self) -> str:
        """``2 × HTTP 500 (ZeroDivisionError: division by zero)``: what went wrong, briefly."""
        parts = [f"{count} × {what}" for what, count in self.failures.items()]
        text = "; ".join(parts)
        if self.app_errors:
            text += f" — the app raised {self.app_errors[0]}"
        elif self.response_sample and any("422" in what for what in self.failures):
            text += f" — {self.response_sample[:160]}"
        return text

    def to_json(self) -> dict[str, Any]:
        endpoint = None
        if self.endpoint is not None:
            endpoint = {"function": self.endpoint.name, "file": self.endpoint.file,
                        "line": self.endpoint.line}
        return {
            "method": self.method,
            "path": self.path,
            "url": self.url or None,
            "endpoint": endpoint,
            "runs_on": self.runs_on or None,
            "verdict": self.verdict,
            "reason": self.reason or None,
            "counts": {"sent": self.sent, "ok": self.ok, "failed": self.failed,
                       "statuses": self.statuses},
            "failures": self.failure_text() or None,
            "p50_ms": _round(self.p50_ms),
            "p95_ms": _round(self.p95_ms),
            "probe": {"p50_ms": _round(self.probe_p50_ms), "max_ms": _round(self.probe_max_ms)},
            "blocked_ms": round(self.blocked_ms, 1),
            "blocks": [
                {"duration_ms": round(f.duration_ms, 1), "count": f.blocks,
                 "longest_ms": round(f.longest_ms, 1), "file": f.file or None,
                 "line": f.line or None, "code": f.code or None, "part": f.part,
                 "cause": f.cause, "fix": f.fix, "evidence": f.evidence}
                for f in self.findings
            ],
            "threadpool": {"tokens": self.threadpool_tokens, "peak_in_use": self.threadpool_peak,
                           "peak_waiting": self.threadpool_waiting},
            "fix": self.fix or None,
            "bursts": self.bursts,
        }


def _failure_hint(route: RouteReport) -> str:
    if any("422" in what for what in route.failures):
        return ("the doctor's request did not validate: give the parameters or body an "
                "example in the app (`Query(examples=[...])`, `model_config` examples)")
    if route.app_errors:
        return f"the endpoint raised {route.app_errors[0]}: fix it, then examine again"
    return "read the failures above: the route never answered successfully"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}"


@dataclass
class Report:
    """The whole examination: ``print()`` it for the table, ``to_json()`` for machines; in a
    notebook it shows the table and a picture of the loop's blocked time per route."""

    target: str
    threshold_ms: float
    requests: int
    concurrency: int
    routes: list[RouteReport] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def problems(self) -> list[RouteReport]:
        return [r for r in self.routes if r.is_problem]

    @property
    def exit_status(self) -> int:
        """0 when no route blocks the loop or saturates the threadpool, else 1."""
        return 1 if self.problems else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "target": self.target,
            "threshold_ms": self.threshold_ms,
            "requests": self.requests,
            "concurrency": self.concurrency,
            "elapsed_s": round(self.elapsed_s, 2),
            "exit_status": self.exit_status,
            "routes": [route.to_json() for route in self.routes],
        }

    # -- the table -----------------------------------------------------------------------------
    _HEADINGS = ("route", "runs on", "ok/failed", "p50 ms", "p95 ms", "probe max ms",
                 "loop blocked ms", "threads", "verdict")

    def _rows(self) -> list[tuple[str, ...]]:
        rows: list[tuple[str, ...]] = []
        for r in self.routes:
            if r.verdict == RouteReport.SKIPPED:
                rows.append((r.label, "", "", "", "", "", "", "", "skipped"))
                continue
            threads = (f"{r.threadpool_peak}/{r.threadpool_tokens}"
                       + (f" +{r.threadpool_waiting} waited" if r.threadpool_waiting else "")
                       if r.threadpool_tokens else "")
            rows.append((
                r.label, r.runs_on, f"{r.ok}/{r.failed}", _ms(r.p50_ms), _ms(r.p95_ms),
                _ms(r.probe_max_ms), f"{r.blocked_ms:.0f}", threads, r.verdict,
            ))
        return rows

    def _details(self) -> list[str]:
        lines = []
        for r in self.routes:
            if r.verdict == RouteReport.SKIPPED:
                lines.append(f"{r.label}: skipped — {r.reason}")
                continue
            for f in r.findings:
                count = ""
                if f.blocks > 1:
                    count = f" in {f.blocks} blocks (longest {f.longest_ms:.0f} ms)"
                at = f" at {f.where} `{f.code}`" if f.where else ""
                lines.append(
                    f"{r.label}: loop blocked {f.duration_ms:.0f} ms{count}{at} — {f.cause}"
                )
                lines.append(f"    fix: {f.fix}")
            if r.verdict in (RouteReport.HANGS, RouteReport.STUCK):
                lines.append(f"{r.label}: {r.reason}")
                if r.verdict == RouteReport.HANGS:
                    lines.append(f"    fix: {r.fix}")
            elif r.verdict == RouteReport.SATURATES:
                lines.append(f"{r.label}: threadpool saturated — fix: {r.fix}")
            if r.failed and r.verdict not in (RouteReport.HANGS, RouteReport.STUCK):
                lines.append(f"{r.label}: {r.failed} of {r.sent} failed: {r.failure_text()}")
                if r.verdict == RouteReport.FAILS:
                    lines.append(f"    fix: {r.fix}")
        return lines

    def summary(self) -> str:
        examined = [r for r in self.routes if r.verdict != RouteReport.SKIPPED]
        skipped = len(self.routes) - len(examined)
        if not self.routes:
            return "the app has no routes to examine"
        problems = self.problems
        head = (f"{len(examined)} route{'s' if len(examined) != 1 else ''} examined"
                + (f", {skipped} skipped" if skipped else "") + f" in {self.elapsed_s:.1f} s: ")
        if not problems:
            return head + f"no route blocks the event loop for {self.threshold_ms:g} ms or more"
        names = ", ".join(r.label for r in problems)
        return head + f"{len(problems)} need{'s' if len(problems) == 1 else ''} fixing ({names})"

    def __str__(self) -> str:
        rows = self._rows()
        lines = [f"App doctor · {self.target} · {self.requests} requests per route, "
                 f"{self.concurrency} at a time · loop blocks of {self.threshold_ms:g} ms or more"]
        if rows:
            widths = [max(len(h), *(len(row[i]) for row in rows))
                      for i, h in enumerate(self._HEADINGS)]
            for row in [self._HEADINGS, tuple("-" * w for w in widths), *rows]:
                cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                lines.append("  ".join(cells).rstrip())
        details = self._details()
        if details:
            lines.append("")
            lines.extend(details)
        lines.append("")
        lines.append(self.summary())
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))

    # -- the notebook display ------------------------------------------------------------------
    def picture(self) -> plots.Picture:
        """A bar per examined route: how long its burst held the event loop."""
        rows = [(r.label, r.blocked_ms) for r in self.routes if r.verdict != RouteReport.SKIPPED]
        return plots.blocked_by_route(rows, self.threshold_ms)

    def _repr_html_(self) -> str:
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in self._HEADINGS)
        body = []
        for row, route in zip(self._rows(), self.routes, strict=True):
            style = ' style="color:#B00020;font-weight:bold"' if route.is_problem else ""
            tds = "".join(f"<td>{html.escape(c)}</td>" for c in row[:-1])
            body.append(f"<tr>{tds}<td{style}>{html.escape(row[-1])}</td></tr>")
        details = "".join(f"<li><code>{html.escape(d.strip())}</code></li>"
                          for d in self._details())
        parts = [
            f"<p><b>App doctor</b> · {html.escape(self.target)} · {self.requests} requests per "
            f"route, {self.concurrency} at a time</p>",
            f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(body)}</tbody></table>",
        ]
        if details:
            parts.append(f"<ul>{details}</ul>")
        if any(r.verdict != RouteReport.SKIPPED for r in self.routes):
            picture = self.picture()
            png = base64.b64encode(picture._repr_png_()).decode("ascii")
            parts.append(f'<img alt="{html.escape(picture.description)}" '
                         f'src="data:image/png;base64,{png}">')
        parts.append(f"<p>{html.escape(self.summary())}</p>")
        return "\n".join(parts)
