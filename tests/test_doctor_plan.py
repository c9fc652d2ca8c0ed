"""How the doctor builds a request for each route from the app's OpenAPI schema."""

from __future__ import annotations

import enum
from typing import Any

from fastapi import Body, Depends, FastAPI, Header, Path, Query, WebSocket
from pydantic import BaseModel, Field

from helpers.doctor._plan import Plan, Skipped, plan_requests


class Colour(enum.StrEnum):
    RED = "red"
    BLUE = "blue"


class Line(BaseModel):
    sku: str = Field(min_length=8)
    quantity: int = Field(gt=0, le=99)
    colour: Colour
    gift: bool = False


class Order(BaseModel):
    lines: list[Line] = Field(min_length=1)
    note: str | None = None


def page_size(size: int = Query(20, le=100)) -> int:
    return size


def build_app() -> FastAPI:
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def user(user_id: int, limit: int = Query(ge=10), q: str | None = None,
                   size: int = Depends(page_size)) -> dict[str, Any]:
        return {}

    @app.post("/orders")
    def order(order: Order, x_token: str = Header()) -> dict[str, Any]:
        return {}

    @app.put("/notes/{code}")
    async def note(code: str = Path(pattern="^[A-Z]{3}$", examples=["ABC"]),
                   text: str = Body(embed=True, examples=["hello"])) -> dict[str, Any]:
        return {}

    @app.get("/codes/{code}")
    async def strict(code: str = Path(pattern="^[A-Z]{3}$")) -> dict[str, Any]:
        return {}

    # a file upload as the schema describes it (File() itself needs python-multipart)
    upload_body = {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
    }}}}

    @app.post("/upload", openapi_extra={"requestBody": upload_body})
    async def upload() -> dict[str, Any]:
        return {}

    @app.get("/files/{path:path}")
    def files(path: str) -> dict[str, Any]:
        return {}

    @app.websocket("/live")
    async def live(socket: WebSocket) -> None:
        await socket.accept()

    return app


def plans() -> dict[str, Plan | Skipped]:
    return {f"{p.method} {p.path}": p for p in plan_requests(build_app())}


def test_parameters_get_values_of_their_type_within_their_bounds() -> None:
    user = plans()["GET /users/{user_id}"]
    assert isinstance(user, Plan)
    # limit has ge=10; q is optional and left out; the dependency's query has a default
    assert user.url == "/users/1?limit=10"
    assert user.runs_on == "event loop + threadpool"  # page_size is a plain def


def test_a_json_body_is_a_minimal_valid_instance() -> None:
    order = plans()["POST /orders"]
    assert isinstance(order, Plan)
    assert order.json_body == {
        "lines": [{"sku": "doctorxx", "quantity": 1, "colour": "red"}]
    }
    assert order.headers == {"x-token": "doctor"}
    assert order.runs_on == "threadpool"
    Order.model_validate(order.json_body)  # what the app itself accepts


def test_examples_win_and_patterns_without_one_are_skipped_with_the_reason() -> None:
    every = plans()
    note = every["PUT /notes/{code}"]
    assert isinstance(note, Plan)
    assert note.url == "/notes/ABC" and note.json_body == {"text": "hello"}
    strict = every["GET /codes/{code}"]
    assert isinstance(strict, Skipped)
    assert "must match the pattern '^[A-Z]{3}$'" in strict.reason
    upload = every["POST /upload"]
    assert isinstance(upload, Skipped) and "multipart/form-data" in upload.reason
    live = every["WS /live"]
    assert isinstance(live, Skipped) and "WebSocket" in live.reason


def test_path_converters_are_filled_and_framework_routes_left_out() -> None:
    every = plans()
    files = every["GET /files/{path:path}"]
    assert isinstance(files, Plan) and files.url == "/files/doctor"
    assert not any(label.endswith(("/docs", "/redoc", "/openapi.json")) for label in every)
    endpoint = files.endpoint
    assert endpoint is not None and endpoint.name == "files"
    assert endpoint.file == __file__
    source = open(__file__).read().splitlines()
    assert source[endpoint.line - 1].strip().startswith("def files(")  # the def, not @app.get


def test_given_values_win_in_every_route_and_reach_optional_query_parameters() -> None:
    given = {f"{p.method} {p.path}": p for p in plan_requests(
        build_app(), {"user_id": "42", "q": "books", "code": "XYZ", "x-token": "secret"})}
    user, order, strict = given["GET /users/{user_id}"], given["POST /orders"], \
        given["GET /codes/{code}"]
    assert isinstance(user, Plan) and user.url == "/users/42?limit=10&q=books"
    assert isinstance(order, Plan) and order.headers == {"x-token": "secret"}
    # a pattern the doctor cannot fill is no obstacle once the value is given
    assert isinstance(strict, Plan) and strict.url == "/codes/XYZ"
