"""The compiled packages: committed files are current, byte-stable, free of secret values, and
carry the Kubernetes platform settings each executor needs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mini_o3 import images
from mini_o3.kfp.compile import compile_all, expected_files, stale_files

pytestmark = pytest.mark.slow  # compiles the pipelines

REPO = Path(__file__).resolve().parents[2]
CANARIES = {
    "AWS_ACCESS_KEY_ID": "CANARY-ACCESS-4f1d", "AWS_SECRET_ACCESS_KEY": "CANARY-SECRET-9a7c",
    "API_KEY": "CANARY-JUDGE-KEY-31b2", "OPENAI_API_KEY": "CANARY-OPENAI-77e0", "END_POINT": "https://canary-endpoint.invalid",
    "HF_TOKEN": "hf_CANARYTOKEN5521", "MINI_O3_S3_ENDPOINT": "http://canary-s3.invalid:9000",
    "MLFLOW_TRACKING_URI": "http://canary-mlflow.invalid",
}


@pytest.fixture
def default_images(monkeypatch):
    monkeypatch.delenv(images.REGISTRY_ENV, raising=False)
    monkeypatch.delenv(images.TAG_ENV, raising=False)


@pytest.fixture(scope="module")
def specs():
    """(pipeline spec, kubernetes platform spec) of each committed package."""
    out = {}
    for name in ("train", "evaluate"):
        spec, platform = yaml.safe_load_all((REPO / "pipelines" / f"{name}.yaml").read_text())
        out[name] = (spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"])
    return out


def test_committed_packages_are_up_to_date(default_images):
    stale = stale_files(REPO)
    assert not stale, f"compiled files are stale: {stale}; run `mini-o3 compile`"


def test_compile_is_byte_stable_and_complete(default_images, tmp_path):
    first = compile_all(tmp_path / "a")
    compile_all(tmp_path / "b")
    assert sorted(str(p.relative_to(tmp_path / "a")) for p in first) == sorted(expected_files())
    for path in first:
        rel = path.relative_to(tmp_path / "a")
        assert path.read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    assert str(tmp_path) not in (tmp_path / "a" / "pipelines" / "train.yaml").read_text()


def test_stale_or_orphan_files_are_reported(default_images, tmp_path):
    compile_all(tmp_path)
    assert stale_files(tmp_path) == []
    (tmp_path / "components" / "sft.yaml").write_text("# edited\n")
    (tmp_path / "components" / "old-step.yaml").write_text("# no longer compiled\n")
    (tmp_path / "pipelines" / "evaluate.yaml").unlink()
    assert stale_files(tmp_path) == ["pipelines/evaluate.yaml", "components/sft.yaml", "components/old-step.yaml"]


def test_no_secret_values_reach_the_packages(default_images, monkeypatch, tmp_path):
    for key, value in CANARIES.items():
        monkeypatch.setenv(key, value)
    for path in compile_all(tmp_path):
        text = path.read_text()
        for key, value in CANARIES.items():
            assert value not in text, f"{key} value leaked into {path.name}"


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_secrets_are_referenced_by_parameter_name_only(specs, name):
    spec, executors = specs[name]
    params = spec["root"]["inputDefinitions"]["parameters"]
    for executor, config in executors.items():
        entries = config["secretAsEnv"]
        assert entries, executor
        for entry in entries:
            assert "secretName" not in entry, f"{executor}: a literal secret name"
            param = entry["secretNameParameter"]["componentInputParameter"].removeprefix("pipelinechannel--")
            assert param.endswith("secret_name") and param in params
            assert all(k["envVar"] == k["secretKey"] for k in entry["keyToEnv"])
        s3 = [e for e in entries if "s3_secret_name" in e["secretNameParameter"]["componentInputParameter"]]
        assert len(s3) == 1 and not s3[0]["optional"]
        assert {k["envVar"] for k in s3[0]["keyToEnv"]} == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_platform_settings_come_from_the_configmap_not_from_parameters(specs, name):
    """The S3 endpoint and tracking URI are the platform's (the chart's ConfigMap on every task,
    optional), not per-run parameters or component inputs."""
    from mini_o3.kfp.bodies import PLATFORM_ENV

    spec, executors = specs[name]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert not {p for p in params if p.removeprefix("p0_") in ("s3_endpoint", "mlflow_tracking_uri")}
    for executor, config in executors.items():
        (entry,) = config["configMapAsEnv"]
        param = entry["configMapNameParameter"]["componentInputParameter"].removeprefix("pipelinechannel--")
        assert param.removeprefix("p0_") == "platform_config_map" and param in params, executor
        assert entry["optional"] and [(k["configMapKey"], k["envVar"]) for k in entry["keyToEnv"]] == [
            (key, key) for key in PLATFORM_ENV]
    for component in spec["components"].values():
        inputs = component.get("inputDefinitions", {}).get("parameters", {})
        assert not {"s3_endpoint", "mlflow_tracking_uri"} & set(inputs)


def test_gpu_pods_get_accelerators_node_selector_tolerations_and_shm(specs):
    spec, executors = specs["train"]
    containers = {name: e["container"] for name, e in spec["deploymentSpec"]["executors"].items()}
    gpu = {name for name, c in containers.items() if "accelerator" in c.get("resources", {})}
    # one GPU variant each of SFT and RL, three of evaluate (the RL model, and the base and SFT models
    # for the learning table); their launcher / CPU twins have none
    assert sorted(containers[n]["image"].split("/")[-1].split(":")[0] for n in gpu) == [
        "mini-o3-eval", "mini-o3-eval", "mini-o3-eval", "mini-o3-rl", "mini-o3-sft"]
    for name, container in containers.items():
        platform = executors[name]
        if name in gpu:
            accel = container["resources"]["accelerator"]
            assert "p0_gpu_type" in accel["resourceType"]
            assert any(p in accel["resourceCount"] for p in ("p2_sft_gpus", "p3_rl_gpus_per_worker", "p4_eval_gpus"))
            assert platform["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith("p0_gpu_node_selector")
            assert platform["tolerations"][0]["tolerationJson"]["componentInputParameter"].endswith("p0_gpu_tolerations")
            assert platform["emptyDirMounts"] == [
                {"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "64Gi", "volumeName": "dshm"}]
        else:
            assert not {"nodeSelector", "tolerations", "emptyDirMounts"} & set(platform), name
        assert int(platform["activeDeadlineSeconds"]) > 0


@pytest.mark.parametrize("name", ["train", "evaluate"])
def test_images_caching_and_parameter_docs(specs, name):
    spec, _ = specs[name]
    for executor in spec["deploymentSpec"]["executors"].values():
        container = executor["container"]
        assert images.parse_image_ref(container["image"])["tag"] == images.default_tag()
        assert "pip install" not in " ".join(container["command"])  # install_kfp_package=False
    def tasks(dag):
        yield from dag["tasks"].values()
    all_tasks = [t for comp in spec["components"].values() if "dag" in comp for t in tasks(comp["dag"])]
    all_tasks += list(tasks(spec["root"]["dag"]))
    assert all_tasks and all(not t.get("cachingOptions", {}).get("enableCache") for t in all_tasks)
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert all(p.get("description") for p in params.values()), [n for n, p in params.items() if not p.get("description")]
    if name == "evaluate":
        assert {"model_uri", "benchmarks", "k", "storage_root", "judge_secret_name", "s3_secret_name",
                "platform_config_map"} <= set(params)
    else:
        assert sorted(params) == sorted(params, key=lambda n: (n[:2], n))  # phase prefixes sort in order
        assert {"p1_data_coldstart_uri", "p2_sft_model_uri", "p3_rl_model_uri", "p1_data_eval_uri"} <= set(params)


def test_mirrored_registry_is_one_recompile_away(monkeypatch, tmp_path):
    monkeypatch.setenv(images.REGISTRY_ENV, "registry.example.com/ml")
    monkeypatch.setenv(images.TAG_ENV, "2026.11")
    compile_all(tmp_path)
    text = (tmp_path / "pipelines" / "train.yaml").read_text()
    assert "registry.example.com/ml/mini-o3-sft:2026.11" in text and "ghcr.io" not in text
