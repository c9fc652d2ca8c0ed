"""Execute every notebook headless, one after another, and print its wall time and slowest cell.

    .venv/bin/python benchmarks/notebooks.py            # all notebooks
    .venv/bin/python benchmarks/notebooks.py 01 02      # only those whose names start so

Budgets (from the issues): no cell over 15 s; lessons 05-07 under 40 s each; lessons 01-04
under 90 s together; the whole series 00-08 under 180 s. Each line says whether it is within.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.notebook_runner import NOTEBOOKS, execute  # noqa: E402

MAX_CELL_S = 15.0
NOTEBOOK_BUDGET_S = {"05": 40.0, "06": 40.0, "07": 40.0}
SERIES_BUDGET_S = 180.0


def main(prefixes: list[str]) -> None:
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    if prefixes:
        names = [n for n in names if any(n.startswith(p) for p in prefixes)]
    total = 0.0
    print(f"{'notebook':<32}{'wall s':>8}{'slowest cell s':>16}  budget")
    for name in names:
        executed = execute(name)
        slowest = max((s for _, s in executed.cell_seconds), default=0.0)
        total += executed.wall_s
        budget = NOTEBOOK_BUDGET_S.get(name[:2])
        within = slowest <= MAX_CELL_S and (budget is None or executed.wall_s <= budget)
        verdict = ("ok" if within else "OVER") + (f" (< {budget:.0f} s)" if budget else "")
        print(f"{name:<32}{executed.wall_s:>8.1f}{slowest:>16.1f}  {verdict}", flush=True)
    series = "ok" if total <= SERIES_BUDGET_S or prefixes else "OVER"
    print(f"{'total':<32}{total:>8.1f}{'':>16}  {series} (series < {SERIES_BUDGET_S:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
