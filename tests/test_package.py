"""The helpers package exports its public names, and importing helpers.cpu stays light."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import helpers

PACKAGE_INIT = Path(helpers.__file__)


@pytest.mark.parametrize("name", helpers.__all__)
def test_every_exported_name_resolves(name):
    assert getattr(helpers, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        helpers.nope  # noqa: B018


def test_importing_cpu_does_not_import_the_web_stack():
    code = (
        "import sys, helpers.cpu; "
        "print(any(m in sys.modules for m in ('fastapi', 'uvicorn', 'matplotlib')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_functions_are_not_shadowed_by_their_modules():
    import helpers.quiz  # noqa: F401 - importing submodules must not replace the functions
    import helpers.upstream  # noqa: F401

    assert callable(helpers.load) and helpers.load.__module__ == "helpers.loadgen"
    assert callable(helpers.serve)


def test_all_is_a_literal_naming_exactly_the_lazy_names():
    # A literal list (not computed) so tools can read it; the same names as the lazy map.
    tree = ast.parse(PACKAGE_INIT.read_text())
    (value,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(getattr(target, "id", None) == "__all__" for target in node.targets)
    ]
    assert isinstance(value, ast.List) and all(isinstance(e, ast.Constant) for e in value.elts)
    assert len(helpers.__all__) == len(set(helpers.__all__)), "a name is listed twice"
    assert set(helpers.__all__) == set(helpers._WHERE)


def test_type_checkers_see_every_public_name_from_its_module():
    # The TYPE_CHECKING imports are what mypy and IDEs read; they must match the lazy map.
    tree = ast.parse(PACKAGE_INIT.read_text())
    (block,) = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    ]
    seen = {
        alias.name: node.module
        for node in ast.walk(block) if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert seen == helpers._WHERE


def test_report_has_one_public_spelling():
    from helpers import report
    from helpers.timing import report as defined

    assert report is defined and "report" in helpers.__all__


@pytest.mark.parametrize("module", ["_threads", "_frontend", "_proxy"])
def test_bottom_modules_import_nothing_from_the_package(module):
    # The shared low-level modules sit at the bottom: importing anything above them would
    # bring back the borrowing (and import cycles) they exist to end. Function-level imports count.
    tree = ast.parse((PACKAGE_INIT.parent / f"{module}.py").read_text())
    imported = [
        (node.level, node.module or "") if isinstance(node, ast.ImportFrom) else (0, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert [(level, name) for level, name in imported if level or name.startswith("helpers")] == []


def learner_facing_code() -> list[tuple[str, str]]:
    """The code learners read and copy: each notebook code cell, and the README's Python blocks."""
    root = PACKAGE_INIT.parent.parent
    code = []
    for folder in ("notebooks", "exercises", "solutions"):
        for path in sorted((root / folder).glob("*.ipynb")):
            cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
            code += [
                (f"{folder}/{path.name}", "".join(cell["source"]))
                for cell in cells
                if cell["cell_type"] == "code"
            ]
    readme = (root / "README.md").read_text(encoding="utf-8")
    code += [("README.md", block) for block in re.findall(r"```python\n(.*?)```", readme, re.S)]
    return code


def helpers_imports(source: str) -> list[tuple[str, str]]:
    """``(module, name)`` for every ``from helpers... import name`` in a cell."""
    # IPython magics and shell escapes are not Python; a cell may also show a SyntaxError on
    # purpose, and then a line-by-line look has to do.
    python = re.sub(r"^\s*[%!].*$", "", source, flags=re.M)
    try:
        tree = ast.parse(python)
    except SyntaxError:
        one_line = re.findall(r"^\s*from (helpers[\w.]*) import ([\w, ]+)$", python, re.M)
        return [(module, name.strip()) for module, names in one_line for name in names.split(",")]
    return [
        (node.module or "", alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("helpers")
        for alias in node.names
    ]


def test_public_names_are_imported_from_the_package_only():
    # One spelling per public name: `from helpers import report`, never
    # `from helpers.timing import report`, so lessons never disagree on where a name lives.
    other_spellings = [
        f"{where}: from {module} import {name} -> from helpers import {name}"
        for where, source in learner_facing_code()
        for module, name in helpers_imports(source)
        if module != "helpers" and name in helpers.__all__
    ]
    assert other_spellings == [], "\n".join(other_spellings)


def test_the_spelling_check_sees_every_form():
    cell = "%time x = 1\nfrom helpers.timing import (\n    report,\n)\nfrom helpers import serve"
    assert helpers_imports(cell) == [("helpers.timing", "report"), ("helpers", "serve")]
    broken = "from helpers.quiz import quiz_file\ndef oops(:"
    assert helpers_imports(broken) == [("helpers.quiz", "quiz_file")]
