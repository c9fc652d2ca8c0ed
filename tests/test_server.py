"""serve() and Server: real uvicorn on loopback, started and stopped cleanly, clear failures."""

from __future__ import annotations

import gc
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import nbformat
import pytest
from nbclient import NotebookClient

import helpers
from helpers import ServerStartupError, serve
from tests import apps
from tests.notebook_runner import ROOT


def get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.status, dict(response.headers), response.read()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_serves_on_loopback_and_answers():
    with serve(apps.app, name="basic") as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server.port > 0
        status, headers, body = get(server.url + "/")
        assert status == 200 and body == b'{"ok":true}'
        assert headers["x-served-by"] == "event loop"
    assert not server.running


def test_serving_leaves_the_heap_alive_before_it_out_of_later_collections():
    # a kernel's heap makes a full collection take 0.1-0.2 s, in whichever request is in flight
    frozen_before = gc.get_freeze_count()
    heap = [[] for _ in range(100_000)]  # tracked objects, alive before the server starts
    with serve(apps.app, name="frozen"):
        assert gc.get_freeze_count() >= frozen_before + len(heap)
    del heap


def test_binds_only_to_loopback():
    with serve(apps.app, name="loopback") as server:
        addresses = {s.getsockname()[0] for s in server._uvicorn.servers[0].sockets}
        assert addresses == {"127.0.0.1"}


def test_def_endpoint_is_served_by_a_worker_thread():
    with serve(apps.app, name="threads") as server:
        _, headers, _ = get(server.url + "/def-sleep?seconds=0")
        assert headers["x-served-by"].startswith("worker ")


def test_two_servers_get_different_ports():
    with serve(apps.app, name="one") as first, serve(apps.app, name="two") as second:
        assert first.port != second.port
        assert get(first.url + "/")[0] == get(second.url + "/")[0] == 200


def test_serving_again_under_a_name_replaces_the_old_server():
    servers = [serve(apps.app, name="rerun") for _ in range(20)]
    alive = [s for s in helpers.running_servers() if s.name == "rerun"]
    assert alive == [servers[-1]]
    assert all(not s.running for s in servers[:-1])
    with pytest.raises(OSError):  # the replaced server no longer listens
        get(servers[0].url + "/", timeout=1)
    servers[-1].stop()


def test_start_stop_cycles_leak_no_threads_sockets_or_fds():
    # warm up: first use imports modules and starts the anyio machinery
    with serve(apps.app, name="warm") as server:
        get(server.url + "/def-sleep?seconds=0")
    threads_before, fds_before = threading.active_count(), open_fds()
    for _ in range(50):
        with serve(apps.app, name="cycle") as server:
            get(server.url + "/def-sleep?seconds=0")
    # a closed socket's fd goes at once; worker threads end when their loop closes
    deadline = time.monotonic() + 5
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == threads_before, threading.enumerate()
    assert open_fds() == fds_before


def test_startup_and_stop_are_quick():
    starts, stops = [], []
    for _ in range(10):
        began = time.perf_counter()
        server = serve(apps.app, name="quick")
        starts.append(time.perf_counter() - began)
        began = time.perf_counter()
        server.stop()
        stops.append(time.perf_counter() - began)
    # generous ceilings for a noisy machine; the benchmark reports the real medians
    assert sorted(starts)[5] < 0.5
    assert sorted(stops)[5] < 0.5


def test_stop_with_a_request_in_flight_is_prompt():
    server = serve(apps.app, name="inflight")
    hang = threading.Thread(target=lambda: _swallow(get, server.url + "/forever", 10), daemon=True)
    hang.start()
    time.sleep(0.2)
    began = time.perf_counter()
    server.stop()
    assert time.perf_counter() - began < 2.0
    hang.join(5)
    assert not hang.is_alive()


def _swallow(func, *args):
    try:
        func(*args)
    except Exception:
        pass


def test_stop_gives_up_on_a_blocked_loop_and_says_where(capsys):
    server = serve(apps.app, name="stuck")

    def request_that_blocks():
        _swallow(get, server.url + "/blocking-sleep", 5)

    client = threading.Thread(target=request_that_blocks, daemon=True)
    client.start()
    time.sleep(0.1)  # the loop is now inside time.sleep(0.48)
    began = time.perf_counter()
    server.stop(timeout=0.1)
    assert time.perf_counter() - began < 1.0
    assert "did not stop within 0.1 s" in capsys.readouterr().err
    client.join(5)
    server._thread.join(5)  # it does end once the blocking call returns
    assert not server._thread.is_alive()


def test_failing_lifespan_raises_with_the_apps_traceback():
    began = time.perf_counter()
    with pytest.raises(ServerStartupError) as error:
        serve(apps.broken_lifespan_app, name="broken")
    assert time.perf_counter() - began < 3
    message = str(error.value)
    assert "lifespan startup raised" in message
    assert "the database is not there" in message
    assert "apps.py" in message  # the app's own traceback, not uvicorn's
    assert not [s for s in helpers.running_servers() if s.name == "broken"]


def test_slow_lifespan_times_out_instead_of_hanging():
    began = time.perf_counter()
    with pytest.raises(ServerStartupError, match="did not finish starting within 0.5 s"):
        serve(apps.slow_lifespan_app, name="slow", startup_timeout_s=0.5)
    assert time.perf_counter() - began < 3
    assert not [t for t in threading.enumerate() if t.name == "server:slow" and t.is_alive()]


@pytest.mark.parametrize(
    ("bad", "pattern"),
    [
        (42, "needs an ASGI app"),
        (lambda: None, "needs an ASGI app"),
        ("no_such_module_here:app", "could not import the app"),
        ("tests.apps:missing", "could not import the app"),
        (os, "got the module 'os', not an app"),
    ],
)
def test_bad_apps_get_one_clear_error(bad, pattern):
    threads_before = threading.active_count()
    with pytest.raises((TypeError, ServerStartupError), match=pattern):
        serve(bad)
    assert threading.active_count() == threads_before


def test_import_string_is_served():
    with serve("tests.apps:app", name="by-string") as server:
        assert get(server.url + "/")[0] == 200


def test_threadpool_tokens_are_read_and_changed_on_the_servers_loop():
    with serve(apps.app, name="tokens") as server:
        assert server.threadpool_tokens == 40
        server.threadpool_tokens = 7
        assert server.threadpool_tokens == 7


def test_run_in_loop_refuses_a_stopped_server():
    server = serve(apps.app, name="stopped")
    server.stop()
    with pytest.raises(RuntimeError, match="is not running"):
        server.run_in_loop(lambda: 1)


def test_no_port_is_left_listening_after_stop():
    server = serve(apps.app, name="port")
    port = server.port
    server.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0


# -- stderr: the learner's error is the one place a traceback appears -------------------------
# uvicorn reports through the "uvicorn.error" logger; what reaches stderr depends on how the
# process configured logging (a notebook kernel, a bare interpreter, a script that called
# basicConfig). So these run each case in a real separate process and read its stderr.

NOISE_SETUP = """
import asyncio, threading, time, urllib.request
from contextlib import asynccontextmanager
from fastapi import FastAPI
from helpers import ServerStartupError, serve
from tests import apps

def fetch(url, timeout=10.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except Exception as exc:
        return type(exc).__name__
"""

NOISE_CASES = {
    # stop() cancels requests still running after its grace period: not an error
    "requests in flight at stop": """
server = serve(apps.app, name="in-flight")
clients = [threading.Thread(target=fetch, args=(server.url + path,))
           for path in ["/forever", "/forever", "/def-sleep?seconds=2.5"]]
for client in clients:
    client.start()
time.sleep(0.3)
server.stop()
for client in clients:
    client.join(10)
print("stopped")
""",
    # the ServerStartupError carries the app's traceback; uvicorn must not print it first
    "failing lifespan": """
try:
    serve(apps.broken_lifespan_app, name="broken")
except ServerStartupError as error:
    print("raised with the app's traceback:", "the database is not there" in str(error))
""",
    # serve() gives up on a startup that never finishes and cancels it
    "hung lifespan startup": """
try:
    serve(apps.slow_lifespan_app, name="slow", startup_timeout_s=0.5)
except ServerStartupError as error:
    print("raised, saying where it waited:", "await asyncio.sleep(60)" in str(error))
time.sleep(0.3)
""",
    # stop() gives up on a shutdown that never finishes: one warning line, no traceback
    "hung lifespan shutdown": """
@asynccontextmanager
async def never_closes(app):
    yield
    await asyncio.Event().wait()

server = serve(FastAPI(lifespan=never_closes), name="never-closes")
server.stop()
print("its thread ended:", not server._thread.is_alive())
""",
    # the learner's own bug during normal serving: uvicorn's traceback stays, once
    "endpoint error": """
buggy = FastAPI()

@buggy.get("/bug")
async def bug():
    raise ValueError("the learner's own bug")

with serve(buggy, name="buggy") as server:
    print("status:", fetch(server.url + "/bug"))
""",
}

EXPECTED_STDOUT = {
    "requests in flight at stop": "stopped",
    "failing lifespan": "raised with the app's traceback: True",
    "hung lifespan startup": "raised, saying where it waited: True",
    "hung lifespan shutdown": "its thread ended: True",  # not left behind by stop()
    "endpoint error": "status: HTTPError",
}


def assert_only_what_the_learner_should_see(stderr_by_case: dict[str, str]) -> None:
    for case in ("requests in flight at stop", "failing lifespan", "hung lifespan startup"):
        text = stderr_by_case[case]
        assert text.strip() == "", f"{case} wrote to stderr:\n{text}"
    shutdown = stderr_by_case["hung lifespan shutdown"].strip().splitlines()
    assert len(shutdown) == 1, f"expected one warning line, got:\n{shutdown}"
    assert re.fullmatch(
        r"warning: server 'never-closes': the app's lifespan shutdown did not finish within "
        r"1\.5 s \(it was waiting at \S+:\d+ `await asyncio\.Event\(\)\.wait\(\)`\); it was "
        r"cancelled so the server could stop\.",
        shutdown[0],
    ), shutdown[0]
    bug = stderr_by_case["endpoint error"]
    assert bug.count("Exception in ASGI application") == 1, bug
    assert bug.count("ValueError: the learner's own bug") == 1, bug


MARK = "=== case: "


@pytest.mark.parametrize(
    "logging_setup", ["", "import logging; logging.basicConfig(level=logging.INFO)"]
)
def test_stderr_in_a_plain_process_shows_only_the_learners_errors(tmp_path, logging_setup):
    parts = [logging_setup, NOISE_SETUP]
    for case, code in NOISE_CASES.items():
        marker = f"print({MARK + case!r}); print({MARK + case!r}, file=sys.stderr, flush=True)"
        parts += ["import sys", marker, code]
    script = tmp_path / "noise.py"  # a file, so tracebacks and warnings can quote its lines
    script.write_text("\n".join(parts))
    run = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    stdout, stderr = split_by_case(run.stdout), split_by_case(run.stderr)
    for case, expected in EXPECTED_STDOUT.items():
        assert expected in stdout[case], (case, stdout[case])
    assert_only_what_the_learner_should_see(stderr)


def split_by_case(text: str) -> dict[str, str]:
    chunks = text.split(MARK)[1:]
    return dict(chunk.split("\n", 1) if "\n" in chunk else (chunk, "") for chunk in chunks)


def test_stderr_in_a_notebook_kernel_shows_only_the_learners_errors():
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(NOISE_SETUP)] + [
        nbformat.v4.new_code_cell(code) for code in NOISE_CASES.values()
    ]
    NotebookClient(
        notebook, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    ).execute()

    def stream(cell, name: str) -> str:
        return "".join(o["text"] for o in cell.outputs if o.get("name") == name)

    assert stream(notebook.cells[0], "stderr") == ""
    cells = dict(zip(NOISE_CASES, notebook.cells[1:], strict=True))
    for case, expected in EXPECTED_STDOUT.items():
        assert expected in stream(cells[case], "stdout"), (case, cells[case].outputs)
    assert_only_what_the_learner_should_see(
        {case: stream(cell, "stderr") for case, cell in cells.items()}
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread CPU clocks")
def test_cpu_seconds_counts_the_servers_threads_not_the_callers():
    from helpers import load

    with serve(apps.app, name="cpu-seconds") as server:
        load(server, "/def-cpu?seconds=0.02", progress=False)  # start a worker
        before = server.cpu_seconds()
        deadline = time.thread_time() + 0.3
        while time.thread_time() < deadline:  # the caller computes: not the server's CPU
            pass
        idle = server.cpu_seconds() - before
        load(server, "/def-cpu?seconds=0.3", progress=False)  # a worker computes: the server's
        busy = server.cpu_seconds() - before - idle
    assert idle < 0.05, idle
    assert 0.2 <= busy <= 0.6, busy


def test_a_running_server_shows_a_link_to_its_docs_and_a_stopped_one_does_not(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    with serve(apps.app, name="docs-link") as server:
        assert server.docs_url == f"{server.url}/docs"
        shown = server._repr_html_()
        assert f'href="{server.url}/docs"' in shown and repr(server).split()[0][1:] in shown
    assert "href" not in server._repr_html_()


def test_on_jupyterhub_the_docs_link_goes_through_jupyter_server_proxy(monkeypatch):
    pytest.importorskip("jupyter_server_proxy")
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/user/ada/")
    with serve(apps.app, name="docs-proxy") as server:
        assert server.docs_url == f"/user/ada/proxy/{server.port}/docs"
        assert f'href="/user/ada/proxy/{server.port}/docs"' in server._repr_html_()


def test_a_request_through_the_proxy_gets_links_under_the_proxys_prefix():
    # jupyter-server-proxy strips its prefix from the path and names it in X-Forwarded-Context;
    # Swagger UI must then fetch openapi.json under the prefix, or the docs page stays empty
    with serve(apps.app, name="root-path") as server:
        prefix = f"/user/ada/proxy/{server.port}"
        proxied = urllib.request.Request(
            server.url + "/docs", headers={"X-Forwarded-Context": prefix}
        )
        with urllib.request.urlopen(proxied, timeout=5) as response:
            assert f"url: '{prefix}/openapi.json'" in response.read().decode()
        _status, _headers, direct = get(server.url + "/docs")
        assert "url: '/openapi.json'" in direct.decode()
        # the routes still match, and the response still says who served it
        root = urllib.request.Request(server.url + "/", headers={"X-Forwarded-Context": prefix})
        with urllib.request.urlopen(root, timeout=5) as response:
            assert response.read() == b'{"ok":true}'
            assert response.headers["x-served-by"] == "event loop"
