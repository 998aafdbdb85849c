"""Shared test helpers live in ``tests/fixtures/``: no test file imports a test module or a conftest
(pytest collects both by file; importing one runs its module twice and hides what is shared)."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imported_modules(tree: ast.AST) -> set[str]:
    """Every module an ``import`` / ``from ... import`` names, anywhere in the file (relative ones
    with their dots)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            names.add(base)
            if not node.module:  # from . import test_x
                names.update(base + alias.name for alias in node.names)
    return names


def imported_test_modules(path: Path) -> list[str]:
    """The test modules and conftests that ``path`` imports."""
    found = []
    for name in imported_modules(ast.parse(path.read_text(), str(path))):
        parts = name.lstrip(".").split(".")
        if (parts[0] == "tests" and parts[1:2] != ["fixtures"]) or parts[0].startswith("test_") or parts[0] == "conftest":
            found.append(name)
    return sorted(found)


def test_no_test_file_imports_another_test_module():
    files = sorted(p for p in TESTS.rglob("*.py") if "data" not in p.relative_to(TESTS).parts)
    assert len(files) > 100 and (TESTS / "fixtures" / "kube_client.py") in files
    found = {str(p.relative_to(TESTS)): names for p in files if (names := imported_test_modules(p))}
    assert found == {}, "move what they share into tests/fixtures/"


def test_the_check_sees_test_module_imports(tmp_path):
    bad = tmp_path / "test_bad.py"
    bad.write_text("from test_helm_chart import chart\nimport conftest\nfrom tests.unit import test_x\n"
                   "def f():\n    from . import test_y\n")
    assert imported_test_modules(bad) == [".test_y", "conftest", "test_helm_chart", "tests.unit"]
    good = tmp_path / "test_good.py"
    good.write_text("from fixtures.helm import chart_fixture\nfrom .kube_client import FakeKube\nimport pytest\n")
    assert imported_test_modules(good) == []
