"""``python -m helpers.doctor TARGET``: the app doctor on the command line (see the package)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from helpers import loadgen
from helpers.loopwatch import is_library_file
from helpers.server import ServerStartupError

from ._examine import (
    DEFAULT_CONCURRENCY,
    DEFAULT_REQUESTS,
    DEFAULT_THRESHOLD_MS,
    DEFAULT_TIMEOUT_S,
    STARTUP_TIMEOUT_S,
    Options,
    examine_app,
)
from ._report import RouteReport
from ._target import TargetError, load_target

EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.doctor",
        description="Serve a FastAPI app, send each route a burst of concurrent requests while "
        "probing the event loop, and report what blocks the loop, where, and how to fix it. "
        "Exit status: 0 nothing blocks, 1 a route blocks the loop or saturates the "
        "threadpool, 2 a usage or startup error.",
    )
    parser.add_argument("target", help="the app: package.module:app or path/to/file.py:app")
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, metavar="N",
                        help=f"requests per route (default {DEFAULT_REQUESTS}; a slow or "
                        "blocking route gets fewer, to finish in about a second)")
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, metavar="N",
                        help=f"requests in flight at once (default {DEFAULT_CONCURRENCY})")
    parser.add_argument("--threshold-ms", type=float, default=DEFAULT_THRESHOLD_MS, metavar="MS",
                        help=f"loop blocks this long or longer count (default "
                        f"{DEFAULT_THRESHOLD_MS:g})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                        help=f"longest wait for one answer (default {DEFAULT_TIMEOUT_S:g} s)")
    parser.add_argument("--startup-timeout", type=float, default=STARTUP_TIMEOUT_S,
                        metavar="S", help="longest wait for the app's lifespan startup "
                        f"(default {STARTUP_TIMEOUT_S:g} s)")
    parser.add_argument("--route", nargs=2, action="append", default=[],
                        metavar=("METHOD", "PATH"),
                        help="examine only this route (repeat for more)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="send VALUE for every parameter named NAME (path, query, header "
                        "or cookie; repeat for more): an id that must exist, a size that makes "
                        "a route do its work")
    parser.add_argument("--json", metavar="FILE",
                        help="also write the report as JSON to FILE ('-' for stdout; the table "
                        "then goes to stderr)")
    return parser


def _app_frames_only(traceback_text: str) -> str:
    """A traceback with only the app's own frames (and the innermost one, wherever it is):
    the framework's and the doctor's frames only wrap the app; a line says how many went."""
    frames: list[list[str]] = []
    head: list[str] = []
    tail: list[str] = []
    for line in traceback_text.splitlines():
        if line.startswith('  File "'):
            frames.append([line])
        elif line.startswith("    ") and frames and not tail:
            frames[-1].append(line)
        elif frames:
            tail.append(line)
        else:
            head.append(line)

    def is_app(frame: list[str]) -> bool:
        filename = frame[0][len('  File "'):].split('"', 1)[0]
        return not is_library_file(filename)

    kept = [f for i, f in enumerate(frames) if is_app(f) or i == len(frames) - 1]
    hidden = len(frames) - len(kept)
    note = [f"  ({hidden} frames of FastAPI, Starlette and the doctor left out)"] if hidden else []
    return "\n".join(head + note + [line for f in kept for line in f] + tail)


def _fail(message: str, detail: str = "") -> int:
    print(f"doctor: {message}", file=sys.stderr)
    if detail:
        print(detail.rstrip(), file=sys.stderr)
    return EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    wrong = [text for text in args.param if "=" not in text or text.startswith("=")]
    if wrong:
        parser.error(f"--param takes NAME=VALUE, not {wrong[0]!r}")
    params = tuple((text.split("=", 1)[0], text.split("=", 1)[1]) for text in args.param)
    try:
        options = Options(args.requests, args.concurrency, args.threshold_ms, args.timeout,
                          routes=tuple((m.upper(), p) for m, p in args.route), params=params,
                          startup_timeout_s=args.startup_timeout)
    except ValueError as error:
        parser.error(str(error))
    try:
        app = load_target(args.target)
    except TargetError as error:
        return _fail(f"cannot import the app: {error}", error.detail)
    from helpers.server import _resolve_app

    try:
        app = _resolve_app(app)
    except (TypeError, ServerStartupError) as error:
        return _fail(f"{args.target} is not an ASGI app: {error}")
    table: TextIO = sys.stderr if args.json == "-" else sys.stdout
    progress = None
    # a progress line on a terminal; not under Jupyter, whose `!` commands run on a pseudo-
    # terminal but show the line-erasing escape codes as text
    if sys.stderr.isatty() and "JPY_PARENT_PID" not in os.environ:
        def progress(what: str) -> None:
            print(f"\r\033[K{what}", end="", file=sys.stderr, flush=True)
    try:
        report = examine_app(app, options, target=args.target, progress=progress)
    except ServerStartupError as error:
        headline, _, detail = str(error).partition("\n")
        return _fail(f"the app did not start: {headline}", _app_frames_only(detail))
    except ValueError as error:  # --route matched nothing
        return _fail(str(error))
    finally:
        if progress is not None:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
    print(report, file=table, flush=True)
    if args.json:
        text = json.dumps(report.to_json(), indent=2)
        if args.json == "-":
            print(text, flush=True)
        else:
            with open(args.json, "w", encoding="utf-8") as out:
                out.write(text + "\n")
    status = report.exit_status
    if any(r.verdict == RouteReport.STUCK for r in report.routes):
        # A loop held for good keeps its thread in a call that never returns: end the process
        # here rather than wait for it at interpreter exit.
        loadgen._close_workers()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


if __name__ == "__main__":
    sys.exit(main())
