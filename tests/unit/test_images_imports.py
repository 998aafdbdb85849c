"""The entry points the compiled components call exist in their images: for each image, the modules
its steps import (the executors' sources, the ``mini_o3.kfp.bodies`` functions they call and the
helpers those call, the stage's library, the ``mini-o3`` CLI, KFP's executor) import in a fresh
interpreter in which every distribution outside the image's lock is hidden."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mini_o3 import images

ROOT = Path(__file__).resolve().parents[2]
BODIES = ROOT / "src" / "mini_o3" / "kfp" / "bodies.py"
#: the library each GPU image's stage runs in-process
STAGE_LIBRARIES = {
    "base": ["mini_o3.data.bench", "mini_o3.data.coldstart", "mini_o3.launch", "mini_o3.storage", "mini_o3.tracking"],
    "sft": ["mini_o3.sft"],
    "rl": ["mini_o3.rl.local", "mini_o3.rl.verl"],
    "eval": ["mini_o3.evaluate"],
}

BLOCKER = r'''
import importlib, importlib.abc, importlib.metadata, json, re, sys
allowed = set(json.loads(sys.argv[1]))
modules = json.loads(sys.argv[2])
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
owners = importlib.metadata.packages_distributions()

class HideOtherDistributions(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if "." in name or top in sys.stdlib_module_names or top == "mini_o3":
            return None
        dists = owners.get(top)
        if not dists or any(norm(d) in allowed for d in dists):
            return None
        raise ModuleNotFoundError(f"No module named {name!r} ({', '.join(dists)} is not in the image)", name=name)

sys.meta_path.insert(0, HideOtherDistributions())
failures = {}
for module in modules:
    try:
        importlib.import_module(module)
    except BaseException as error:  # noqa: BLE001 - report everything
        failures[module] = f"{type(error).__name__}: {error}"
print(json.dumps(failures))
'''


def _lock():
    spec = importlib.util.spec_from_file_location("mini_o3_images_lock_imports", ROOT / "images" / "lock.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # the parent is a module, not a package
        return False


def _our_imports(tree: ast.AST) -> set[str]:
    """mini_o3 modules ``tree`` imports (``from mini_o3.x import y`` names y when it is a submodule)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mini_o3":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _is_module(sub) else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "mini_o3"}
    return found


def _bodies_imports() -> dict[str, tuple[set[str], set[str]]]:
    """function name → (mini_o3 modules it imports, module-level functions of bodies.py it calls)."""
    tree = ast.parse(BODIES.read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    table = {}
    for name, node in functions.items():
        modules = _our_imports(node)
        calls = {n.func.id for n in ast.walk(node) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in functions}
        table[name] = (modules, calls)
    return table


def modules_per_runtime() -> dict[str, set[str]]:
    """Every module a runtime's executors need, from the compiled files."""
    table = _bodies_imports()
    needed: dict[str, set[str]] = {}
    for path in sorted((ROOT / "pipelines").glob("*.yaml")) + sorted((ROOT / "components").glob("*.yaml")):
        spec = next(iter(yaml.safe_load_all(path.read_text())))
        for executor in spec.get("deploymentSpec", {}).get("executors", {}).values():
            container = executor.get("container")
            if not container:
                continue
            runtime = images.parse_image_ref(container["image"])["runtime"]
            source = ast.parse(container["command"][-1])
            mods = needed.setdefault(runtime, {"kfp.dsl.executor_main", "mini_o3.cli"})
            mods |= _our_imports(source)
            todo = set(re.findall(r"\bbodies\.(\w+)\(", container["command"][-1]))
            seen: set[str] = set()
            while todo:
                name = todo.pop()
                if name in seen or name not in table:
                    continue
                seen.add(name)
                imported, calls = table[name]
                mods |= imported
                todo |= calls
    for runtime, libraries in STAGE_LIBRARIES.items():
        if runtime in needed:
            needed[runtime] |= {m for m in libraries if _is_module(m)}
    return needed


@pytest.mark.slow
def test_every_image_runs_some_step():
    assert set(modules_per_runtime()) == set(images.RUNTIMES)


@pytest.mark.slow
@pytest.mark.parametrize("runtime", images.RUNTIMES)
def test_step_modules_import_with_only_the_images_distributions(runtime):
    lock = _lock()
    allowed = set(lock.read_pins(lock.IMAGES[runtime].lock_path)) | {"mini-o3-pipelines"}
    modules = sorted(modules_per_runtime()[runtime])
    assert "mini_o3.kfp.bodies" in modules
    done = subprocess.run([sys.executable, "-c", BLOCKER, json.dumps(sorted(allowed)), json.dumps(modules)],
                          check=False, capture_output=True, text=True, timeout=300, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert not failures, f"mini-o3-{runtime}: modules its steps need do not import with its packages: {failures}"


def test_the_blocker_hides_a_distribution_outside_the_image():
    """The check can fail: torch is not in the base image, so importing it there must fail."""
    lock = _lock()
    allowed = sorted(set(lock.read_pins(lock.IMAGES["base"].lock_path)) | {"mini-o3-pipelines"})
    done = subprocess.run([sys.executable, "-c", BLOCKER, json.dumps(allowed), json.dumps(["torch", "yaml"])],
                          check=False, capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    failures = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(failures) == {"torch"} and "not in the image" in failures["torch"]
