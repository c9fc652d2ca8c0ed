"""The course as static HTML: the lessons executed once, rendered with nbconvert, linked as a site.

For readers without a kernel (an instructor deciding what to assign, a learner on a phone). Each
lesson runs top to bottom in a fresh kernel, so the pages show measured numbers and pictures;
quizzes keep their static form (questions, then answers folded away), interactive widgets are
named instead of shown, links between notebooks point at the pages, and nothing loads from the
network. ``check_site`` fails a build with a broken internal link or a missing picture.

    python3 course.py html [--out DIR]        # or: python -m helpers.html_edition
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat

from .environment import usable_cores

__all__ = ["Edition", "build", "check_site", "main"]

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_CELL_TIMEOUT_S = 120
# how ipywidgets print a widget: VBox(children=(...)), IntSlider(value=3), Button(description=...)
_WIDGET_REPR = re.compile(r"^[A-Z][A-Za-z]*\((\)$|(children|value|description|layout)=)")
_NOTEBOOK_LINK = re.compile(r'href="(?![a-z][a-z0-9+.-]*:|//|#)([^"#]*?)\.ipynb(#[^"]*)?"')

# The lab look, without the scripts it would fetch from a CDN: require.js, MathJax, Mermaid and
# the widget renderer (the lessons use none of them in their pages).
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


@dataclass
class Edition:
    """What a build wrote: its pages, the seconds each lesson took to run, and any problems."""

    out: Path
    pages: list[Path] = field(default_factory=list)
    run_seconds: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def _lessons(course: Path) -> list[Path]:
    return sorted((course / "notebooks").glob("*.ipynb"))


def _exercises(course: Path) -> list[Path]:
    return sorted((course / "exercises").glob("*/*.ipynb"))


def _execute(notebook: nbformat.NotebookNode, folder: Path) -> None:
    from nbclient import NotebookClient

    client = NotebookClient(
        notebook,
        timeout=_CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
        store_widget_state=False,  # the pages carry no widget state: nothing to render it
    )
    # the kernel's own log lines (ipykernel warns that it talks TCP without encryption, on
    # loopback) would reach the builder's terminal; the notebook's outputs carry any error
    client.execute(stderr=subprocess.DEVNULL)


def _without_widgets(notebook: nbformat.NotebookNode) -> None:
    """Keep each widget's static fallback (a quiz's HTML); name a widget that has none."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if _WIDGET_VIEW not in data:
                continue
            del data[_WIDGET_VIEW]
            # a widget's own repr ("VBox(children=...)") says nothing to a reader; a progress
            # bar's text ("100%|██████| 10/10") does
            plain = "".join(data.get("text/plain", ""))
            if not set(data) - {"text/plain"} and (not plain or _WIDGET_REPR.match(plain)):
                data.clear()
                data["text/html"] = (
                    "<p><em>An interactive widget appears here when you run this notebook in "
                    "JupyterLab.</em></p>"
                )


def _edition_note(when: str) -> nbformat.NotebookNode:
    python = platform.python_version()
    cores = usable_cores()
    cell: nbformat.NotebookNode = nbformat.v4.new_markdown_cell(
        f"*Static edition: this page was executed on {when} on a {cores}-core machine with "
        f"Python {python}. Every number below was measured then; yours will differ a little. "
        "Open the notebook in JupyterLab to measure them on your machine.*"
    )
    return cell


def _render(notebook: nbformat.NotebookNode, title: str) -> str:
    import jinja2
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[jinja2.DictLoader({"course_edition.html.j2": _TEMPLATE})],
        template_file="course_edition.html.j2",
        embed_images=True,
    )
    notebook.metadata["title"] = title
    body, _resources = exporter.from_notebook_node(notebook)
    # a link to a notebook of the course becomes a link to its page
    return _NOTEBOOK_LINK.sub(lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', body)


def _title(notebook: nbformat.NotebookNode, fallback: str) -> str:
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            found = re.search(r"^# (.+)$", cell.source, re.M)
            if found:
                return found.group(1).strip()
    return fallback


def _landing_page() -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="refresh" content="0; url=notebooks/index.html">'
        "<title>Concurrency in FastAPI</title></head><body>"
        '<p><a href="notebooks/index.html">Concurrency in FastAPI: the course</a></p>'
        "</body></html>\n"
    )


def build(
    course: Path,
    out: Path,
    *,
    on_progress: Callable[[str], None] | None = None,
) -> Edition:
    """Execute the lessons of ``course`` and write the site to ``out`` (replaced if present)."""
    course, out = course.resolve(), out.resolve()
    if out == course or course.is_relative_to(out):
        raise ValueError(f"--out {out} would replace the course itself; choose another folder")
    staging = out.with_name(out.name + ".building")
    shutil.rmtree(staging, ignore_errors=True)
    edition = Edition(out=out)
    when = datetime.datetime.now().strftime("%Y-%m-%d")
    jobs = [(p, True) for p in _lessons(course)] + [(p, False) for p in _exercises(course)]
    try:
        for number, (source, runs) in enumerate(jobs, start=1):
            relative = source.relative_to(course)
            if on_progress:
                on_progress(f"[{number}/{len(jobs)}] {relative}")
            notebook = nbformat.read(source, as_version=4)
            if runs and any(c.cell_type == "code" for c in notebook.cells):
                began = time.monotonic()
                _execute(notebook, source.parent)
                edition.run_seconds[relative.as_posix()] = round(time.monotonic() - began, 1)
                notebook.cells.insert(1, _edition_note(when))
            _without_widgets(notebook)
            page = staging / relative.with_suffix(".html")
            page.parent.mkdir(parents=True, exist_ok=True)
            page.write_text(_render(notebook, _title(notebook, source.stem)), encoding="utf-8")
            edition.pages.append(out / relative.with_suffix(".html"))
        (staging / "index.html").write_text(_landing_page(), encoding="utf-8")
        edition.pages.insert(0, out / "index.html")
        edition.problems = check_site(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # the last good build stays as it was
        raise
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return edition


class _Page(HTMLParser):
    """The ids a page defines and the links and resources it uses."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.images: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        for key in ("id", "name"):
            if values.get(key):
                self.ids.add(values[key])
        if tag == "a" and "href" in values:
            self.links.append(values["href"])
        elif tag == "img":
            self.images.append(values.get("src", ""))
        if tag in ("script", "img", "iframe") and re.match(r"(https?:)?//", values.get("src", "")):
            self.external.append(values["src"])
        if tag == "link" and re.match(r"(https?:)?//", values.get("href", "")):
            self.external.append(values["href"])


def check_site(root: Path) -> list[str]:
    """Every broken internal link (a missing page or anchor), missing or empty picture, and
    resource fetched from the network, as ``page: what`` lines; empty when the site is sound."""
    pages: dict[Path, _Page] = {}
    for path in sorted(root.rglob("*.html")):
        parsed = _Page()
        parsed.feed(path.read_text(encoding="utf-8"))
        pages[path.resolve()] = parsed
    problems = []
    for path, page in pages.items():
        name = path.relative_to(root.resolve()).as_posix()
        for source in page.external:
            problems.append(f"{name}: loads {source} from the network")
        for source in page.images:
            if source.startswith("data:"):
                if len(source) < 100:
                    problems.append(f"{name}: an empty picture ({source[:40]})")
            elif not source or urlsplit(source).scheme or source.startswith("//"):
                problems.append(f"{name}: a picture that is not part of the edition: {source!r}")
            elif not (path.parent / unquote(source)).is_file():
                problems.append(f"{name}: a missing picture: {source}")
        for href in page.links:
            parts = urlsplit(href)
            if parts.scheme or href.startswith("//"):
                continue  # the web (documentation sites); the edition does not vouch for them
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                problems.append(f"{name}: a broken link: {href}")
            elif parts.fragment and target in pages and not (
                # as a browser looks: the fragment as written, then percent-decoded (nbconvert
                # writes its heading ids percent-encoded: id="00-%C2%B7-Start-here")
                {parts.fragment, unquote(parts.fragment)} & pages[target].ids
            ):
                problems.append(f"{name}: a link to a missing anchor: {href}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 course.py html",
        description="Execute the lessons and write the course as a static HTML site.",
    )
    default_course = Path(__file__).resolve().parent.parent
    parser.add_argument("--course", type=Path, default=default_course, help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write the site (default: COURSE/html)"
    )
    args = parser.parse_args(argv)
    out = args.out or args.course / "html"
    began = time.monotonic()

    def progress(line: str) -> None:
        print(f"{line} ({time.monotonic() - began:.0f} s so far)", flush=True)

    try:
        edition = build(args.course, out, on_progress=progress)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - a lesson that fails to run: say which, stop
        print(f"error: the build stopped: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    for notebook, seconds in edition.run_seconds.items():
        print(f"  ran {notebook} in {seconds:.0f} s")
    print(f"wrote {len(edition.pages)} pages to {edition.out} in {time.monotonic() - began:.0f} s")
    print(f"open {edition.out / 'index.html'} in a browser")
    if edition.problems:
        print(f"{len(edition.problems)} problem(s) in the site:", file=sys.stderr)
        for problem in edition.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
