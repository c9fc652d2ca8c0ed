"""The app: its lifespan, its audit middleware, and the four routers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request, Response

from . import admin, orders, partners, reports, users


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    partner_server = partners.start()
    app.state.partners_url = partner_server.url
    yield
    partner_server.stop()


app = FastAPI(title="Folio", lifespan=lifespan)
app.include_router(users.router)
app.include_router(orders.router)
app.include_router(reports.router)
app.include_router(admin.router)

audit_client = httpx.Client(timeout=5.0)
CHANGES = {"POST", "PUT", "PATCH", "DELETE"}


@app.middleware("http")
async def audit_changes(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Every change that succeeded goes to the audit trail."""
    response = await call_next(request)
    if request.method in CHANGES and response.status_code < 400:
        event = {"method": request.method, "path": request.url.path,
                 "status": response.status_code}
        audit_client.post(f"{request.app.state.partners_url}/audit/events", json=event)
    return response
