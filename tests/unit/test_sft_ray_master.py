"""LLaMA-Factory Ray mode on a cluster whose head has no GPU: rank 0's rendezvous node is a GPU node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import ray
import yaml
from fixtures.sft_run import data_dir_fixture, model_dir_fixture, prepare  # noqa: F401 (registers `data_dir`, `model_dir`)

from mini_o3.sft import SFTError
from mini_o3.sft.ray_master import gpu_master_addr, resolve_master_addr


def node(ip: str, gpus: float = 0, *, head: bool = False, alive: bool = True) -> dict:
    """One entry shaped like ``ray.nodes()`` (Ray 2.x)."""
    resources = {"CPU": 82.0, "memory": 1e11, f"node:{ip}": 1.0}
    if gpus:
        resources["GPU"] = float(gpus)
    if head:
        resources["node:__internal_head__"] = 1.0
    return {"NodeID": ip.replace(".", "") * 4, "Alive": alive, "NodeManagerAddress": ip, "NodeManagerHostname": f"h-{ip}",
            "NodeManagerPort": 41000, "ObjectManagerPort": 42000, "Resources": resources, "Labels": {}}


# Our RayJob: a CPU head (num-gpus 0) and 8-GPU worker pods; one worker died and was replaced.
KUBERAY = [node("10.0.0.2", head=True), node("10.0.3.7", 8), node("10.0.1.9", 8), node("10.0.0.5", 8, alive=False),
           node("10.0.2.4", 4)]


def test_a_gpu_node_not_the_gpu_less_head():
    assert gpu_master_addr(KUBERAY) == "10.0.1.9"  # most GPUs, alive, lowest address among equals
    assert gpu_master_addr(list(reversed(KUBERAY))) == "10.0.1.9"  # order of ray.nodes() does not matter
    assert gpu_master_addr([node("10.0.0.2", 1, head=True), node("10.0.1.9", 8)]) == "10.0.0.2"  # head with a GPU: LF's default
    assert gpu_master_addr([node("10.0.0.2", head=True), node("10.0.0.5", 8, alive=False)]) is None
    assert gpu_master_addr([]) is None


def test_no_cluster_named_keeps_llamafactorys_default():
    assert resolve_master_addr({}, {}) is None  # ray.init() would start a local cluster: its head is here


def test_prepare_ray_run_names_a_gpu_node_as_master(data_dir, model_dir, tmp_path, monkeypatch):
    """What the stage runs on the RayJob head: the yaml LLaMA-Factory reads gets a GPU node's IP.
    (A cluster with GPU nodes cannot exist here: ray.nodes() answers as our KubeRay cluster would.)"""
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray, "nodes", lambda: KUBERAY)
    ray_sets = ["launch.mode=ray", "launch.ray_num_workers=16", "launch.ray_init_kwargs.address=auto"]
    run = prepare(data_dir, model_dir, tmp_path / "run", ray_sets)
    args = yaml.safe_load(run.files.yaml.read_text())
    assert args["master_addr"] == "10.0.1.9" and args["ray_init_kwargs"] == {"address": "auto"}
    record = json.loads((run.run_dir / "sft_run.json").read_text())
    assert "launch.master_addr" in json.dumps(record)
    # an explicit master_addr wins
    run = prepare(data_dir, model_dir, tmp_path / "run2", [*ray_sets, "launch.master_addr=10.0.3.7"])
    assert yaml.safe_load(run.files.yaml.read_text())["master_addr"] == "10.0.3.7"
    # no GPU node at all: a clear error before training starts
    monkeypatch.setattr(ray, "nodes", lambda: [node("10.0.0.2", head=True)])
    with pytest.raises(SFTError, match="no alive Ray node has a GPU"):
        prepare(data_dir, model_dir, tmp_path / "run3", ray_sets)


def test_ray_mode_without_a_named_cluster_is_left_alone(data_dir, model_dir, tmp_path: Path):
    run = prepare(data_dir, model_dir, tmp_path / "run", ["launch.mode=ray"])
    assert "master_addr" not in yaml.safe_load(run.files.yaml.read_text())
