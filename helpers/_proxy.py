"""Where the learner's browser can reach a server that listens on 127.0.0.1 inside the kernel.

Locally the browser runs on the same machine, so ``http://127.0.0.1:PORT`` works. On JupyterHub
and Binder the browser is somewhere else and cannot reach the container's loopback; there
jupyter-server-proxy (when installed) forwards ``{JUPYTERHUB_SERVICE_PREFIX}proxy/{port}/…`` to
the port, and names that prefix in an ``X-Forwarded-Context`` header so the app can build links
that go through the proxy too (Swagger UI's ``openapi.json``). Imports nothing from the package.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable

__all__ = ["HUB_PREFIX_ENV", "behind_hub", "browser_url", "proxied_root_path", "proxy_prefix"]

#: Set by JupyterHub (and so by Binder) in every single-user server and its kernels.
HUB_PREFIX_ENV = "JUPYTERHUB_SERVICE_PREFIX"

# jupyter-server-proxy sends the path it serves the app under (e.g. /user/ada/proxy/8123)
_CONTEXT_HEADER = b"x-forwarded-context"


def behind_hub() -> bool:
    """True in a kernel of a JupyterHub or Binder server, where the browser is on another host."""
    return bool(os.environ.get(HUB_PREFIX_ENV))


def proxy_prefix() -> str | None:
    """The hub's prefix (ending in ``/``) when jupyter-server-proxy can forward to our ports."""
    prefix = os.environ.get(HUB_PREFIX_ENV)
    if not prefix or importlib.util.find_spec("jupyter_server_proxy") is None:
        return None
    return prefix if prefix.endswith("/") else prefix + "/"


def browser_url(host: str, port: int, path: str = "/") -> str:
    """A link to ``path`` on the server at ``host:port`` that the learner's browser can open."""
    prefix = proxy_prefix()
    if prefix is None:
        return f"http://{host}:{port}{path}"
    return f"{prefix}proxy/{port}{path}"


def proxied_root_path(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The path prefix a request came through jupyter-server-proxy under, if it did."""
    for name, value in headers:
        if name.lower() == _CONTEXT_HEADER:
            return value.decode("latin-1").rstrip("/") or None
    return None
