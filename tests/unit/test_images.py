"""The container images, checked statically (no Docker engine here): every Dockerfile pins its base
images, runs as a non-root user, carries the OCI labels, installs our package with the extras of
``images/lock.py`` constrained by the image's lock; each lock agrees with ``constraints.txt`` except
its documented exceptions; the compiled pipelines reference our images with the default tag, and
each step runs in the image whose runtime fits it."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
import yaml

from mini_o3 import images

ROOT = Path(__file__).resolve().parents[2]
IMAGES_DIR = ROOT / "images"


def load_lock_module():
    """``images/lock.py`` (not a package: loaded by path)."""
    name = "mini_o3_images_lock"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, IMAGES_DIR / "lock.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Stage:
    base: str  # the FROM image, ARG defaults substituted
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, arguments)

    def args(self, keyword: str) -> list[str]:
        return [arguments for kw, arguments in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def labels(self, stage: Stage) -> dict[str, str]:
        labels: dict[str, str] = {}
        for arguments in stage.args("LABEL"):
            for key, value in re.findall(r'([\w.\-]+)="([^"]*)"', arguments):
                labels[key] = value
        return labels


def _logical_lines(text: str) -> list[str]:
    lines, current = [], ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    if current:
        lines.append(current)
    return lines


def _substitute(value: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value)


def parse_dockerfile(path: Path) -> Dockerfile:
    """Instructions per stage; ``FROM`` images resolved with the global ``ARG`` defaults."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", arguments, re.IGNORECASE)
            assert match, f"{path}: cannot read FROM {arguments!r}"
            stages.append(Stage(_substitute(match.group(1), global_args), match.group(2)))
        elif not stages and keyword == "ARG":
            name, _, default = arguments.partition("=")
            global_args[name] = default.strip('"')
        elif stages:
            stages[-1].instructions.append((keyword, arguments))
    return Dockerfile(path, global_args, stages)


LOCK = load_lock_module()
RUNTIMES = list(images.RUNTIMES)
CUDA_RUNTIME = re.compile(r"^nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu\d\d\.\d\d$")
OCI_LABELS = ("source", "version", "revision", "title")
#: which step function runs in which image (anything else: base)
STEP_RUNTIME = {"sft_request": "sft", "rl_request": "rl", "eval_request": "eval"}


def dockerfile(runtime: str) -> Dockerfile:
    return parse_dockerfile(IMAGES_DIR / runtime / "Dockerfile")


def test_every_runtime_has_a_dockerfile_and_an_image_spec():
    assert sorted(LOCK.IMAGES) == sorted(RUNTIMES)
    for runtime in RUNTIMES:
        assert (IMAGES_DIR / runtime / "Dockerfile").is_file(), runtime
        assert (IMAGES_DIR / runtime / "Dockerfile.dockerignore").is_file(), runtime


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_base_images_are_pinned_by_tag(runtime):
    parsed = dockerfile(runtime)
    stage_names = {stage.name for stage in parsed.stages if stage.name}
    for stage in parsed.stages:
        if stage.base in stage_names:
            continue
        assert "$" not in stage.base, f"{runtime}: FROM {stage.base} has an ARG without a default"
        name, _, tag = stage.base.partition("@")[0].rpartition(":")
        assert name and "/" not in tag, f"{runtime}: FROM {stage.base} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{runtime}: FROM {stage.base} is not pinned to a version"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_final_stage_runs_as_a_non_root_user(runtime):
    users = dockerfile(runtime).final.args("USER")
    assert users, f"{runtime}: the final stage sets no USER"
    user, _, group = users[-1].partition(":")
    assert user not in ("root", "0") and group not in ("root", "0"), f"{runtime}: USER {users[-1]}"
    assert user == "1000", f"{runtime}: USER {users[-1]} (the chart's securityContext runs as 1000)"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_final_stage_carries_the_oci_labels(runtime):
    parsed = dockerfile(runtime)
    labels = parsed.labels(parsed.final)
    for key in OCI_LABELS:
        assert labels.get(f"org.opencontainers.image.{key}"), f"{runtime}: label org.opencontainers.image.{key} missing"
    assert labels["org.opencontainers.image.title"] == f"mini-o3-{runtime}"
    assert labels["org.opencontainers.image.version"] == "${VERSION}"
    final_args = dict(arg.partition("=")[::2] for arg in parsed.final.args("ARG"))
    assert final_args.get("VERSION") == images.default_tag().removeprefix("v"), "VERSION default = the package version"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_runtime_base_fits_the_image(runtime):
    base = dockerfile(runtime).final.base
    if runtime == "base":
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base), base
    else:
        assert CUDA_RUNTIME.match(base), f"{runtime} is a GPU image; its final stage is {base}"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_our_package_is_installed_with_the_specs_extras_and_the_lock(runtime):
    spec = LOCK.IMAGES[runtime]
    parsed = dockerfile(runtime)
    runs = [run for stage in parsed.stages for run in stage.args("RUN")]
    installs = [run for run in runs if re.search(r'"\.\[[a-z,]+\]"', run)]
    assert len(installs) == 1, f"{runtime}: expected one install of our package, found {installs}"
    install = installs[0]
    extras = re.search(r'"\.\[([a-z,]+)\]"', install).group(1).split(",")
    assert sorted(extras) == sorted(spec.extras), f"{runtime}: Dockerfile extras {extras} != images/lock.py {spec.extras}"
    assert "-c /tmp/requirements.lock" in install, f"{runtime}: our package is not installed with the lock"
    for requirement in spec.requirements:
        # the top-level requirement is either named in the install line or pinned by the lock it installs
        assert f'"{requirement}"' in install or runtime == "sft", f"{runtime}: {requirement} not installed"
    assert "pip check" in install, f"{runtime}: the install is not verified with pip check"
    copies = [copy for stage in parsed.stages for copy in stage.args("COPY")]
    assert f"images/{runtime}/requirements.lock /tmp/requirements.lock" in copies, f"{runtime}: wrong lock copied"
    assert any(re.search(r"pip install .*-r /tmp/(requirements|deps)\.lock", run) for run in runs), runtime


def test_sft_image_builds_its_source_pins_from_the_lock():
    runs = " ".join(run for stage in dockerfile("sft").stages for run in stage.args("RUN"))
    lock = LOCK.read_pins(LOCK.IMAGES["sft"].lock_path)
    for pin in (*LOCK.IMAGES["sft"].source_pins, *LOCK.IMAGES["sft"].requirements):
        name, version = pin.split("==")
        assert lock[LOCK.normalize(name)] == version, f"the sft lock does not pin {pin}"
        assert f"grep -i '^{name}==' /tmp/requirements.lock" in runs, f"{name} is not built from the lock's pin"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_lock_agrees_with_constraints_except_documented_exceptions(runtime):
    spec = LOCK.IMAGES[runtime]
    constraints = LOCK.read_pins(LOCK.CONSTRAINTS)
    lock = LOCK.read_pins(spec.lock_path)
    exceptions = {LOCK.normalize(name) for name in spec.exceptions}
    disagreeing = {n: (constraints[n], v) for n, v in lock.items() if n in constraints and constraints[n] != v}
    undocumented = {n: pins for n, pins in disagreeing.items() if n not in exceptions}
    assert not undocumented, f"{runtime}: lock pins differ from constraints.txt without a documented reason: {undocumented}"
    stale = sorted(exceptions - set(disagreeing))
    assert not stale, f"{runtime}: exceptions {stale} no longer differ from constraints.txt: drop them"
    for name, reason in spec.exceptions.items():
        assert len(reason) > 15, f"{runtime}: exception {name} needs a reason"
    header = spec.lock_path.read_text()
    for name in spec.exceptions:
        assert f"#   {name}: " in header, f"{runtime}: the lock header does not document {name}"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_lock_pins_the_gpu_stack_consistently(runtime):
    lock = LOCK.read_pins(LOCK.IMAGES[runtime].lock_path)
    assert OUR_DISTRIBUTION not in lock
    if runtime in ("rl", "eval"):
        assert lock["vllm"] == LOCK.VLLM.split("==")[1]
    if runtime in ("sft", "rl", "eval"):
        assert lock["torch"] == LOCK.read_pins(LOCK.CONSTRAINTS)["torch"], "one torch across the images"
    if runtime == "rl":
        assert lock["verl"] == "0.9.1"


def test_rl_and_eval_share_the_vllm_stack():
    rl, ev = (LOCK.read_pins(LOCK.IMAGES[r].lock_path) for r in ("rl", "eval"))
    for name in ("vllm", "torch", "flashinfer-python", "xgrammar", "triton"):
        assert rl.get(name) == ev.get(name), f"{name}: rl {rl.get(name)} vs eval {ev.get(name)}"


def test_read_pins_rejects_a_malformed_line(tmp_path):
    bad = tmp_path / "requirements.lock"
    bad.write_text("torch==2.11.0\nvllm>=0.20\n")
    with pytest.raises(ValueError, match=r"requirements.lock:2: expected 'name==version'"):
        LOCK.read_pins(bad)


OUR_DISTRIBUTION = "mini-o3-pipelines"


# ---- compiled pipelines and components -----------------------------------------------------------


def compiled_files() -> list[Path]:
    return sorted((ROOT / "pipelines").glob("*.yaml")) + sorted((ROOT / "components").glob("*.yaml"))


def executors() -> list[tuple[str, str, dict]]:
    """(file, executor name, container) of every compiled file."""
    found = []
    for path in compiled_files():
        spec = next(iter(yaml.safe_load_all(path.read_text())))
        for name, executor in spec.get("deploymentSpec", {}).get("executors", {}).items():
            if "container" in executor:
                found.append((path.relative_to(ROOT).as_posix(), name, executor["container"]))
    return found


def step_calls(container: dict) -> set[str]:
    """The ``mini_o3.kfp.bodies`` functions an executor's embedded source calls."""
    source = container["command"][-1]
    return set(re.findall(r"\bbodies\.(\w+)\(", source))


@pytest.mark.slow
def test_compiled_files_exist():
    names = {p.relative_to(ROOT).as_posix() for p in compiled_files()}
    assert {"pipelines/train.yaml", "pipelines/evaluate.yaml"} <= names
    assert executors(), "no executors in the compiled files"


@pytest.mark.parametrize("file,name,container", executors(), ids=lambda v: v if isinstance(v, str) else "")
def test_compiled_images_follow_the_tag_scheme_and_fit_the_step(file, name, container):
    ref = container["image"]
    parts = images.parse_image_ref(ref)  # raises for anything outside the scheme
    assert images.IMAGE_PATTERN.match(ref)
    assert parts["registry"] == images.DEFAULT_REGISTRY and parts["tag"] == images.default_tag(), (
        f"{file} {name}: {ref} is not the default reference (recompile with `mini-o3 compile`)")
    calls = step_calls(container)
    wanted = {STEP_RUNTIME[c] for c in calls if c in STEP_RUNTIME} or {"base"}
    assert len(wanted) == 1, f"{file} {name} calls steps for several runtimes: {calls}"
    assert parts["runtime"] == wanted.pop(), f"{file} {name} calls {sorted(calls)} but runs in {ref}"
    if container.get("resources", {}).get("accelerator"):
        assert parts["runtime"] != "base", f"{file} {name} asks for GPUs in the base image"


@pytest.mark.parametrize("file,name,container", executors(), ids=lambda v: v if isinstance(v, str) else "")
def test_compiled_sources_import_only_our_installed_package(file, name, container):
    source = container["command"][-1]
    tree = ast.parse(source)
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    ours = {m for m in modules if m.split(".")[0] == "mini_o3"}
    assert ours, f"{file} {name}: the component does not call our package"
    for module in ours:
        assert importlib.util.find_spec(module) is not None, f"{file} {name}: {module} does not exist"
    assert "pip install" not in " ".join(container["command"]), f"{file} {name} installs packages at run time"


def test_base_image_ships_the_compiled_pipelines_for_upload():
    """The chart's post-install Job runs `mini-o3 upload` / `schedule` in the base image, which has
    no checkout: the image must carry pipelines/ where MINI_O3_PIPELINES_DIR points."""
    final = dockerfile("base").final
    env = " ".join(final.args("ENV"))
    match = re.search(r"MINI_O3_PIPELINES_DIR=(\S+)", env)
    assert match, "base image: ENV MINI_O3_PIPELINES_DIR missing"
    workdir = final.args("WORKDIR")[-1]
    copies = [c.split() for c in final.args("COPY")]
    targets = {str(PurePosixPath(workdir, c[-1])) for c in copies if c[-2] == "pipelines"}
    assert match.group(1) in targets, f"base image: pipelines/ is not copied to {match.group(1)} (COPY targets {sorted(targets)})"
    ignore = (IMAGES_DIR / "base" / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!pipelines/" in ignore, "base image: the build context excludes pipelines/"
