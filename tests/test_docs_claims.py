"""The README and the docs claim only results that exist, and the code cites only files we ship.

Two rules, both read from the checkout's text:

1. **Results files.** Every path of the form ``benchmarks/results/FILE.json`` written anywhere in
   ``README.md`` or ``docs/*.md`` (in backticks or not; ``FILE`` made of letters, digits, ``_``,
   ``-`` and ``.``) must exist in the repository. A results file not produced yet is described
   without its path (e.g. "a GPU run writes it; none is committed yet"); a name pattern is
   written with a placeholder in angle brackets (``benchmarks/results/<name>.json``), which is
   not a path and does not count.
2. **Cited documents.** Every ``*.md`` file named in a ``.py`` file under ``workbench/``,
   ``serving/``, ``widgets/`` or ``benchmarks/`` (docstrings and comments alike) must be a file of
   the repository: a name with a folder is looked up from the repository root (or next to the
   citing file), a bare name anywhere in the repository. A path that climbs out of the
   repository (``../``) is a citation of a file outside it, and fails. The same holds for the
   ``*.md`` files ``README.md`` and ``docs/*.md`` name.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESULTS = re.compile(r"benchmarks/results/([A-Za-z0-9_.-]+\.json)")
MARKDOWN = re.compile(r"(?<![A-Za-z0-9_./-])((?:\.{1,2}/)?[A-Za-z0-9_./-]*[A-Za-z0-9_-]\.md)\b")
CODE_DIRS = ("workbench", "serving", "widgets", "benchmarks")
#: Folders that are not the project's text (environments, caches, build output).
SKIP = {".venv", ".git", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache", "build"}


def _files(pattern: str, roots: tuple[str, ...] = (".",)) -> list[Path]:
    found = []
    for root in roots:
        for path in (REPO / root).rglob(pattern):
            if not SKIP.intersection(path.relative_to(REPO).parts):
                found.append(path)
    return sorted(found)


def _docs() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def results_named(text: str) -> list[str]:
    """The results files a text names (rule 1)."""
    return RESULTS.findall(text)


def missing_results(text: str) -> list[str]:
    return [
        name for name in results_named(text) if not (REPO / "benchmarks/results" / name).is_file()
    ]


def markdown_cited(text: str) -> list[str]:
    """The ``.md`` files a source text names (rule 2)."""
    return MARKDOWN.findall(text)


def cited_outside(source: Path, text: str, names: set[str]) -> list[str]:
    """The cited ``.md`` files of ``source`` that are not files of the repository."""
    bad = []
    for cited in markdown_cited(text):
        if cited.startswith("../") or "/../" in cited:
            bad.append(cited)
        elif "/" in cited.lstrip("./"):
            if not ((REPO / cited).is_file() or (source.parent / cited).is_file()):
                bad.append(cited)
        elif Path(cited).name not in names:
            bad.append(cited)
    return bad


def test_the_rules_catch_what_they_are_for() -> None:
    """The checks below would fail on the defects they guard against (they cannot pass idly)."""
    assert missing_results("see `benchmarks/results/gpu_energy_never_made.json`") == [
        "gpu_energy_never_made.json"
    ]
    assert missing_results("one file each: `benchmarks/results/<name>.json`") == []
    names = {p.name for p in _files("*.md")}
    here = REPO / "workbench" / "x.py"
    text = "(see compression-notes-elsewhere.md, ../shared/notes.md and docs/serving.md)"
    assert cited_outside(here, text, names) == [
        "compression-notes-elsewhere.md",
        "../shared/notes.md",
    ]
    assert cited_outside(here, "see docs/no-such-page.md", names) == ["docs/no-such-page.md"]


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_results_file_the_docs_name_exists(doc: Path) -> None:
    missing = missing_results(doc.read_text(encoding="utf-8"))
    assert not missing, (
        f"{doc.relative_to(REPO)} names results that are not in benchmarks/results/: {missing}; "
        "commit the file, or describe it without its path until a run writes it"
    )


def test_no_source_cites_a_file_outside_the_repository() -> None:
    names = {p.name for p in _files("*.md")}
    bad = {
        str(path.relative_to(REPO)): cited
        for path in _files("*.py", CODE_DIRS)
        if (cited := cited_outside(path, path.read_text(encoding="utf-8"), names))
    }
    assert not bad, (
        f"sources cite documents that are not in the repository: {bad}; state the fact in the "
        "docstring or point to a file of the repository (for example docs/compression.md)"
    )


@pytest.mark.parametrize("doc", _docs(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_doc_cites_a_file_outside_the_repository(doc: Path) -> None:
    names = {p.name for p in _files("*.md")}
    bad = cited_outside(doc, doc.read_text(encoding="utf-8"), names)
    assert not bad, f"{doc.relative_to(REPO)} cites documents not in the repository: {bad}"
