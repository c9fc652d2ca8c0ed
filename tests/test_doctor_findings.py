"""Which loop blocks the doctor counts against a route: the app's doing, not a busy machine's."""

from __future__ import annotations

import asyncio.selector_events

import pytest

from helpers.doctor._examine import _echoed
from helpers.doctor._findings import (
    C_CODE,
    ENCODING,
    ENDPOINT,
    AppParts,
    Finding,
    counts,
    findings_of,
)
from helpers.doctor._plan import PROBE_PATH, Function
from helpers.loopwatch import CAUSE_LOOP, CAUSE_UNSAMPLED, UNSAMPLED, LoopBlock

LIBRARY = asyncio.selector_events.__file__
APP = "/srv/shop/main.py"


def block(ms: float, filename: str, code: str, loop_cpu: int, phase: str = "") -> LoopBlock:
    return LoopBlock(
        1.0, 1.0 + ms / 1000, filename, 12, code, "handler", (), CAUSE_LOOP, phase=phase,
        evidence=f"6 samples; loop thread CPU {loop_cpu}%, woke 10/s",
    )


@pytest.mark.parametrize(("case", "made", "counted"), [
    ("a blocking wait in the app's own line", block(60, APP, "time.sleep(0.06)", 2), True),
    ("an await line whose thread hardly ran", block(60, APP, "await client.get(url)", 10), False),
    ("... unless it lasts twice the threshold", block(110, APP, "await client.get(url)", 10),
     True),
    ("encoding a response: the loop's thread computed",
     block(60, LIBRARY, "self._sock.send(data)", 95, "encoding the response"), True),
    ("response work whose thread hardly ran: it waited for a core",
     block(60, LIBRARY, "self._sock.send(data)", 12, "reading or writing the connection"), False),
    ("... unless it lasts twice the threshold",
     block(110, LIBRARY, "self._sock.send(data)", 12, "reading or writing the connection"), True),
    ("library code outside the response", block(60, LIBRARY, "handle()", 90), False),
])
def test_what_counts_against_a_route(case: str, made: LoopBlock, counted: bool) -> None:
    assert counts(made, threshold_ms=50) is counted, case


EXPORT = Function("export", APP, 40, is_async=True)


def unsampled(request: str, loop_cpu: int, ended_with_response: bool = True) -> LoopBlock:
    """A 340 ms block in which no line could be sampled (pydantic-core holds the GIL)."""
    return LoopBlock(
        1.0, 1.34, "<unsampled>", 0, "C code that never released the GIL", UNSAMPLED, (),
        CAUSE_UNSAMPLED, request=request, ended_with_response=ended_with_response,
        evidence=f"0 samples; loop thread CPU {loop_cpu}%, woke 3/s",
    )


@pytest.mark.parametrize(("case", "made", "part"), [
    ("it computed until the route's own response went out",
     unsampled("GET /export → export() at main.py:40", 97), ENCODING),
    ("it ended as the doctor's probe was answered",
     unsampled(f"GET {PROBE_PATH}", 97), C_CODE),
    ("no response went out as it ended",
     unsampled("", 97, ended_with_response=False), C_CODE),
    ("the loop's thread hardly ran: not encoding",
     unsampled("GET /export → export() at main.py:40", 15), C_CODE),
])
def test_unsampled_c_code_is_encoding_only_when_the_routes_response_ended_it(
    case: str, made: LoopBlock, part: str,
) -> None:
    (finding,) = findings_of([made], AppParts.of([EXPORT], [], []), EXPORT, threshold_ms=50)
    assert finding.part == part, case
    if part == ENCODING:  # named at the route's own line, with the fix for a big response
        assert (finding.file, finding.line) == (APP, 40)
        assert "paginate" in finding.fix


def finding(ms: float, part: str, line: int) -> Finding:
    return Finding(ms, 1, ms, APP, line, "code", part, "cause", "fix")


@pytest.mark.parametrize(("case", "first", "echoes", "echoed"), [
    ("the app's own line again, 55 ms in all",
     finding(120, ENDPOINT, 7), [finding(55, ENDPOINT, 7)], True),
    ("the same line, but only 40 ms in all", finding(120, ENDPOINT, 7), [finding(40, ENDPOINT, 7)],
     False),
    ("another line of the app", finding(120, ENDPOINT, 7), [finding(55, ENDPOINT, 9)], False),
    ("FastAPI's response work, named at the endpoint's line",
     finding(137, ENCODING, 40), [finding(55, ENCODING, 40)], False),
])
def test_a_second_burst_echoes_the_first_only_at_the_apps_own_lines(
    case: str, first: Finding, echoes: list[Finding], echoed: bool,
) -> None:
    assert _echoed([first], echoes, threshold_ms=50) is echoed, case
