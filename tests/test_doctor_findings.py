"""Which loop blocks the doctor counts against a route: the app's doing, not a busy machine's."""

from __future__ import annotations

import asyncio.selector_events

import pytest

from helpers.doctor._findings import counts
from helpers.loopwatch import CAUSE_LOOP, LoopBlock

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
