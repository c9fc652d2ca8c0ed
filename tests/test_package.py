"""The helpers package exports its public names, and importing helpers.cpu stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import helpers


@pytest.mark.parametrize("name", helpers.__all__)
def test_every_exported_name_resolves(name):
    assert getattr(helpers, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        helpers.nope  # noqa: B018


def test_importing_cpu_does_not_import_the_web_stack():
    code = "import sys, helpers.cpu; print(any(m in sys.modules for m in ('fastapi', 'uvicorn', 'matplotlib')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_functions_are_not_shadowed_by_their_modules():
    import helpers.quiz  # noqa: F401 - importing submodules must not replace the functions
    import helpers.upstream  # noqa: F401

    assert callable(helpers.load) and helpers.load.__module__ == "helpers.loadgen"
    assert callable(helpers.serve)
