"""The capstone's shop: the doctor finds its five problems (on six routes) at the right lines;
the instructor's fix passes the check; 'fixes' that break a route fail it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import capstone
from tests.lesson_doctor import loop_watch_evidence

ROOT = Path(__file__).parent.parent

# route -> (file, a piece of the line the doctor must name, the part of the app it is in)
PROBLEMS = {
    "GET /users/me": ("security.py", "hashlib.pbkdf2_hmac(", "dependency"),
    "POST /users": ("main.py", "audit_client.post(", "middleware"),
    "POST /orders": ("security.py", "hashlib.pbkdf2_hmac(", "dependency"),
    "GET /orders/{order_id}/shipping": ("orders.py", "httpx.AsyncClient(", "endpoint"),
    "GET /reports/export": ("reports.py", "async def export(", "encoding the response"),
    "POST /admin/reindex": ("admin.py", "urllib.request.urlopen(", "background task"),
}
ALSO = {
    # a second finding on routes that pass through two problems
    "POST /orders": ("main.py", "audit_client.post(", "middleware"),
    "POST /admin/reindex": ("main.py", "audit_client.post(", "middleware"),
}


def line_of(file: Path, piece: str) -> int:
    matches = [n for n, line in enumerate(file.read_text().splitlines(), 1) if piece in line]
    assert len(matches) == 1, f"{piece!r} in {file}: {matches}"
    return matches[0]


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    return capstone.working_copy(tmp_path / "work")


def fixed(shop: Path) -> Path:
    return capstone.apply_solution(shop)


def test_the_doctor_finds_each_problem_at_its_line_and_nothing_else(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "helpers.doctor", "bookshop/main.py:app", "--json", str(out)],
        cwd=ROOT / "capstone", capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert run.returncode == 1, run.stdout + run.stderr
    report = json.loads(out.read_text())
    routes = {f"{r['method']} {r['path']}": r for r in report["routes"]}
    assert len(routes) == 13
    for label, route in routes.items():
        if label not in PROBLEMS:
            assert route["verdict"] == "ok" and route["blocks"] == [], (label, route)
            continue
        assert route["verdict"] == "blocks the loop", (label, route)
        expected = {PROBLEMS[label]} | ({ALSO[label]} if label in ALSO else set())
        found = set()
        for block in route["blocks"]:
            for file, piece, part in expected:
                path = capstone.ORIGINAL / file
                if block["file"] == str(path) and block["line"] == line_of(path, piece):
                    assert block["part"] == part, (label, block)
                    found.add((file, piece, part))
        assert found == expected, (label, route["blocks"])
        assert route["counts"]["failed"] == 0, (label, route["counts"])


def test_the_instructors_fix_passes_the_check(shop: Path) -> None:
    result = capstone.check(fixed(shop))
    assert result.passed, "\n".join([str(result), *loop_watch_evidence(result.doctor)])
    assert len(result.outcomes) == 13
    assert "✔ Folio is fixed" in str(result)


def test_the_untouched_shop_fails_the_check_and_says_where(shop: Path) -> None:
    result = capstone.check(shop)
    assert not result.passed
    assert result.broken == []  # it works; it is only slow
    assert sorted(result.blocking) == sorted(PROBLEMS)
    assert "✘ not yet: 6 routes still block the loop, 0 functional tests fail" in str(result)


@pytest.mark.parametrize(
    ("file", "old", "new", "routes"),
    [
        # "fixing" the export by sending nothing
        ("reports.py", "    return await store.all_orders()", "    return []",
         ("GET /reports/export",)),
        # "fixing" the middleware by no longer auditing
        ("main.py", '        audit_client.post(f"{request.app.state.partners_url}/audit/events", '
         "json=event)", "        pass", ("POST /users",)),
        # "fixing" the reindex by never sending the titles
        ("admin.py", "    tasks.add_task(rebuild_search_index, request.app.state.partners_url)\n",
         "", ("POST /admin/reindex",)),
        # "fixing" the dependency by letting everyone in
        ("security.py", 'raise HTTPException(status_code=401, detail="unknown API key")\n    user',
         "pass\n    user", ("GET /users/me", "POST /orders")),
    ],
)
def test_a_fix_that_breaks_a_route_fails_its_functional_test(
    shop: Path, file: str, old: str, new: str, routes: tuple[str, ...]
) -> None:
    path = shop / "bookshop" / file
    source = path.read_text()
    assert old in source
    path.write_text(source.replace(old, new, 1))
    outcomes = {o.route: o for o in capstone.functional(shop)}
    assert [r for r, o in outcomes.items() if not o.passed] == list(routes), outcomes


def test_a_deleted_route_fails_and_an_unimportable_shop_says_why(shop: Path) -> None:
    path = shop / "bookshop" / "reports.py"
    path.write_text(path.read_text().replace('@router.get("/summary")', "", 1))
    outcomes = {o.route: o for o in capstone.functional(shop)}
    assert "answered" in outcomes["GET /reports/summary"].problem
    path.write_text("def broken(:\n")
    result = capstone.check(shop)
    assert not result.passed and "SyntaxError" in result.error, result.error


def test_the_working_copy_is_made_once_and_keeps_edits(tmp_path: Path) -> None:
    first = capstone.working_copy(tmp_path / "copy")
    main = first / "bookshop" / "main.py"
    main.write_text(main.read_text() + "\n# my edit\n")
    again = capstone.working_copy(tmp_path / "copy")
    assert again == first and main.read_text().endswith("# my edit\n")
    shutil.rmtree(first)
