"""Small apps the helpers' tests serve. A module of its own, so loop blocks point at real lines."""

from __future__ import annotations

import asyncio
import functools
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


@app.get("/")
async def root() -> dict[str, bool]:
    return {"ok": True}


@app.get("/sleep")
async def awaits_sleep(seconds: float = 0.5) -> dict[str, float]:
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@app.get("/blocking-sleep")
async def blocking_sleep() -> dict[str, str]:
    time.sleep(0.48)  # BLOCKS THE LOOP: the loop watch must point here
    return {"blocked": "sleep"}


@app.get("/cpu")
async def cpu_loop() -> dict[str, int]:
    deadline = time.perf_counter() + 0.3
    spins = 0
    while time.perf_counter() < deadline:  # BLOCKS THE LOOP: pure-Python work
        spins += 1
    return {"spins": spins}


@app.get("/def-sleep")
def def_sleep(seconds: float = 0.5) -> dict[str, float]:
    time.sleep(seconds)  # fine: a def endpoint runs in the threadpool
    return {"slept": seconds}


@app.get("/status/{code}")
async def status(code: int):
    from fastapi.responses import JSONResponse

    return JSONResponse({"code": code}, status_code=code)


@app.get("/forever")
async def forever() -> None:
    await asyncio.Event().wait()


@asynccontextmanager
async def failing_lifespan(app: FastAPI):
    raise RuntimeError("the database is not there")
    yield  # pragma: no cover


broken_lifespan_app = FastAPI(lifespan=failing_lifespan)


@asynccontextmanager
async def slow_lifespan(app: FastAPI):
    await asyncio.sleep(60)
    yield


slow_lifespan_app = FastAPI(lifespan=slow_lifespan)


@app.get("/hold-loop-forever")
async def hold_loop_forever() -> None:
    time.sleep(3600)  # a student's server that blocks forever


@app.get("/collect-garbage")
async def collect_garbage() -> dict[str, int]:
    import gc

    return {"unreachable": gc.collect()}  # a full collection, on the loop's thread


@app.get("/c-call")
async def one_long_c_call(n: int) -> dict[str, float]:
    began = time.perf_counter()
    total = sum(range(n))  # one C call: holds the GIL until it returns
    return {"total": total, "seconds": time.perf_counter() - began}


@app.get("/def-cpu")
def def_cpu(seconds: float = 0.3) -> dict[str, float]:
    from helpers.cpu import burn_for

    burn_for(seconds)  # WORKERS' LINE: pure-Python CPU in a worker thread, holding the GIL
    return {"burned": seconds}


class Item(BaseModel):
    id: int
    name: str
    price: float
    tags: list[str]


@functools.cache
def many_items() -> list[dict[str, object]]:
    """70,000 plain dicts; FastAPI validates each against ``Item`` and encodes it, on the loop."""
    return [
        {"id": i, "name": f"item {i}", "price": i / 2, "tags": ["a", "b"]} for i in range(70_000)
    ]


@app.get("/items", response_model=list[Item])
async def items() -> list[dict[str, object]]:
    return many_items()


@asynccontextmanager
async def slow_shutdown(app: FastAPI):
    yield
    time.sleep(0.3)  # SHUTDOWN: blocks the loop while the server stops


slow_shutdown_app = FastAPI(lifespan=slow_shutdown)


@slow_shutdown_app.get("/")
async def slow_shutdown_root() -> dict[str, bool]:
    return {"ok": True}
