"""For the operators: health, counts, and rebuilding the search index."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request

from . import partners, store

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/stats")
async def stats() -> dict[str, int]:
    return {
        "users": len(store.USERS),
        "books": len(store.BOOKS),
        "orders": len(store.ORDERS),
        "confirmations_queued": len(store.OUTBOX),
        "indexed_titles": len(partners.INDEXED_TITLES),
    }


async def rebuild_search_index(partners_url: str) -> None:
    """Send every title to the search engine, which rebuilds its index from them."""
    titles = [book["title"] for book in store.BOOKS.values()]
    sending = urllib.request.Request(
        f"{partners_url}/search/index", data=json.dumps(titles).encode(),
        headers={"content-type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(sending, timeout=5) as reply:
        reply.read()


@router.post("/reindex", status_code=202)
async def reindex(request: Request, tasks: BackgroundTasks) -> dict[str, Any]:
    tasks.add_task(rebuild_search_index, request.app.state.partners_url)
    return {"reindexing": len(store.BOOKS)}
