"""Imports only go down the data's path: the task kit stays engine-free, rollout and the judge
sit under both RL and evaluation, RL and evaluation never import each other, the verl engine
never imports the reference engine's package, and launch ← stages ← dispatch ← kfp ← cli."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mini_o3

SRC = Path(mini_o3.__file__).resolve().parent.parent

CHECK = """
import sys
import mini_o3.task
ours = sorted(m for m in sys.modules if m.startswith("mini_o3.") and not m.startswith("mini_o3.task"))
heavy = sorted(m for m in ("torch", "transformers", "numpy", "pydantic") if m in sys.modules)
print(ours, heavy)
"""

#: package -> packages none of its modules may import (at module level or inside a function).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "mini_o3.rollout": ("mini_o3.rl", "mini_o3.evaluate", "mini_o3.judge", "mini_o3.stages", "mini_o3.kfp",
                        "mini_o3.cli"),
    "mini_o3.judge": ("mini_o3.rl", "mini_o3.evaluate", "mini_o3.stages", "mini_o3.kfp", "mini_o3.cli"),
    "mini_o3.rl": ("mini_o3.evaluate", "mini_o3.stages", "mini_o3.kfp", "mini_o3.cli"),
    "mini_o3.evaluate": ("mini_o3.rl", "mini_o3.stages", "mini_o3.kfp", "mini_o3.cli"),
    "mini_o3.launch": ("mini_o3.stages", "mini_o3.dispatch", "mini_o3.kfp", "mini_o3.cli"),
    "mini_o3.stages": ("mini_o3.dispatch", "mini_o3.kfp", "mini_o3.cli"),
    "mini_o3.dispatch": ("mini_o3.kfp", "mini_o3.cli"),
    "mini_o3.rl.verl": ("mini_o3.rl.local",),
    "mini_o3.rl.local": ("mini_o3.rl.verl",),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # ``from pkg import module``
    return names


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def violations(package: str, banned: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((SRC / package.replace(".", "/")).rglob("*.py")):
        for name in sorted(imported_modules(path)):
            for ban in banned:
                if within(name, ban) and not within(name, package):
                    found.append(f"{module_name(path)} imports {name}")
    return found


def test_task_kit_imports_only_pillow_and_the_stdlib():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[] []"


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_import_climbs_back_up(package):
    assert violations(package, FORBIDDEN[package]) == []


def test_the_import_scan_sees_relative_lazy_and_from_package_imports():
    run = imported_modules(SRC / "mini_o3/rl/local/run.py")
    assert {"mini_o3.rl.config", "mini_o3.rl.rewards", "mini_o3.rollout.batched_rollout"} <= run
    assert "mini_o3.rollout.hf_backend.TokenizerCounter" in run  # imported inside run_rl_local
    assert violations("mini_o3.rl.local", ("mini_o3.rollout",))  # the scan would report a banned room
    assert not violations("mini_o3.rl.local", ("mini_o3.rl.local",))  # a package may import itself


def test_both_rl_engines_and_the_evaluator_stand_on_rollout_and_the_judge():
    users = {package: set().union(*(imported_modules(p) for p in (SRC / package.replace(".", "/")).rglob("*.py")))
             for package in ("mini_o3.rl", "mini_o3.evaluate")}
    for package, names in users.items():
        assert any(within(n, "mini_o3.rollout") for n in names), package
        assert any(within(n, "mini_o3.judge") for n in names), package
