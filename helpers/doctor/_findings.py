"""Turn the loop watch's records into findings: which part of the app held the loop, at
which line, why, and the one-line fix."""

from __future__ import annotations

import linecache
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from helpers import loopwatch

from ._plan import PROBE_PATH, Function

ENDPOINT = "endpoint"
DEPENDENCY = "dependency"
MIDDLEWARE = "middleware"
BACKGROUND_TASK = "background task"
ENCODING = "encoding the response"
GIL = "GIL held by other threads"
GARBAGE_COLLECTION = "garbage collection"
C_CODE = "C code that kept the GIL"
LIBRARY = "library code"
OWN_CODE = (ENDPOINT, DEPENDENCY, MIDDLEWARE, BACKGROUND_TASK)
"""The parts whose line is the app's own code running, not one the doctor names for it."""


@dataclass(frozen=True)
class Finding:
    """One place that held the event loop during a route's burst, its blocks added up."""

    duration_ms: float
    """All the blocks at this place, added up."""
    blocks: int
    longest_ms: float
    file: str
    line: int
    code: str
    part: str
    """Which part of the app ran it: one of the constants above (``endpoint``, ``dependency``…)."""
    cause: str
    """The cause in words: ``time.sleep in the endpoint's own code``, ``waiting for the GIL…``."""
    fix: str
    evidence: str = ""
    """What the loop watch saw in the longest of the blocks: samples, the loop thread's CPU
    share and wake-ups, the other threads that ran, and where the loop's thread was."""

    @property
    def where(self) -> str:
        return f"{_short(self.file)}:{self.line}" if self.line else ""


@dataclass(frozen=True)
class AppParts:
    """The app's functions by role, to tell which part a sampled stack was in."""

    roles: Mapping[tuple[str, str], tuple[str, str]]
    """``(file, function name) -> (part, display name)``."""

    @staticmethod
    def of(
        endpoints: Iterable[Function], dependencies: Iterable[Function],
        middleware: Iterable[Function],
    ) -> AppParts:
        roles: dict[tuple[str, str], tuple[str, str]] = {}
        for part, functions in (
            (MIDDLEWARE, middleware), (DEPENDENCY, dependencies), (ENDPOINT, endpoints),
        ):
            for function in functions:
                roles[(function.file, function.name)] = (part, f"{function.name}()")
        return AppParts(roles)


def _short(path: str) -> str:
    """The last two parts of a path: ``capstone/orders.py``."""
    parts = path.replace("\\", "/").split("/")
    return "/".join(parts[-2:])


def _frames(stack: Sequence[str]) -> list[tuple[str, int, str]]:
    """``file:line in function`` strings, innermost first, as tuples."""
    frames = []
    for text in reversed(stack):
        place, _, function = text.rpartition(" in ")
        file, _, line = place.rpartition(":")
        frames.append((file, int(line) if line.isdigit() else 0, function))
    return frames


def part_of(block: loopwatch.LoopBlock, parts: AppParts) -> tuple[str, str]:
    """Which part of the app the loop was running (part, name), read outwards from the
    innermost frame: the first frame that is a known function, or a framework frame that
    says it was a background task or a middleware."""
    for file, _, function in _frames(block.stack):
        role = parts.roles.get((file, function))
        if role is not None:
            return role
        normal = file.replace("\\", "/")
        if "starlette/background.py" in normal:
            return BACKGROUND_TASK, ""
        if "starlette/middleware/base.py" in normal:
            return MIDDLEWARE, ""
        if "fastapi/routing.py" in normal and function in ("serialize_response", "app"):
            break
    if block.phase == "running a background task":
        return BACKGROUND_TASK, ""
    if block.phase == "running a middleware":
        return MIDDLEWARE, ""
    if block.phase in _RESPONSE_PHASES:
        return ENCODING, ""
    return (ENDPOINT, "") if not loopwatch.is_library_file(block.filename) else (LIBRARY, "")


_RESPONSE_PHASES = (
    "encoding the response", "validating and encoding the response", "building the response",
    "reading or writing the connection",
)
"""What FastAPI and uvicorn do with a response on the loop: a large one takes long in each."""


def loop_cpu_share(block: loopwatch.LoopBlock) -> float:
    """How much of the block the loop's thread spent on the CPU, as the watch's evidence line
    gives it (``loop thread CPU 97%``): near 1 when it computed, near 0 when it waited."""
    match = re.search(r"loop thread CPU (\d+)%", block.evidence)
    return int(match.group(1)) / 100 if match else 0.0


def _background_task_name(block: loopwatch.LoopBlock) -> str:
    frames = _frames(block.stack)
    for index, (file, _, _) in enumerate(frames):
        if "starlette/background.py" in file.replace("\\", "/") and index > 0:
            return f"{frames[index - 1][2]}()"
    return ""


_CLIENT_BUILD = ("AsyncClient(", "httpx.Client(", "ClientSession(", "create_default_context")
_SYNC_HTTP = ("requests.", "urlopen(", "httpx.get(", "httpx.post(", "http.client", "urllib",
              "httpx/_client.py", "requests/sessions.py")
_RELEASES_GIL = ("hashlib.", "pbkdf2", "scrypt", "bcrypt", "argon2", "zlib.", "gzip.", "lzma.")
"""Calls whose C code lets go of the GIL: in a thread they leave the loop free."""


def _fix(part: str, name: str, code: str, stack_text: str, computing: bool) -> str:
    """One line: what to change, chosen by what held the loop and in which part."""
    if any(mark in code for mark in _CLIENT_BUILD) or "httpx/_config.py" in stack_text:
        return ("build one client in the lifespan and share it (app.state), instead of one "
                "per request: building it loads the SSL certificates on the loop")
    if part == ENCODING:
        return ("send less per request (paginate), or stream it in chunks "
                "(a StreamingResponse over an async generator), so the loop is free between them")
    if part == GIL:
        return ("move the CPU work to a process pool (`await loop.run_in_executor(pool, fn, "
                "...)`) or more workers: threads never run Python in parallel")
    if part == GARBAGE_COLLECTION:
        return "the route creates a great many objects at once: return or build fewer"
    if computing and "time.sleep" not in code:
        if any(mark in code for mark in _RELEASES_GIL):
            also = {
                DEPENDENCY: ", or declare the dependency with plain `def`",
                BACKGROUND_TASK: ", or declare the task with plain `def`",
                ENDPOINT: ", or declare the endpoint with plain `def`",
            }.get(part, "")
            return ("CPU work on the loop, in C code that releases the GIL: run it in a thread "
                    f"with `await run_in_threadpool(...)`{also}")
        where = {BACKGROUND_TASK: "a task queue or "}.get(part, "")
        return (f"CPU work on the loop: move it to {where}a process pool "
                "(`await loop.run_in_executor(pool, fn, ...)`)")
    if "time.sleep" in code:
        instead = "use `await asyncio.sleep(...)`"
    elif "sqlite3" in stack_text or ".execute(" in code:
        instead = "use an async driver (aiosqlite, asyncpg) with `await`"
    elif any(mark in code or mark in stack_text for mark in _SYNC_HTTP):
        instead = "use an async HTTP client (one shared httpx.AsyncClient) with `await`"
    else:
        instead = "use an async version of the call with `await`"
    if part == DEPENDENCY:
        return f"{instead}, or declare the dependency {name or ''} with plain `def`".replace(
            "  ", " "
        )
    if part == BACKGROUND_TASK:
        return f"{instead}, or declare the task with plain `def` (it then runs in a thread)"
    if part == MIDDLEWARE:
        return f"{instead}, or wrap the call in `await run_in_threadpool(...)`"
    return f"{instead}, or declare the endpoint with plain `def` (it then runs in a thread)"


def _gil_cause(block: loopwatch.LoopBlock) -> str:
    """``waiting for the GIL while 6 threadpool workers ran app.py:47 `total += i * i```:
    the lines threads were caught running, busiest first (a thread known only by the function
    it was given counts only when no thread was caught)."""
    caught = [r for r in block.threads if r.lineno and r.seen_running and not r.job_only]
    runs = caught or [r for r in block.threads if r.lineno]
    by_place: dict[str, list[str]] = {}
    for run in runs:
        at = f"{_short(run.filename)}:{run.lineno} `{source_only(run.code)}`"
        by_place.setdefault(at, []).append(run.name)
    if not by_place:
        return "waiting for the GIL, held by another thread"
    parts = []
    for at, names in sorted(by_place.items(), key=lambda item: -len(item[1]))[:2]:
        if len(names) == 1:
            who = names[0]
        elif all(n.startswith("worker") for n in names):
            who = f"{len(names)} threadpool workers"
        else:
            who = f"{len(names)} threads"
        parts.append(f"{who} ran {at}")
    return "waiting for the GIL while " + "; ".join(parts)


def source_only(code: str) -> str:
    """A source line without its trailing comment."""
    return code.split("  #", 1)[0].strip()


def counts(block: loopwatch.LoopBlock, threshold_ms: float) -> bool:
    """Is this block the app's doing, and long enough to report?

    Not counted, as the machine's doing rather than the app's code: a thread or a process
    pool being started; and a GIL wait while the other threads were all in calls that let go
    of the GIL (``hashlib``, ``zlib``: on a machine short of cores they are slow to hand it
    back, but a process pool would not make them faster). A block in which no line of Python
    could be sampled, or only library code (outside FastAPI's response work, or in it while
    the loop's thread used little CPU), or an ``await`` line while the loop's thread used
    little CPU, counts from twice the threshold: a long C call on the loop shows so, and so,
    briefly, does a starved machine."""
    if block.starting_a_thread or block.starting_a_process:
        return False
    if block.waited_for_gil and block.threads and all(
        any(mark in run.code for mark in _RELEASES_GIL) for run in block.threads
    ):
        return False
    if block.cause == loopwatch.CAUSE_UNSAMPLED:
        return block.duration_ms >= 2 * threshold_ms
    if (block.cause == loopwatch.CAUSE_LOOP and loopwatch.is_library_file(block.filename)
            and (block.phase not in _RESPONSE_PHASES or loop_cpu_share(block) < 0.5)):
        # no line of the app's own code was running: a framework's moment on a busy machine
        # (seen: 73 ms in dataclass code under a middleware, during a 3 ms route), or response
        # work its thread hardly ran for, which is not encoding but waiting for a core (seen:
        # 56 ms writing a small answer while ten threads hashed passwords on two cores)
        return block.duration_ms >= 2 * threshold_ms
    if (block.cause == loopwatch.CAUSE_LOOP and _AWAIT.search(block.code or "")
            and loop_cpu_share(block) < 0.5):
        # an `await` line that neither computed nor waited on the GIL: the loop's thread was
        # not running at all, as on a starved machine (seen: 50 ms at `await client.get(url)`
        # in lesson 05, which never blocks), or a library blocked inside the awaited call
        return block.duration_ms >= 2 * threshold_ms
    return block.duration_ms >= threshold_ms


_AWAIT = re.compile(r"\bawait\b")


def _producing_own_response(block: loopwatch.LoopBlock) -> bool:
    """An unsampled block in which the loop's thread computed, and which ended as a response
    of the route went out (not the doctor's probe: in a burst, every other request is the
    route's)."""
    return (block.ended_with_response and loop_cpu_share(block) >= 0.5
            and not block.request.startswith(f"GET {PROBE_PATH}"))


def findings_of(
    blocks: Sequence[loopwatch.LoopBlock], parts: AppParts, endpoint: Function | None,
    threshold_ms: float,
) -> list[Finding]:
    """The blocks of one route's burst that :func:`counts`, grouped by place, longest total
    first."""
    grouped: dict[tuple[str, int, str, str], list[loopwatch.LoopBlock]] = {}
    described: dict[tuple[str, int, str, str], tuple[str, str, str, str, str]] = {}
    for block in blocks:
        if not counts(block, threshold_ms):
            continue
        file, line, code = block.filename, block.lineno, block.code
        computing = loop_cpu_share(block) >= 0.5
        if block.cause == loopwatch.CAUSE_GIL:
            part, name = GIL, ""
            cause = _gil_cause(block)
        elif block.cause == loopwatch.CAUSE_GC:
            part, name, cause = GARBAGE_COLLECTION, "", str(block.code)
            file, line, code = "", 0, ""
        elif block.cause == loopwatch.CAUSE_UNSAMPLED and _producing_own_response(block):
            # C code computing on the loop until the route's own response went out: FastAPI
            # validating and encoding it in pydantic-core, which never lets go of the GIL
            part, name = ENCODING, ""
            cause = "validating and encoding the response (C code: no Python line to sample)"
            file, line, code = "", 0, ""
        elif block.cause == loopwatch.CAUSE_UNSAMPLED:
            part, name, cause = C_CODE, "", block.code
            file, line, code = "", 0, ""
        else:
            part, name = part_of(block, parts)
            if part == BACKGROUND_TASK and not name:
                name = _background_task_name(block)
            if part == ENCODING or (part == LIBRARY and block.in_library_code):
                cause = f"{block.phase or 'library code'} ({_short(file)}:{line})"
                if endpoint is not None:  # the route's own line says more than the library's
                    file, line = endpoint.file, endpoint.line
                    code = linecache.getline(file, line).strip()
            else:
                what = "CPU work" if computing else "a blocking wait"
                cause = f"{what} in the {part}" + (f" {name}" if name else "")
        if (part in (GARBAGE_COLLECTION, C_CODE, ENCODING) and not file and block.request
                and endpoint is not None):
            file, line = endpoint.file, endpoint.line
            code = linecache.getline(file, line).strip()
        key = (file, line, part, name)
        grouped.setdefault(key, []).append(block)
        if key not in described:
            stack_text = " ".join(block.stack)
            fix = _fix(part, name, code, stack_text, computing)
            described[key] = (file, source_only(code), part, cause, fix)
    findings = []
    for key, group in grouped.items():
        file, code, part, cause, fix = described[key]
        durations = [b.duration_ms for b in group]
        longest = max(group, key=lambda b: b.duration_ms)
        findings.append(Finding(
            sum(durations), len(group), longest.duration_ms, file, key[1], code, part, cause, fix,
            _evidence(longest),
        ))
    findings.sort(key=lambda f: -f.duration_ms)
    return findings


def _evidence(block: loopwatch.LoopBlock) -> str:
    """The watch's evidence, and the innermost frames of the loop's thread when it has them."""
    frames = " < ".join(_short(f) for f in reversed(block.stack[-3:]))
    return block.evidence + (f"; loop thread at {frames}" if frames else "")
