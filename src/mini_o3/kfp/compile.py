"""Compile the pipelines and components into committed YAML: ``pipelines/{train,evaluate}.yaml``
and ``components/<component>.yaml``.

Output is byte-stable across runs and machines: component bodies are embedded from source, the
compiler sorts keys, and image references come from ``mini_o3.images`` (defaults unless
``MINI_O3_IMAGE_REGISTRY`` / ``MINI_O3_IMAGE_TAG`` are set: the committed files use the
defaults). ``stale_files`` recompiles into a temporary folder and names every file that differs.
"""

from __future__ import annotations

import filecmp
import tempfile
from pathlib import Path

PIPELINE_FILES = {"train": "pipelines/train.yaml", "evaluate": "pipelines/evaluate.yaml"}
COMPONENTS_DIR = "components"


def compile_all(out_dir: Path | str = ".") -> list[Path]:
    """Write every pipeline and component package under ``out_dir``; returns the files written."""
    from kfp import compiler

    from .components import build
    from .pipelines import build_evaluate, build_train

    out = Path(out_dir)
    components = build()
    written: list[Path] = []
    for key, pipeline in (("train", build_train(components)), ("evaluate", build_evaluate(components))):
        path = out / PIPELINE_FILES[key]
        path.parent.mkdir(parents=True, exist_ok=True)
        compiler.Compiler().compile(pipeline, str(path))
        written.append(path)
    (out / COMPONENTS_DIR).mkdir(parents=True, exist_ok=True)
    for name, component in components.items():
        path = out / COMPONENTS_DIR / f"{name.replace('_', '-')}.yaml"
        compiler.Compiler().compile(component, str(path))
        written.append(path)
    return written


def expected_files() -> list[str]:
    """Repository-relative paths ``compile_all`` writes."""
    from .components import RUNTIMES

    return [*PIPELINE_FILES.values(), *(f"{COMPONENTS_DIR}/{f.__name__.replace('_', '-')}.yaml" for f in RUNTIMES)]


def stale_files(out_dir: Path | str = ".") -> list[str]:
    """Compiled files under ``out_dir`` that are missing or differ from a fresh compile."""
    out = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="mini-o3-compile-") as tmp:
        compile_all(tmp)
        stale = []
        for rel in expected_files():
            fresh, committed = Path(tmp) / rel, out / rel
            if not committed.is_file() or not filecmp.cmp(fresh, committed, shallow=False):
                stale.append(rel)
        known = set(expected_files())
        stale += sorted(str(p.relative_to(out)) for p in (out / COMPONENTS_DIR).glob("*.yaml")
                        if str(p.relative_to(out)) not in known)
    return stale
