"""Customers: list them, look one up, sign one up, and who am I."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field

from . import store
from .security import current_user

router = APIRouter(prefix="/users", tags=["users"])


class NewUser(BaseModel):
    name: str = Field(min_length=1, max_length=40)
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$", examples=["reader@folio.test"])


@router.get("")
async def list_users() -> list[dict[str, Any]]:
    return await store.list_users()


@router.get("/me")
async def me(user: Annotated[dict[str, Any], Depends(current_user)]) -> dict[str, Any]:
    return user


@router.get("/{user_id}")
async def get_user(user_id: int) -> dict[str, Any]:
    user = await store.get_user(user_id)
    if user is None:
        raise HTTPException(status_code=404, detail=f"no user {user_id}")
    return user


@router.post("", status_code=201)
async def sign_up(new: NewUser) -> dict[str, Any]:
    return await store.add_user(new.name, new.email)
