"""What each image installs, and the resolver that writes ``images/<runtime>/requirements.lock``.

Every image installs our package (with the extras of ``IMAGES[runtime].extras``) plus its own
top-level requirements, constrained by its lock file. A lock is resolved by pip from PyPI
(``pip install --dry-run --ignore-installed --report``: wheel metadata only, nothing is built or
installed) with ``constraints.txt`` as constraints, minus the pins the image cannot keep
(``exceptions``, each with its reason). So a lock agrees with ``constraints.txt`` on every package
both name, except the documented exceptions — ``tests/unit/test_images_pins.py`` checks it.

    .venv/bin/python images/lock.py            # re-resolve all four locks
    .venv/bin/python images/lock.py rl eval    # only these
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGES_DIR = ROOT / "images"
CONSTRAINTS = ROOT / "constraints.txt"
OUR_DISTRIBUTION = "mini-o3-pipelines"
PYTHON_VERSION = "3.11"

# vLLM and verl's GPU stack: one version in the rl and eval images.
VLLM = "vllm==0.24.0"
VERL_VLLM = "verl[vllm]==0.9.1"
# Built from source in the sft image's CUDA builder stage (sdist only on PyPI; its metadata
# needs torch at build time, so pip cannot resolve it from metadata). Same pin as verl 0.9.1's
# ``flash-attn-cu130torch211`` extra.
FLASH_ATTN = "flash-attn==2.8.3"
DEEPSPEED = "deepspeed==0.18.9"


@dataclass(frozen=True)
class ImageSpec:
    """The Python side of one image."""

    runtime: str
    extras: tuple[str, ...]
    requirements: tuple[str, ...] = ()
    #: pinned packages the image builds from source; written into the lock, not resolved
    source_pins: tuple[str, ...] = ()
    #: constraints.txt pins this image does not keep → why
    exceptions: dict[str, str] = field(default_factory=dict)

    @property
    def lock_path(self) -> Path:
        return IMAGES_DIR / self.runtime / "requirements.lock"


_VLLM_STACK = {
    "numpy": "numba (a vLLM dependency) caps numpy below the project's pin",
    "fastapi": "vLLM 0.24.0 requires fastapi<0.137 (the project's pin comes from LLaMA-Factory's gradio)",
    "starlette": "vLLM 0.24.0 requires starlette>=1.0.1",
    "cuda-bindings": "cuda-python 13.0.x (via vLLM's humming-kernels[cu13]) requires cuda-bindings~=13.0",
}

# Every image that runs a pipeline step carries the `ray` extra: a step in launch mode "ray" submits
# its stage from its own pod through Ray's JobSubmissionClient.
IMAGES: dict[str, ImageSpec] = {
    spec.runtime: spec
    for spec in (
        # Pure client work: data prep, reports, MLflow init/finish, KubeRay / Ray launchers.
        ImageSpec("base", extras=("pipelines", "ray", "tracking", "eval")),
        # LLaMA-Factory SFT in-process, DeepSpeed ZeRO and FlashAttention-2 on CUDA.
        ImageSpec(
            "sft",
            extras=("model", "sft", "ray", "tracking", "pipelines"),
            requirements=(DEEPSPEED,),
            source_pins=(FLASH_ATTN,),
        ),
        # The reference engine in-process and verl (also the RayJob head / worker image).
        # verl[vllm] pins torch, vLLM and its own transformers, so the `model` extra (which caps
        # transformers for LLaMA-Factory) is left out: verl[vllm] brings every package it names.
        ImageSpec(
            "rl",
            extras=("verl", "ray", "tracking", "eval", "pipelines"),
            requirements=(VERL_VLLM,),
            exceptions={
                "transformers": "verl[vllm]==0.9.1 pins transformers==5.9.0 (the project pins 5.5.4 for LLaMA-Factory)",
                "tensordict": "verl's TransferQueue requires tensordict>=0.10",
                "packaging": "tensordict 0.10's pyvers requires packaging<26",
                "virtualenv": "the project's virtualenv pin requires packaging>=26.3",
                **_VLLM_STACK,
            },
        ),
        # vLLM evaluation (the Avg@k harness starts `vllm serve` itself).
        ImageSpec(
            "eval",
            extras=("model", "eval", "ray", "tracking", "pipelines"),
            requirements=(VLLM,),
            exceptions=dict(_VLLM_STACK),
        ),
    )
}


def normalize(name: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``{normalized name: version}`` of the ``name==version`` lines of a requirements file."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._\-]*)(?:\[[^\]]*\])?==([^\s;]+)", line)
        if not match:
            raise ValueError(f"{path}:{number}: expected 'name==version', got {raw!r}")
        pins[normalize(match.group(1))] = match.group(2)
    return pins


def _pip_env() -> dict[str, str]:
    """The environment without local indexes or find-links: locks come from PyPI alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def resolve(spec: ImageSpec) -> dict[str, str]:
    """Resolve ``spec`` with pip against PyPI: ``{name: version}`` of everything it would install."""
    exceptions = {normalize(name) for name in spec.exceptions}
    constraints = {n: v for n, v in read_pins(CONSTRAINTS).items() if n not in exceptions}
    with tempfile.TemporaryDirectory() as tmp:
        constraints_file = Path(tmp) / "constraints.txt"
        constraints_file.write_text("".join(f"{n}=={v}\n" for n, v in sorted(constraints.items())))
        report = Path(tmp) / "report.json"
        command = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
            "--index-url", "https://pypi.org/simple",
            "--report", str(report), "-c", str(constraints_file),
            *spec.requirements, f"{ROOT}[{','.join(spec.extras)}]",
        ]  # fmt: skip
        print(f"[{spec.runtime}] resolving {' '.join(spec.requirements) or '(no extra requirements)'} "
              f"+ {OUR_DISTRIBUTION}[{','.join(spec.extras)}] ...", flush=True)  # fmt: skip
        done = subprocess.run(command, env=_pip_env(), check=False, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(
                f"[{spec.runtime}] pip could not resolve the image's requirements with constraints.txt "
                f"(minus {sorted(exceptions) or 'no exceptions'}); if a pin must differ, add it to "
                f"IMAGES[{spec.runtime!r}].exceptions with the reason:\n{(done.stdout + done.stderr)[-4000:]}"
            )
        installs = json.loads(report.read_text())["install"]
    return {
        normalize(item["metadata"]["name"]): item["metadata"]["version"]
        for item in installs
        if normalize(item["metadata"]["name"]) != OUR_DISTRIBUTION
    }


def render_lock(spec: ImageSpec, pins: dict[str, str]) -> str:
    """The lock file text: a header that says where the pins come from, then sorted pins."""
    source = {normalize(p.split("==")[0]): p.split("==")[1] for p in spec.source_pins}
    ours = f"{OUR_DISTRIBUTION}[{','.join(spec.extras)}]"
    lines = [
        f"# mini-o3-{spec.runtime} image: every Python package it installs, pinned.",
        f"# Generated by `.venv/bin/python images/lock.py` (pip resolution from PyPI metadata) for Python {PYTHON_VERSION}, linux x86_64.",
        f"# Resolved: {' '.join((*spec.requirements, ours))}",
        "# with constraints.txt as constraints, so shared pins agree with it" + (", except:" if spec.exceptions else "."),
        *(f"#   {name}: {why}" for name, why in spec.exceptions.items()),
    ]
    if source:
        lines.append("# Built from source in the image (not resolvable from metadata): " + ", ".join(spec.source_pins))
    lines += [f"{name}=={version}" for name, version in sorted({**pins, **source}.items())]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runtimes", nargs="*", metavar="RUNTIME", help=f"images to re-lock: {', '.join(IMAGES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.runtimes) - set(IMAGES))
    if unknown:
        parser.error(f"unknown image runtime(s) {', '.join(unknown)}; expected {', '.join(IMAGES)}")
    if sys.version_info[:2] != tuple(int(p) for p in PYTHON_VERSION.split(".")):
        parser.error(f"resolve with Python {PYTHON_VERSION} (the images' Python), not {sys.version.split()[0]}")
    for runtime in args.runtimes or list(IMAGES):
        spec = IMAGES[runtime]
        pins = resolve(spec)
        spec.lock_path.parent.mkdir(parents=True, exist_ok=True)
        spec.lock_path.write_text(render_lock(spec, pins))
        print(f"[{runtime}] wrote {spec.lock_path.relative_to(ROOT)} ({len(pins) + len(spec.source_pins)} pins)")


if __name__ == "__main__":
    main()
