"""The docs stay true to the tree: the configuration page is generated, and every path a doc names exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway import settings_doc

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "deploy" / "README.md"]
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_LINK = re.compile(r"\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE = re.compile(r"`([^`\n]+)`")
# A backticked name is taken for a repository path when it starts with a top-level folder or names a top-level file.
_TOP = r"(?:audit|tenants|exchange|gateway|tests|docs|deploy|\.ci)"
_REPO_PATH = re.compile(rf"^(?:\./)?{_TOP}/[\w.\-/]*$|^(?:Makefile|pyproject\.toml|README\.md)$")
_EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#)", re.IGNORECASE)
# A page named in prose ("see DESIGN.md") must be one of the repository's too, beside the page or at the top.
_PAGE_NAME = re.compile(r"(?<![\w/.\-])([A-Za-z][\w\-]*\.md)\b")
# A module named alone (`policy.py`) must still exist somewhere in the tree.
_MODULE_NAME = re.compile(r"^[\w\-]+\.py$")
_NOT_SOURCE = {".venv", ".git", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def _modules() -> dict[str, Path]:
    """Module file name -> one place it lives."""
    found: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        if not _NOT_SOURCE.intersection(path.relative_to(ROOT).parts):
            found.setdefault(path.name, path)
    return found


def test_configuration_page_is_what_the_settings_generate() -> None:
    page = ROOT / settings_doc.PAGE
    assert page.read_text(encoding="utf-8") == settings_doc.render(), (
        "docs/configuration.md differs from the settings dataclasses in gateway/settings.py; "
        "run `make docs` and commit the page"
    )


@pytest.mark.parametrize(("page", "most_bytes"), [("README.md", 10_000), ("docs/architecture.md", 15_000)])
def test_the_entry_pages_stay_short_enough_to_read(page: str, most_bytes: int) -> None:
    """The README and the architecture map point to the focused pages; they do not grow back into manuals."""
    assert len((ROOT / page).read_bytes()) <= most_bytes


def test_settings_docs_leave_defaults_to_the_code() -> None:
    """Each default is written once, in the call that reads the variable; a field doc that restates it drifts."""
    restated = [
        f"{v.name}: {v.doc}"
        for concern in settings_doc.concerns()
        for v in concern.variables
        if re.search(r"\(default\b|\bdefault [0-9\"'.]", v.doc)
    ]
    assert restated == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_only_the_configuration_page_gives_a_settings_default(page: Path) -> None:
    """A default written beside a variable elsewhere drifts when the code changes; configuration.md is generated."""
    if page == ROOT / settings_doc.PAGE:
        return
    text = page.read_text(encoding="utf-8").replace("\n", " ")
    restated = [m.group(0) for m in re.finditer(r"`CASEBRIDGE_[A-Z_]+`[^.;`]{0,30}\bdefault\b", text)]
    assert restated == [], "say what the variable does and link to configuration.md for its default"


def _prose(text: str) -> str:
    return _FENCE.sub("", text)


def _targets(page: Path) -> list[tuple[str, Path]]:
    """(as written, resolved) for every link and backticked repository path of one page."""
    text = _prose(page.read_text(encoding="utf-8"))
    found = []
    for label, target in _LINK.findall(text):
        if _REPO_PATH.match(label):  # a link that reads as a path must name one, whatever it points to
            found.append((label, (ROOT / label).resolve()))
        if _EXTERNAL.match(target):
            continue
        path = target.split("#", 1)[0]
        base = ROOT if path.startswith("/") else page.parent
        found.append((target, (base / path.lstrip("/")).resolve() if path else page))
    for code in _CODE.findall(text):
        path = code.split("::", 1)[0].split(":", 1)[0]
        if _REPO_PATH.match(path):
            found.append((code, (ROOT / path).resolve()))
        elif _MODULE_NAME.match(path) and path not in _WRITTEN_BY_TUTORIAL:
            found.append((code, _somewhere(path)))
    for name in _PAGE_NAME.findall(text):
        beside = page.parent / name
        found.append((name, beside if beside.exists() else ROOT / name))
    return found


def _somewhere(name: str) -> Path:
    """Where a module named without its folder lives; a path that does not exist when no module has the name."""
    return _MODULES.get(name, ROOT / "(nowhere)" / name)


_MODULES = _modules()
# Files the reader writes while following the tutorial (`cat > get_token.py`): named in docs, never in the tree.
_WRITTEN_BY_TUTORIAL = set(re.findall(r"cat > ([\w.\-]+)", (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")))


def _anchors(page: Path) -> set[str]:
    """The heading anchors a Markdown renderer gives a page (GitHub's rule: lower case, punctuation dropped)."""
    headings = re.findall(r"^#{1,6} +(.+?) *$", _prose(page.read_text(encoding="utf-8")), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_link_to_a_page_section_finds_its_heading(page: Path) -> None:
    text = _prose(page.read_text(encoding="utf-8"))
    broken = []
    for _, target in _LINK.findall(text):
        path, sep, anchor = target.partition("#")
        if not sep or _EXTERNAL.match(path) or not (path == "" or path.endswith(".md")):
            continue
        linked = (page.parent / path).resolve() if path else page
        if linked.is_file() and anchor not in _anchors(linked):
            broken.append(target)
    assert broken == [], f"{page.relative_to(ROOT)} links to sections that are not there: {', '.join(broken)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_path_a_doc_names_is_in_the_repository(page: Path) -> None:
    missing = [written for written, path in _targets(page) if not (path.is_relative_to(ROOT) and path.exists())]
    assert missing == [], f"{page.relative_to(ROOT)} names paths not in the repository: {', '.join(missing)}"


def test_the_code_names_only_pages_of_the_repository() -> None:
    """A docstring or comment that sends the reader to a page ("docs/api.md", "see DESIGN.md") sends them to one the
    repository holds: a name with a folder from the top, a bare name as a top-level page or one in docs/."""
    sources = [
        path
        for pattern in ("*.py", "*.toml", "Makefile", "*.html")
        for path in sorted(ROOT.rglob(pattern))
        if not _NOT_SOURCE.intersection(path.relative_to(ROOT).parts) and path != Path(__file__)
    ]
    missing = []
    for source in sources:
        text = source.read_text(encoding="utf-8")
        for name in re.findall(r"(?<![\w.\-])((?:[\w\-]+/)*[A-Za-z][\w\-]*\.md)\b", text):
            candidates = [ROOT / name] if "/" in name else [ROOT / name, ROOT / "docs" / name, source.parent / name]
            if not any(candidate.is_file() for candidate in candidates):
                missing.append(f"{source.relative_to(ROOT)}: {name}")
    assert missing == [], "the code names pages that are not in the repository:\n" + "\n".join(missing)
