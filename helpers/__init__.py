"""The course runtime: serve apps in the notebook, load them, watch their event loop, draw it.

The names in ``__all__`` are imported from here and only from here (``from helpers import
report``), so every lesson spells them the same way.

Names are imported on first use (PEP 562), so a process-pool worker that only needs
``helpers.cpu`` does not pay for importing FastAPI, uvicorn and matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "serve": "server",
    "Server": "server",
    "ServerStartupError": "server",
    "running_servers": "server",
    "stop_all": "server",
    "load": "loadgen",
    "load_with_monitor": "loadgen",
    "LoadResult": "loadgen",
    "RequestRecord": "loadgen",
    "LoopBlock": "loopwatch",
    "Upstream": "upstream",
    "Upstreams": "upstream",
    "UpstreamStats": "upstream",
    "start_upstream": "upstream",
    "start_upstreams": "upstream",
    "quiz_file": "quiz",
    "report": "timing",
}

# Literal so readers, IDEs and type checkers see the public names without running anything;
# tests/test_package.py checks it names exactly the keys of _WHERE.
__all__ = [
    "LoadResult",
    "LoopBlock",
    "RequestRecord",
    "Server",
    "ServerStartupError",
    "Upstream",
    "UpstreamStats",
    "Upstreams",
    "load",
    "load_with_monitor",
    "quiz_file",
    "report",
    "running_servers",
    "serve",
    "start_upstream",
    "start_upstreams",
    "stop_all",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'helpers' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:
    from .loadgen import LoadResult, RequestRecord, load, load_with_monitor
    from .loopwatch import LoopBlock
    from .quiz import quiz_file
    from .server import Server, ServerStartupError, running_servers, serve, stop_all
    from .timing import report
    from .upstream import Upstream, Upstreams, UpstreamStats, start_upstream, start_upstreams
