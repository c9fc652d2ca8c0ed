"""The capstone's shop (Folio, in ``capstone/bookshop``): a working copy to fix, its functional
tests, and the check that grades a fix: the doctor finds nothing *and* every route still does
its job.

    shop = working_copy()          # notebooks/my_bookshop/, made once; edit its files
    examine(shop)                  # the doctor's report on the code as it is now
    check(shop)                    # doctor + functional tests, in a fresh process
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

COURSE = Path(__file__).resolve().parent.parent
ORIGINAL = COURSE / "capstone" / "bookshop"
"""The shop as handed out, with its problems; never edited by the course."""
SOLUTION_PATCH = COURSE / "capstone" / "solution.patch"
PACKAGE = "bookshop"
TARGET = f"{PACKAGE}.main:app"
CHECK_TIMEOUT_S = 120.0
"""The longest a whole check may take (the doctor alone takes 10-20 s)."""
WAIT_S = 3.0
"""How long a background effect (an audit event, a confirmation mail) may take to show."""


COPY_VARIABLE = "COURSE_CAPSTONE_COPY"
"""Where :func:`working_copy` puts the copy when not told: the course's tests point it at a
scratch folder, so that a learner's edited copy never changes what they measure."""


def working_copy(folder: str | Path | None = None) -> Path:
    """A copy of the shop to fix, made once: ``folder`` (default ``my_bookshop`` next to the
    notebook) holds the ``bookshop`` package. An existing copy is kept as it is, edits and all."""
    if folder is None:
        folder = os.environ.get(COPY_VARIABLE) or Path.cwd() / "my_bookshop"
    root = Path(folder)
    if not (root / PACKAGE / "main.py").is_file():
        root.mkdir(parents=True, exist_ok=True)
        shutil.copytree(ORIGINAL, root / PACKAGE, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return root.resolve()


def apply_solution(root: str | Path) -> Path:
    """Apply the course's fix (``capstone/solution.patch``) to the copy in ``root``: what a
    finished exercise looks like, for the course's tests and for instructors. Needs git."""
    # Inside another git repository (the course's own solutions/ folder), git apply would read
    # the patch's paths from that repository's top and skip them all, silently: stop git from
    # looking above the copy.
    env = dict(os.environ, GIT_CEILING_DIRECTORIES=str(Path(root).resolve().parent))
    for check in ([], ["--reverse", "--check"]):  # apply, then prove it applied
        subprocess.run(["git", "apply", *check, str(SOLUTION_PATCH)], cwd=root, check=True,
                       capture_output=True, env=env)
    return Path(root)


def _fresh_app(root: Path) -> Any:
    """Import ``bookshop.main:app`` from ``root`` anew, so edits to its files count."""
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
        del sys.modules[name]
    if str(root) in sys.path:
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))
    from helpers.doctor._target import load_target

    return load_target(TARGET)


def examine(root: str | Path, **options: Any) -> Any:
    """The doctor's report on the shop in ``root`` as its files are now (a notebook shows it
    as a table and a picture); ``options`` as for :func:`helpers.doctor.examine`."""
    from helpers import doctor

    return doctor.examine(_fresh_app(Path(root)), **options)


# -- the functional tests -------------------------------------------------------------------
@dataclass
class Outcome:
    """One functional test: the route, and what went wrong (empty when it passed)."""

    route: str
    problem: str = ""

    @property
    def passed(self) -> bool:
        return not self.problem


def _eventually(condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _expect(condition: bool, problem: str) -> None:
    if not condition:
        raise AssertionError(problem)


def _tests(client: httpx.Client, shop: Any) -> list[tuple[str, Callable[[], None]]]:
    """Each route's behaviour, as the shop's owners rely on it (``shop`` is the package)."""
    store, partners = shop.store, shop.partners
    key = {"x-api-key": "u2.sandbox-key-2"}

    def users() -> None:
        reply = client.get("/users")
        _expect(reply.status_code == 200, f"answered {reply.status_code}")
        names = [u["name"] for u in reply.json()][:12]
        _expect(names[:3] == ["Ada", "Grace", "Barbara"],
                f"listed {names[:3]}, not Ada, Grace, Barbara")

    def me() -> None:
        reply = client.get("/users/me", headers=key)
        _expect(reply.status_code == 200 and reply.json().get("name") == "Grace",
                f"with user 2's key answered {reply.status_code} {reply.text[:80]}")
        wrong = client.get("/users/me", headers={"x-api-key": "u2.guess"})
        _expect(wrong.status_code == 401, f"with a wrong key answered {wrong.status_code}, not 401")

    def one_user() -> None:
        reply = client.get("/users/3")
        _expect(reply.json().get("name") == "Barbara", f"/users/3 answered {reply.text[:80]}")
        missing = client.get("/users/999")
        _expect(missing.status_code == 404, f"/users/999 answered {missing.status_code}, not 404")

    def sign_up() -> None:
        before = len(partners.AUDIT_EVENTS)
        reply = client.post("/users", json={"name": "Tess", "email": "tess@folio.test"})
        _expect(reply.status_code == 201, f"answered {reply.status_code}, not 201")
        user_id = reply.json()["id"]
        again = client.get(f"/users/{user_id}").json()
        _expect(again.get("email") == "tess@folio.test", f"the new user reads back as {again}")
        _expect(_eventually(lambda: any(e.get("path") == "/users" and e.get("method") == "POST"
                                        for e in partners.AUDIT_EVENTS[before:])),
                "the sign-up never reached the audit trail")

    def place_order() -> None:
        book = store.BOOKS[5]
        reply = client.post("/orders", json={"book_id": 5, "quantity": 2}, headers=key)
        _expect(reply.status_code == 201, f"answered {reply.status_code} {reply.text[:80]}")
        order = reply.json()
        _expect(order.get("total_cents") == 2 * book["price_cents"] and order.get("user_id") == 2,
                f"the order reads {order}")
        _expect(_eventually(lambda: {"to": "grace@folio.test", "order_id": order["id"]}
                            in store.OUTBOX), "no confirmation mail was queued")
        unauthorised = client.post("/orders", json={"book_id": 5, "quantity": 1},
                                   headers={"x-api-key": "u2.guess"})
        _expect(unauthorised.status_code == 401,
                f"an order with a wrong key answered {unauthorised.status_code}, not 401")

    def one_order() -> None:
        reply = client.get("/orders/1")
        _expect(reply.json() == store.ORDERS[1], f"/orders/1 answered {reply.text[:80]}")
        missing = client.get("/orders/999999")
        _expect(missing.status_code == 404, f"/orders/999999 answered {missing.status_code}")

    def shipping() -> None:
        order = store.ORDERS[7]
        weight = store.BOOKS[order["book_id"]]["weight_g"] * order["quantity"]
        reply = client.get("/orders/7/shipping", params={"country": "BE"})
        quote = reply.json()
        wanted = {"order_id": 7, "weight_g": weight, "carrier": "Parcelwise", "country": "BE",
                  "price_cents": 395 + 60 * (weight // 250)}
        _expect(quote == wanted, f"answered {quote}, not {wanted}")

    def summary() -> None:
        reply = client.get("/reports/summary").json()
        wanted = {"orders": len(store.ORDERS),
                  "revenue_cents": sum(o["total_cents"] for o in store.ORDERS.values())}
        _expect(reply == wanted, f"answered {reply}, not {wanted}")

    def bestsellers() -> None:
        reply = client.get("/reports/bestsellers").json()
        wanted = [book_id for book_id, _ in store.SOLD.most_common(3)]
        _expect([row.get("book_id") for row in reply] == wanted,
                f"listed {[row.get('book_id') for row in reply]}, not {wanted}")

    def export() -> None:
        reply = client.get("/reports/export")
        _expect(reply.headers.get("content-type", "").startswith("application/json"),
                f"sent {reply.headers.get('content-type')}, not JSON")
        rows = reply.json()
        wanted = [store.ORDERS[i] for i in sorted(store.ORDERS)]
        _expect(len(rows) == len(wanted), f"sent {len(rows)} orders, not all {len(wanted)}")
        _expect(rows == wanted, "sent the orders with different values from the store's")

    def health() -> None:
        reply = client.get("/admin/health")
        _expect(reply.json() == {"status": "ok"}, f"answered {reply.text[:80]}")

    def stats() -> None:
        reply = client.get("/admin/stats").json()
        wanted = {"users": len(store.USERS), "books": len(store.BOOKS),
                  "orders": len(store.ORDERS), "confirmations_queued": len(store.OUTBOX),
                  "indexed_titles": len(partners.INDEXED_TITLES)}
        _expect(reply == wanted, f"answered {reply}, not {wanted}")

    def reindex() -> None:
        partners.INDEXED_TITLES.clear()
        reply = client.post("/admin/reindex")
        _expect(reply.status_code == 202, f"answered {reply.status_code}, not 202")
        titles = [book["title"] for book in store.BOOKS.values()]
        _expect(_eventually(lambda: partners.INDEXED_TITLES == titles),
                "the search engine never received the titles")

    return [
        ("GET /users", users), ("GET /users/me", me), ("GET /users/{user_id}", one_user),
        ("POST /users", sign_up), ("POST /orders", place_order),
        ("GET /orders/{order_id}", one_order), ("GET /orders/{order_id}/shipping", shipping),
        ("GET /reports/summary", summary), ("GET /reports/bestsellers", bestsellers),
        ("GET /reports/export", export), ("GET /admin/health", health),
        ("GET /admin/stats", stats), ("POST /admin/reindex", reindex),
    ]


def functional(root: str | Path, routes: Sequence[str] = ()) -> list[Outcome]:
    """Run the shop's functional tests against the app in ``root``, served for real: every
    route's, or only those of ``routes`` (``"GET /users/me"``)."""
    from helpers import serve

    app = _fresh_app(Path(root))
    shop = sys.modules[PACKAGE]
    outcomes = []
    with serve(app, name="capstone · functional") as server:
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            for route, test in _tests(client, shop):
                if routes and route not in routes:
                    continue
                try:
                    test()
                    outcomes.append(Outcome(route))
                except AssertionError as failed:
                    outcomes.append(Outcome(route, str(failed)))
                except Exception as error:  # a crash in the learner's code is a failed test
                    outcomes.append(Outcome(route, f"{type(error).__name__}: {error}"))
    return outcomes


# -- the check: doctor and functional tests, in a process of its own -----------------------------
@dataclass
class CheckResult:
    """What :func:`check` found: the functional tests' outcomes and the doctor's report."""

    outcomes: list[Outcome] = field(default_factory=list)
    doctor_text: str = ""
    doctor: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    """Why the check could not run at all (the shop does not import or start, a hang)."""

    @property
    def broken(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.passed]

    @property
    def blocking(self) -> list[str]:
        """Routes the doctor says block the loop or saturate the threadpool."""
        problem = {"blocks the loop", "saturates the threadpool", "holds the loop for good"}
        return [f"{r['method']} {r['path']}" for r in self.doctor.get("routes", [])
                if r["verdict"] in problem]

    @property
    def passed(self) -> bool:
        return not self.error and bool(self.outcomes) and not self.broken and not self.blocking \
            and self.doctor.get("exit_status") == 0

    def __str__(self) -> str:
        if self.error:
            return f"✘ the check could not run: {self.error}"
        lines = [f"functional tests: {len(self.outcomes) - len(self.broken)} of "
                 f"{len(self.outcomes)} routes behave as the shop's owners expect"]
        lines += [f"  ✘ {o.route}: {o.problem}" for o in self.broken]
        lines += ["", self.doctor_text, ""]
        if self.passed:
            lines.append("✔ Folio is fixed: no route blocks the event loop, and every route "
                         "still does its job")
        else:
            left, failing = len(self.blocking), len(self.broken)
            routes = "1 route still blocks" if left == 1 else f"{left} routes still block"
            tests = (
                "1 functional test fails" if failing == 1 else f"{failing} functional tests fail"
            )
            lines.append(f"✘ not yet: {routes} the loop, {tests}")
        return "\n".join(lines)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def check(
    root: str | Path, timeout_s: float = CHECK_TIMEOUT_S, routes: Sequence[str] = (),
) -> CheckResult:
    """Run the functional tests, then the doctor, on the shop in ``root``, in a fresh Python
    process (so every edit counts, and nothing the notebook changed does); on every route, or
    on ``routes`` alone (``"GET /users/me"``)."""
    command = [sys.executable, "-m", "helpers.capstone", str(Path(root).resolve())]
    for route in routes:
        command += ["--route", route]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(COURSE), os.environ.get("PYTHONPATH", "")) if p))
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s,
                              env=env, cwd=str(root))
    except subprocess.TimeoutExpired:
        return CheckResult(error=f"no result within {timeout_s:g} s: does a route, or the "
                                 "lifespan, wait for ever?")
    marker = done.stdout.rfind(_RESULT)
    if marker < 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        return CheckResult(error=" / ".join(said[-6:]) or f"exit status {done.returncode}")
    payload = json.loads(done.stdout[marker + len(_RESULT):])
    if payload.get("error"):
        return CheckResult(error=payload["error"])
    return CheckResult(
        [Outcome(o["route"], o["problem"]) for o in payload["functional"]],
        payload["doctor_text"], payload["doctor"],
    )


_RESULT = "CAPSTONE-RESULT"


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers.capstone",
                                     description="Check a fixed copy of the capstone's shop.")
    parser.add_argument("root", help="the folder that holds the bookshop package")
    parser.add_argument("--route", action="append", default=[], metavar="'METHOD PATH'",
                        help="check only this route (repeatable)")
    args = parser.parse_args(argv)
    routes = tuple((method, path) for method, _, path in (r.partition(" ") for r in args.route))
    from helpers.doctor._examine import Options, examine_app
    from helpers.doctor._target import TargetError
    from helpers.server import ServerStartupError

    payload: dict[str, Any]
    try:
        outcomes = functional(args.root, args.route)
        report = examine_app(_fresh_app(Path(args.root)), Options(routes=routes), target=TARGET)
        payload = {"functional": [o.__dict__ for o in outcomes], "doctor": report.to_json(),
                   "doctor_text": str(report)}
    except TargetError as error:
        payload = {"error": f"{error}\n{error.detail}".strip()}
    except ServerStartupError as error:
        payload = {"error": f"the shop did not start: {error}"}
    except Exception as error:  # the learner's code failed at import: say how
        payload = {"error": f"{type(error).__name__}: {error}"}
    print(_RESULT + json.dumps(payload), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
