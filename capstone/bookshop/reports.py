"""Reports for the back office: a summary, the bestsellers, and the full order export."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from . import store

router = APIRouter(prefix="/reports", tags=["reports"])


class OrderRow(BaseModel):
    id: int
    user_id: int
    book_id: int
    quantity: int
    total_cents: int
    placed_on: str


@router.get("/summary")
async def summary() -> dict[str, int]:
    orders = store.ORDERS.values()
    return {"orders": len(orders), "revenue_cents": sum(o["total_cents"] for o in orders)}


@router.get("/bestsellers")
def bestsellers(top: int = 3) -> list[dict[str, Any]]:
    return [{"book_id": book_id, "title": store.BOOKS[book_id]["title"], "sold": count}
            for book_id, count in store.SOLD.most_common(top)]


@router.get("/export", response_model=list[OrderRow])
async def export() -> list[dict[str, Any]]:
    """Every order ever placed, for the accountants' spreadsheet."""
    return await store.all_orders()
