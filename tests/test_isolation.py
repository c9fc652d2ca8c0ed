"""Kernels share a JupyterHub host: servers in two processes never collide, bind only to
loopback, and vanish when their process exits without stopping them."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

KERNEL_LIKE = textwrap.dedent(
    """
    import os, sys, time
    from helpers import serve, start_upstreams
    from tests import apps

    servers = [serve(apps.app, name=f"s{i}") for i in range(10)]
    upstreams = start_upstreams(latency=0.0)

    def listening_addresses():
        inodes = set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except FileNotFoundError:  # the fd listdir itself used, already closed
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        found = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with open(table) as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    if fields[3] == "0A" and fields[9] in inodes:  # 0A = LISTEN
                        found.append(fields[1])
        return found

    print("PORTS", *[s.port for s in servers])
    print("LISTEN", *listening_addresses())
    sys.stdout.flush()
    if "--exit-without-stop" in sys.argv:
        sys.exit(0)  # atexit must stop them
    time.sleep(float(sys.argv[1]))
    """
)


def run_kernel_like(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", KERNEL_LIKE, *args],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def parse(output: str) -> tuple[list[int], list[str]]:
    lines = dict(line.split(" ", 1) for line in output.splitlines() if " " in line)
    return [int(p) for p in lines["PORTS"].split()], lines["LISTEN"].split()


def test_two_kernels_never_collide_and_bind_only_loopback():
    first, second = run_kernel_like("1.5"), run_kernel_like("1.5")
    out_first, err_first = first.communicate(timeout=60)
    out_second, err_second = second.communicate(timeout=60)
    assert first.returncode == second.returncode == 0, err_first + err_second
    ports_first, listen_first = parse(out_first)
    ports_second, listen_second = parse(out_second)
    assert len(set(ports_first)) == len(set(ports_second)) == 10
    assert not set(ports_first) & set(ports_second)
    loopback = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it
    for address in listen_first + listen_second:
        assert address.split(":")[0] == loopback, f"something listens on {address}"
    assert len(listen_first) == len(listen_second) == 14  # 10 servers + 4 stand-ins each


def test_servers_stop_when_their_process_exits():
    began = time.monotonic()
    process = run_kernel_like("0", "--exit-without-stop")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert time.monotonic() - began < 20
    ports, _ = parse(out)
    for port in ports:
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    assert "Traceback" not in err
