"""The shop's data, in memory. Reads are ``async`` as a real database driver's would be."""

from __future__ import annotations

import asyncio
import datetime
import random
from collections import Counter
from typing import Any

READ_DELAY_S = 0.002
"""What a database round trip costs (awaited, so the loop serves others meanwhile)."""

BOOKS: dict[int, dict[str, Any]] = {}
USERS: dict[int, dict[str, Any]] = {}
ORDERS: dict[int, dict[str, Any]] = {}
SOLD: Counter[int] = Counter()
"""Copies sold per book id, kept up to date as orders come in."""
OUTBOX: list[dict[str, Any]] = []
"""Order confirmations waiting for the mail server."""

_TITLES = [
    "The Quiet Loop", "Await the Tide", "Threads of Silk", "The Patient Chef", "Forty Tokens",
    "A Pool of Workers", "The Gathering", "Timeouts and Tea", "Semaphore Street",
    "The Blocking Call", "Lifespan", "The Last Request",
]
_AUTHORS = ["A. Lovelace", "G. Hopper", "B. Liskov", "D. Knuth", "M. Hamilton", "E. Dijkstra"]
_NAMES = [
    "Ada", "Grace", "Barbara", "Donald", "Margaret", "Edsger", "Frances", "Ken", "Radia",
    "Alan", "Katherine", "Linus",
]
HISTORY_SIZE = 15_000
"""Orders placed before today: the export sends them all."""


def _fill() -> None:
    chance = random.Random(7)
    editions = ["", " (2nd edition)", " (3rd edition)"]
    for book_id, title in enumerate(_TITLES * len(editions), 1):
        edition = editions[(book_id - 1) // len(_TITLES)]
        BOOKS[book_id] = {
            "id": book_id,
            "title": title + edition,
            "author": _AUTHORS[book_id % len(_AUTHORS)],
            "price_cents": 900 + 150 * (book_id % 9),
            "weight_g": 250 + 40 * (book_id % 7),
        }
    for user_id, name in enumerate(_NAMES, 1):
        USERS[user_id] = {"id": user_id, "name": name, "email": f"{name.lower()}@folio.test"}
    first_day = datetime.date(2026, 1, 1)
    for order_id in range(1, HISTORY_SIZE + 1):
        book_id = chance.randint(1, len(BOOKS))
        quantity = chance.randint(1, 3)
        ORDERS[order_id] = {
            "id": order_id,
            "user_id": chance.randint(1, len(USERS)),
            "book_id": book_id,
            "quantity": quantity,
            "total_cents": quantity * BOOKS[book_id]["price_cents"],
            "placed_on": (first_day + datetime.timedelta(days=order_id % 300)).isoformat(),
        }
        SOLD[book_id] += quantity


_fill()


async def get_user(user_id: int) -> dict[str, Any] | None:
    await asyncio.sleep(READ_DELAY_S)
    return USERS.get(user_id)


async def list_users() -> list[dict[str, Any]]:
    await asyncio.sleep(READ_DELAY_S)
    return list(USERS.values())


async def add_user(name: str, email: str) -> dict[str, Any]:
    await asyncio.sleep(READ_DELAY_S)
    user = {"id": max(USERS) + 1, "name": name, "email": email}
    USERS[user["id"]] = user
    return user


async def get_book(book_id: int) -> dict[str, Any] | None:
    await asyncio.sleep(READ_DELAY_S)
    return BOOKS.get(book_id)


async def get_order(order_id: int) -> dict[str, Any] | None:
    await asyncio.sleep(READ_DELAY_S)
    return ORDERS.get(order_id)


async def add_order(user_id: int, book_id: int, quantity: int) -> dict[str, Any]:
    await asyncio.sleep(READ_DELAY_S)
    book = BOOKS[book_id]
    order = {
        "id": max(ORDERS) + 1,
        "user_id": user_id,
        "book_id": book_id,
        "quantity": quantity,
        "total_cents": quantity * book["price_cents"],
        "placed_on": datetime.date.today().isoformat(),
    }
    ORDERS[order["id"]] = order
    SOLD[book_id] += quantity
    return order


async def all_orders() -> list[dict[str, Any]]:
    await asyncio.sleep(READ_DELAY_S)
    return [ORDERS[order_id] for order_id in sorted(ORDERS)]
