"""Execute every notebook headless, one after another, and print its wall time and slowest cell.

    .venv/bin/python benchmarks/notebooks.py            # all notebooks
    .venv/bin/python benchmarks/notebooks.py 01 02      # only those whose names start so

The issue budget for lessons 01–04: under 90 s together, no cell over 15 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.notebook_runner import NOTEBOOKS, execute  # noqa: E402


def main(prefixes: list[str]) -> None:
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    if prefixes:
        names = [n for n in names if any(n.startswith(p) for p in prefixes)]
    total = 0.0
    print(f"{'notebook':<32}{'wall s':>8}{'slowest cell s':>16}")
    for name in names:
        executed = execute(name)
        slowest = max((s for _, s in executed.cell_seconds), default=0.0)
        total += executed.wall_s
        print(f"{name:<32}{executed.wall_s:>8.1f}{slowest:>16.1f}", flush=True)
    print(f"{'total':<32}{total:>8.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
