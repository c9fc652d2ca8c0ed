"""The course runtime: serve apps in the notebook, load them, watch their event loop, draw it.

Lessons import from here; see COURSE.md for the contract these names keep.
"""

from .load import LoadResult, RequestRecord, load
from .loopwatch import LoopBlock
from .server import Server, ServerStartupError, running_servers, serve, stop_all
from .upstream import Upstream, Upstreams, UpstreamStats, start_upstream, start_upstreams

__all__ = [
    "LoadResult",
    "LoopBlock",
    "RequestRecord",
    "Server",
    "ServerStartupError",
    "load",
    "running_servers",
    "serve",
    "start_upstream",
    "start_upstreams",
    "stop_all",
    "Upstream",
    "Upstreams",
    "UpstreamStats",
]
