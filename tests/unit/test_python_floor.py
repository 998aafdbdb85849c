"""One Python floor: ``requires-python`` in pyproject.toml is the version the images run, and no
file uses syntax or a standard-library name newer than it (``typing.Self`` needs 3.11)."""

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for d in ("src", "tests", "benchmarks", "tools", "images") for p in (ROOT / d).rglob("*.py"))

#: Standard-library names (module, or module.attribute) and the Python version that added them.
ADDED_IN: dict[str, tuple[int, int]] = {
    "tomllib": (3, 11), "wsgiref.types": (3, 11),
    "typing.Self": (3, 11), "typing.LiteralString": (3, 11), "typing.Never": (3, 11), "typing.assert_never": (3, 11),
    "typing.assert_type": (3, 11), "typing.reveal_type": (3, 11), "typing.Required": (3, 11),
    "typing.NotRequired": (3, 11), "typing.TypeVarTuple": (3, 11), "typing.Unpack": (3, 11),
    "typing.dataclass_transform": (3, 11), "enum.StrEnum": (3, 11), "asyncio.TaskGroup": (3, 11),
    "asyncio.timeout": (3, 11), "datetime.UTC": (3, 11), "contextlib.chdir": (3, 11),
    "typing.override": (3, 12), "typing.TypeAliasType": (3, 12), "itertools.batched": (3, 12),
    "typing.ReadOnly": (3, 13), "typing.TypeIs": (3, 13), "warnings.deprecated": (3, 13),
    "copy.replace": (3, 13),
}


def floor() -> tuple[int, int]:
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    match = re.fullmatch(r">=\s*3\.(\d+)", spec.strip())
    assert match, f"requires-python {spec!r}: expected '>=3.N'"
    return 3, int(match.group(1))


def used_names(tree: ast.AST) -> set[str]:
    """``module`` and ``module.name`` for every import, and ``module.attr`` for attribute access on
    an imported module (``import typing; typing.Self``)."""
    names: set[str] = set()
    modules: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.name)
                modules[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            names.add(f"{modules[node.value.id]}.{node.attr}")
    return names


def image_pythons() -> dict[str, tuple[int, int]]:
    """The Python (major, minor) each Dockerfile installs, and the one images/lock.py resolves for."""
    found = {}
    for dockerfile in sorted((ROOT / "images").glob("*/Dockerfile")):
        text = dockerfile.read_text()
        match = re.search(r"^ARG PYTHON_VERSION=3\.(\d+)", text, re.M) or \
            re.search(r"^ARG PYTHON_IMAGE=python:3\.(\d+)", text, re.M)
        assert match, f"{dockerfile}: no ARG PYTHON_VERSION / PYTHON_IMAGE"
        found[str(dockerfile.relative_to(ROOT))] = (3, int(match.group(1)))
    lock = re.search(r'^PYTHON_VERSION = "3\.(\d+)"', (ROOT / "images" / "lock.py").read_text(), re.M)
    assert lock, "images/lock.py: no PYTHON_VERSION"
    found["images/lock.py"] = (3, int(lock.group(1)))
    return found


def test_the_floor_is_the_python_the_images_run():
    pythons = image_pythons()
    assert len(pythons) >= 5  # four Dockerfiles and the lock script
    assert {where: v for where, v in pythons.items() if v != floor()} == {}, f"requires-python says {floor()}"
    assert sys.version_info[:2] >= floor()


def newer_than(version: tuple[int, int], path: Path) -> list[str]:
    """What in ``path`` needs a Python newer than ``version``: its syntax, or names from ``ADDED_IN``."""
    try:
        tree = ast.parse(path.read_text(), str(path), feature_version=version)
    except SyntaxError as exc:
        return [f"syntax (line {exc.lineno}: {exc.msg})"]
    return sorted(f"{name} ({'.'.join(map(str, ADDED_IN[name]))})" for name in used_names(tree)
                  if ADDED_IN.get(name, (0, 0)) > version)


@pytest.mark.slow
def test_no_file_needs_a_newer_python_than_the_floor():
    assert len(SOURCES) > 100
    found = {str(p.relative_to(ROOT)): n for p in SOURCES if (n := newer_than(floor(), p))}
    assert found == {}, f"requires-python >={'.'.join(map(str, floor()))}, but"


def test_the_check_sees_newer_names_and_syntax(tmp_path):
    names = tmp_path / "names.py"
    names.write_text("import typing\nfrom typing import Any, Self\nx: typing.override\n")
    assert newer_than((3, 10), names) == ["typing.Self (3.11)", "typing.override (3.12)"]
    assert newer_than((3, 12), names) == []
    syntax = tmp_path / "syntax.py"
    syntax.write_text("try:\n    pass\nexcept* ValueError:\n    pass\n")  # exception groups: Python 3.11
    assert newer_than((3, 10), syntax)[0].startswith("syntax (line 4: Exception groups")
    assert newer_than((3, 11), syntax) == []
