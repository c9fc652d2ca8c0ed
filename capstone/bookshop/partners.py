"""The services the shop talks to: a carrier that quotes shipping, an audit trail and a
search engine. In production they run elsewhere; here, stand-ins on 127.0.0.1, started by
the shop's lifespan. They are not part of what you fix."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI

from helpers import Server, serve

CARRIER_DELAY_S = 0.05
AUDIT_DELAY_S = 0.06
SEARCH_DELAY_S = 0.1

AUDIT_EVENTS: list[dict[str, Any]] = []
INDEXED_TITLES: list[str] = []

partners = FastAPI(title="Folio's partners")


@partners.get("/carrier/quote")
async def quote(weight_g: int, country: str = "NL") -> dict[str, Any]:
    await asyncio.sleep(CARRIER_DELAY_S)
    return {"carrier": "Parcelwise", "country": country,
            "price_cents": 395 + 60 * (weight_g // 250)}


@partners.post("/audit/events", status_code=201)
async def record(event: dict[str, Any]) -> dict[str, int]:
    await asyncio.sleep(AUDIT_DELAY_S)
    AUDIT_EVENTS.append(event)
    return {"recorded": len(AUDIT_EVENTS)}


@partners.post("/search/index")
async def index(titles: list[str]) -> dict[str, int]:
    await asyncio.sleep(SEARCH_DELAY_S)
    INDEXED_TITLES[:] = titles
    return {"indexed": len(titles)}


def start() -> Server:
    """Serve the partners on 127.0.0.1 at a free port."""
    return serve(partners, name="folio-partners")
