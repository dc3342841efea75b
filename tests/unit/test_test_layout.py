"""The tests mirror the tree: an integration test lives in the folder of the area it covers
(tests/integration/<package>/...), and what tests share lives in conftest.py files and helper modules, never in a
test module another module imports from."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts)


def _imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """Every module `path` imports (at any depth, relative imports resolved): (line, dotted name)."""
    package = _module_name(path, root).split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, module))
            # `from tests.x import test_y` imports the module test_y itself.
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if alias.name.startswith("test_")]
    return found


def imports_of_test_modules(root: Path) -> list[str]:
    """`file:line: module` for each import, anywhere under root/tests, of a test module (a module named test_*)."""
    wrong = []
    for path in sorted((root / "tests").rglob("*.py")):
        for line, module in _imported_modules(path, root):
            if module.startswith("tests.") and module.rsplit(".", 1)[-1].startswith("test_"):
                wrong.append(f"{path.relative_to(root)}:{line}: {module}")
    return wrong


def integration_tests_outside_their_area(root: Path) -> list[str]:
    """Integration test modules whose folder is not tests/integration/<a package of the tree>, e.g. exchange/plans."""
    integration = root / "tests" / "integration"
    wrong = []
    for path in sorted(integration.rglob("test_*.py")):
        folder = path.parent.relative_to(integration)
        if not folder.parts or not (root / folder / "__init__.py").is_file():
            wrong.append(str(path.relative_to(root)))
    return wrong


def test_no_module_of_the_tests_imports_from_a_test_module() -> None:
    assert imports_of_test_modules(REPO) == []


def test_every_integration_test_lives_in_the_folder_of_its_area() -> None:
    assert integration_tests_outside_their_area(REPO) == []


def test_the_layout_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """The two checks above, on a small tree that breaks each rule once and keeps it once."""
    for package in ("gateway", "gateway/web"):
        (tmp_path / package).mkdir(parents=True)
        (tmp_path / package / "__init__.py").write_text("")
    files = {
        "tests/integration/test_loose.py": "",  # no area folder
        "tests/integration/helpers/test_misplaced.py": "",  # a folder, but no package of the tree
        "tests/integration/gateway/web/test_pages.py": "from tests.integration.helpers.web import act_as\n",
        "tests/integration/gateway/test_forms.py": (
            "def test_x() -> None:\n    from tests.integration.gateway.web.test_pages import act_as\n"
        ),
        "tests/integration/gateway/conftest.py": "from .web import test_pages\n",
        "tests/integration/helpers/web.py": "import tests.unit.test_settings\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)

    assert imports_of_test_modules(tmp_path) == [
        "tests/integration/gateway/conftest.py:1: tests.integration.gateway.web.test_pages",
        "tests/integration/gateway/test_forms.py:2: tests.integration.gateway.web.test_pages",
        "tests/integration/helpers/web.py:1: tests.unit.test_settings",
    ]
    assert integration_tests_outside_their_area(tmp_path) == [
        "tests/integration/helpers/test_misplaced.py",
        "tests/integration/test_loose.py",
    ]
