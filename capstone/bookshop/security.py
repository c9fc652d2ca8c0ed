"""API keys: ``u<user id>.<secret>``, checked against a salted PBKDF2 hash, as a password is."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import Header, HTTPException

from . import store

ITERATIONS = 100_000
"""PBKDF2 rounds: slow on purpose, so that a stolen hash is slow to crack."""

# The keys of the sandbox's three users are "u1.sandbox-key-1" and so on; only hashes are kept.
KEY_HASHES: dict[int, str] = {}


def _hash(user_id: int, secret: str) -> str:
    salt = f"folio-user-{user_id}".encode()
    return hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, ITERATIONS).hex()


def _remember_sandbox_keys() -> None:
    for user_id in (1, 2, 3):
        KEY_HASHES[user_id] = _hash(user_id, f"sandbox-key-{user_id}")


_remember_sandbox_keys()


async def current_user(
    x_api_key: Annotated[str, Header(examples=["u1.sandbox-key-1"])],
) -> dict[str, Any]:
    """The user whose API key came with the request; 401 for a missing or wrong key."""
    user_part, _, secret = x_api_key.partition(".")
    user_id = int(user_part[1:]) if user_part[1:].isdigit() else 0
    # Hash even when the user is unknown, so that the answer takes as long either way and
    # a timing attack learns nothing.
    expected = KEY_HASHES.get(user_id, "0" * 64)
    if not hmac.compare_digest(_hash(user_id, secret), expected):
        raise HTTPException(status_code=401, detail="unknown API key")
    user = await store.get_user(user_id)
    if user is None:
        raise HTTPException(status_code=401, detail="unknown API key")
    return user
