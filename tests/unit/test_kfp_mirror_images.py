"""Mirrored registries reach Ray pods (requirement 6): a package compiled for a mirror
(``MINI_O3_IMAGE_REGISTRY`` / ``MINI_O3_IMAGE_TAG`` at compile time) yields RayJobs whose every pod
uses the mirror, although nothing sets those variables in the launcher pod."""

from __future__ import annotations

import pytest

from mini_o3 import images
from mini_o3.kfp.compile import compile_all
from mini_o3.kfp.review import rayjob_for

MIRROR, TAG = "registry.example.com/ml", "2026.11"
VOLUME = {"p0_work_volume_claim": "mini-o3-work"}


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(images.REGISTRY_ENV, MIRROR)
        mp.setenv(images.TAG_ENV, TAG)
        compile_all(root)
    return root


def _images(manifest: dict) -> set[str]:
    spec = manifest["spec"]
    cluster = spec["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster.get("workerGroupSpecs", [])),
            spec["submitterPodTemplate"]]
    return {c["image"] for pod in pods for c in pod["spec"]["containers"]}


@pytest.mark.parametrize("stage, params, runtime", [
    ("rl", VOLUME, "rl"),
    ("rl", {**VOLUME, "p3_rl_engine": "local", "p3_rl_workers": 0}, "rl"),
    ("sft", {**VOLUME, "p2_sft_launch_mode": "rayjob"}, "sft"),
])
@pytest.mark.slow
def test_rayjobs_of_a_mirror_compiled_package_use_the_mirror(mirrored, monkeypatch, stage, params, runtime):
    monkeypatch.delenv(images.REGISTRY_ENV, raising=False)  # the launcher pod's env: nothing set
    monkeypatch.delenv(images.TAG_ENV, raising=False)
    manifest = rayjob_for(stage, params, root=mirrored)
    assert _images(manifest) == {f"{MIRROR}/mini-o3-{runtime}:{TAG}"}


@pytest.mark.slow
def test_the_committed_package_keeps_the_default_registry(monkeypatch):
    monkeypatch.setenv(images.REGISTRY_ENV, "elsewhere.example.com/x")  # a stray env in the pod does not win
    manifest = rayjob_for("rl", VOLUME)
    assert _images(manifest) == {f"{images.DEFAULT_REGISTRY}/mini-o3-rl:{images.default_tag()}"}
