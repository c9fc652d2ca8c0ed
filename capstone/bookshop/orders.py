"""Orders: place one, look one up, and quote its shipping."""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from . import store
from .security import current_user

router = APIRouter(prefix="/orders", tags=["orders"])


class NewOrder(BaseModel):
    book_id: int = Field(ge=1, examples=[3])
    quantity: int = Field(ge=1, le=10, examples=[1])


def send_confirmation(order: dict[str, Any], email: str) -> None:
    """Queue the confirmation mail (the mail server picks the outbox up)."""
    store.OUTBOX.append({"to": email, "order_id": order["id"]})


@router.post("", status_code=201)
async def place_order(
    new: NewOrder, tasks: BackgroundTasks, user: Annotated[dict[str, Any], Depends(current_user)],
) -> dict[str, Any]:
    if await store.get_book(new.book_id) is None:
        raise HTTPException(status_code=404, detail=f"no book {new.book_id}")
    order = await store.add_order(user["id"], new.book_id, new.quantity)
    tasks.add_task(send_confirmation, order, user["email"])
    return order


@router.get("/{order_id}")
async def get_order(order_id: int) -> dict[str, Any]:
    order = await store.get_order(order_id)
    if order is None:
        raise HTTPException(status_code=404, detail=f"no order {order_id}")
    return order


@router.get("/{order_id}/shipping")
async def shipping_quote(order_id: int, request: Request, country: str = "NL") -> dict[str, Any]:
    order = await get_order(order_id)
    book = await store.get_book(order["book_id"])
    assert book is not None
    weight_g = book["weight_g"] * order["quantity"]
    async with httpx.AsyncClient(base_url=request.app.state.partners_url) as carrier:
        reply = await carrier.get("/carrier/quote", params={"weight_g": weight_g,
                                                             "country": country})
    reply.raise_for_status()
    return {"order_id": order_id, "weight_g": weight_g, **reply.json()}
