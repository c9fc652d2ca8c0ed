"""What the doctor sends to each route: one request built from the app's OpenAPI schema.

Path and required query, header and cookie parameters get the value the caller gave for their
name, else their example, else a value of their type; a JSON body gets its example or a minimal
valid instance. A route it cannot build a request for is kept as a :class:`Skipped` with the
reason.
"""

from __future__ import annotations

import inspect
import json
import linecache
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import fastapi.routing
from starlette.routing import Host, Mount, Route, WebSocketRoute

PROBE_PATH = "/__doctor__/probe"
"""A path the doctor answers itself, on the app's loop: how long it takes is the loop's lag."""

_MAX_DEPTH = 8
_SKIPPED_METHODS = {"HEAD", "OPTIONS"}
"""Starlette answers these itself for every GET route; sending them measures nothing new."""


@dataclass(frozen=True)
class Function:
    """A function of the app: an endpoint, a dependency, a middleware's method."""

    name: str
    file: str
    line: int
    is_async: bool

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True)
class Plan:
    """One route and the request that exercises it."""

    method: str
    path: str
    """The route's path as declared, ``/users/{user_id}``."""
    url: str
    """The path to request, parameters filled in: ``/users/1?limit=1``."""
    endpoint: Function | None
    dependencies: tuple[Function, ...] = ()
    json_body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def runs_on(self) -> str:
        """``event loop`` for an ``async def`` endpoint, ``threadpool`` for a plain ``def``;
        ``event loop + threadpool`` when an ``async def`` endpoint has ``def`` dependencies."""
        if self.endpoint is not None and not self.endpoint.is_async:
            return "threadpool"
        if any(not dependency.is_async for dependency in self.dependencies):
            return "event loop + threadpool"
        return "event loop"


@dataclass(frozen=True)
class Skipped:
    """A route the doctor does not send requests to, and why."""

    method: str
    path: str
    reason: str
    endpoint: Function | None = None


class Unbuildable(Exception):
    """No value of this schema can be made up: the message says what it needs."""


def describe_function(call: Any) -> Function | None:
    """Name, file, first line and asyncness of an endpoint or dependency (a class instance
    with ``__call__`` counts by that method)."""
    target = inspect.unwrap(call) if callable(call) else call
    if inspect.isclass(target):  # a class used as a dependency: building it runs __init__
        target = target.__init__
    elif not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = type(call).__call__  # an instance with __call__
    code = getattr(target, "__code__", None)
    if code is None:
        return None
    is_async = inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)
    return Function(code.co_name, code.co_filename, _def_line(code), is_async)


def _def_line(code: Any) -> int:
    """The ``def`` line itself: a decorated function's code starts at its first decorator."""
    line = int(code.co_firstlineno)
    for offset in range(20):
        text = linecache.getline(code.co_filename, line + offset).lstrip()
        if text.startswith(("def ", "async def ")):
            return line + offset
        if not text:
            break
    return line


def _dependencies(route: Any) -> tuple[Function, ...]:
    found: list[Function] = []

    def walk(dependant: Any) -> None:
        for sub in getattr(dependant, "dependencies", ()):
            described = describe_function(sub.call) if sub.call is not None else None
            if described is not None and described not in found:
                found.append(described)
            walk(sub)

    walk(getattr(route, "dependant", None))
    return tuple(found)


@dataclass(frozen=True)
class _RouteView:
    """A route as the app serves it: a router's prefix included in its path."""

    route: Any
    """The route object itself (``APIRoute``, ``WebSocketRoute``, ``Mount``…)."""
    path: str
    path_format: str
    methods: frozenset[str]
    endpoint: Any


def _route_views(app: Any) -> list[_RouteView]:
    """Every route of ``app``. FastAPI 0.160 and later keep an included router as one entry
    of ``app.routes``; ``fastapi.routing.iter_route_contexts`` lists the routes inside it."""
    routes = list(getattr(app, "routes", []))
    iterate = getattr(fastapi.routing, "iter_route_contexts", None)
    entries = list(iterate(routes)) if iterate is not None else routes
    views = []
    for entry in entries:
        route = getattr(entry, "original_route", entry)
        path = str(getattr(entry, "path", None) or getattr(route, "path", "") or "")
        views.append(_RouteView(
            route, path, str(getattr(entry, "path_format", None) or path),
            frozenset(getattr(entry, "methods", None) or getattr(route, "methods", None) or ()),
            getattr(entry, "endpoint", None) or getattr(route, "endpoint", None),
        ))
    return views


def plan_requests(app: Any, values: Mapping[str, str] | None = None) -> list[Plan | Skipped]:
    """One entry per route and method, in the order the app declares them. ``values`` gives
    named parameters their value wherever a route has them, optional query parameters too
    (``{"n": "5000"}``): an id that must exist, or a size that makes a route do its work."""
    schema = _openapi(app)
    plans: list[Plan | Skipped] = []
    for view in _route_views(app):
        if getattr(view.endpoint, "__module__", "") == "fastapi.applications":
            continue  # FastAPI's own pages (/docs, /redoc, /openapi.json), not the app's code
        plans.extend(_plan_route(view, schema, values or {}))
    return plans


def _openapi(app: Any) -> dict[str, Any] | None:
    openapi = getattr(app, "openapi", None)
    if not callable(openapi):
        return None
    try:
        schema = openapi()
    except Exception:  # a schema FastAPI cannot build: routes fall back to what they declare
        return None
    return schema if isinstance(schema, dict) else None


def _plan_route(
    view: _RouteView, schema: dict[str, Any] | None, values: Mapping[str, str],
) -> list[Plan | Skipped]:
    route, path = view.route, view.path
    endpoint = describe_function(view.endpoint)
    if isinstance(route, WebSocketRoute) or "websocket" in type(route).__name__.lower():
        return [Skipped("WS", path, "a WebSocket route: the doctor sends HTTP requests only",
                        endpoint)]
    if isinstance(route, (Mount, Host)):
        return [Skipped("*", path or "/", "a mounted app (static files or a sub-application): "
                        "examine it on its own", None)]
    if not isinstance(route, Route):
        return [Skipped("?", path or "?", f"a {type(route).__name__}, not an HTTP route", None)]
    methods = sorted(set(view.methods or {"GET"}) - _SKIPPED_METHODS) or ["GET"]
    dependencies = _dependencies(route)
    operations = (schema or {}).get("paths", {}).get(view.path_format, {})
    result: list[Plan | Skipped] = []
    for method in methods:
        operation = operations.get(method.lower())
        try:
            if operation is not None:
                url, body, headers = _request_from_operation(
                    path, operation, schema or {}, values)
            elif "{" in path:
                raise Unbuildable(
                    "its path has parameters and it is not in the OpenAPI schema "
                    "(include_in_schema=False, or not a FastAPI route)"
                )
            else:
                url, body, headers = path, None, {}
        except Unbuildable as why:
            result.append(Skipped(method, path, f"cannot build a request: {why}", endpoint))
            continue
        result.append(Plan(method, path, url, endpoint, dependencies, body, headers))
    return result


def _request_from_operation(
    path: str, operation: dict[str, Any], schema: dict[str, Any], given: Mapping[str, str],
) -> tuple[str, Any, dict[str, str]]:
    resolve = _resolver(schema)
    query: list[tuple[str, str]] = []
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for parameter in operation.get("parameters", []):
        parameter = resolve(parameter)
        where, name = parameter.get("in"), parameter.get("name", "")
        if where != "path" and not parameter.get("required") and name not in given:
            continue
        value = given.get(name)
        if value is None and _has_example(parameter):
            value = _example(parameter)
        if value is None:
            value = instance(parameter.get("schema", {}), resolve, f"parameter {name!r}")
        if where == "path":
            path = path.replace("{" + name + "}", urllib.parse.quote(_text(value), safe=""))
            path = _replace_converted(path, name, _text(value))
        elif where == "query":
            values = value if isinstance(value, list) else [value]
            query.extend((name, _text(v)) for v in values)
        elif where == "header":
            headers[name] = _text(value)
        elif where == "cookie":
            cookies.append(f"{name}={_text(value)}")
    if cookies:
        headers["cookie"] = "; ".join(cookies)
    body = _body(operation.get("requestBody"), resolve)
    url = path + ("?" + urllib.parse.urlencode(query) if query else "")
    return url, body, headers


def _replace_converted(path: str, name: str, value: str) -> str:
    """``{user_id:int}`` as Starlette writes a typed path parameter."""
    start = path.find("{" + name + ":")
    if start < 0:
        return path
    end = path.find("}", start)
    return path[:start] + urllib.parse.quote(value, safe="") + path[end + 1:]


def _body(request_body: Any, resolve: Callable[[Any], Any]) -> Any:
    if not request_body:
        return None
    request_body = resolve(request_body)
    content: dict[str, Any] = request_body.get("content", {})
    json_type = next((t for t in content if t == "application/json" or t.endswith("+json")), None)
    if json_type is None:
        if not request_body.get("required"):
            return None
        kinds = ", ".join(content) or "no content type"
        raise Unbuildable(f"it takes a {kinds} body; the doctor sends JSON bodies only")
    media = content[json_type]
    if _has_example(media):
        return _example(media)
    return instance(media.get("schema", {}), resolve, "the JSON body")


def _has_example(holder: Mapping[str, Any]) -> bool:
    return "example" in holder or bool(holder.get("examples"))


def _example(holder: Mapping[str, Any]) -> Any:
    if "example" in holder:
        return holder["example"]
    examples = holder["examples"]
    first = next(iter(examples.values())) if isinstance(examples, dict) else examples[0]
    # an OpenAPI Example Object holds its value under "value"; JSON Schema's is the value
    return first["value"] if isinstance(first, dict) and "value" in first else first


def _resolver(schema: dict[str, Any]) -> Callable[[Any], Any]:
    def resolve(node: Any) -> Any:
        seen = 0
        while isinstance(node, dict) and "$ref" in node:
            seen += 1
            if seen > _MAX_DEPTH:
                raise Unbuildable("its schema's $ref chain does not end")
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise Unbuildable(f"its schema refers to {ref}, outside the app's schema")
            target: Any = schema
            for part in ref[2:].split("/"):
                target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
            node = target
        return node

    return resolve


def instance(node: Any, resolve: Callable[[Any], Any], what: str, depth: int = 0) -> Any:
    """A small value that ``node``'s JSON Schema accepts: its example, default, first enum
    member, or one built from its type and bounds."""
    if depth > _MAX_DEPTH:
        raise Unbuildable(f"{what} nests deeper than {_MAX_DEPTH} levels")
    node = resolve(node)
    if not isinstance(node, dict):
        return "doctor"
    if _has_example(node):
        return _example(node)
    for key in ("const", "default"):
        if key in node:
            return node[key]
    if node.get("enum"):
        return node["enum"][0]
    for key in ("anyOf", "oneOf"):
        if node.get(key):
            options = [o for o in node[key] if resolve(o).get("type") != "null"] or node[key]
            return instance(options[0], resolve, what, depth + 1)
    if node.get("allOf"):
        merged: dict[str, Any] = {}
        for part in node["allOf"]:
            value = instance(part, resolve, what, depth + 1)
            if not isinstance(value, dict):
                return value
            merged.update(value)
        return merged
    kind = node.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in node:
        required = node.get("required", [])
        properties = node.get("properties", {})
        return {
            name: instance(properties.get(name, {}), resolve, f"{what}.{name}", depth + 1)
            for name in required
        }
    if kind == "array":
        count = max(1, int(node.get("minItems", 1)))
        item = instance(node.get("items", {}), resolve, f"{what}[]", depth + 1)
        if node.get("uniqueItems") and count > 1:
            raise Unbuildable(f"{what} needs {count} different items")
        return [item] * count
    if kind in ("integer", "number"):
        return _number(node, kind == "integer", what)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    if kind == "string" or kind is None:
        return _string(node, what)
    raise Unbuildable(f"{what} has the type {kind!r}")


def _number(node: Mapping[str, Any], integer: bool, what: str) -> int | float:
    low = node.get("minimum")
    if "exclusiveMinimum" in node:
        low = node["exclusiveMinimum"] + (1 if integer else 0.5)
    high = node.get("maximum")
    if "exclusiveMaximum" in node:
        high = node["exclusiveMaximum"] - (1 if integer else 0.5)
    value: float = 1
    if low is not None and value < low:
        value = low
    if high is not None and value > high:
        value = high
    if low is not None and high is not None and low > high:
        raise Unbuildable(f"{what} must be between {low} and {high}")
    step = node.get("multipleOf")
    if step:
        value = step * max(1, -(-value // step))
    if integer:
        return int(value) if float(value).is_integer() else int(value) + 1
    return value


_FORMATS = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "12:00:00",
    "duration": "P1D",
    "email": "learner@example.com",
    "uri": "http://127.0.0.1/",
    "url": "http://127.0.0.1/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
}


def _string(node: Mapping[str, Any], what: str) -> str:
    if node.get("format") in _FORMATS:
        return _FORMATS[node["format"]]
    if node.get("format") == "binary":
        raise Unbuildable(f"{what} is a file upload")
    if "pattern" in node:
        raise Unbuildable(
            f"{what} must match the pattern {node['pattern']!r}; give it an example in the app"
        )
    low, high = int(node.get("minLength", 0)), node.get("maxLength")
    text = "doctor"
    if len(text) < low:
        text = text + "x" * (low - len(text))
    if high is not None and len(text) > int(high):
        text = text[: int(high)]
    return text


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)
