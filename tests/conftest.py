"""Shared fixtures: no test leaves a server behind that it started itself."""

from __future__ import annotations

import pytest

import helpers


@pytest.fixture(autouse=True)
def no_servers_left_behind():
    before = set(map(id, helpers.running_servers()))
    yield
    leftover = [s for s in helpers.running_servers() if id(s) not in before]
    for server in leftover:
        server.stop()
    assert not leftover, f"the test left servers running: {leftover}"
