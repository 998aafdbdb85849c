"""Our RayJob presets can be scheduled: a real local Ray cluster whose nodes have exactly the Ray
resources KubeRay gives our RayJob's pods (fake GPUs) runs the trainers' own placement code and
waits for ``pg.ready()``.

Upstream rules:

* KubeRay v1.7.0 (commit 59d663aeec13760646da3db9c1cf8cfe883e30b7)
  ``ray-operator/controllers/ray/common/pod.go:1390-1416`` ``generateRayStartCommand``: without
  ``num-cpus`` in rayStartParams, Ray's ``--num-cpus`` is the container's CPU *limit*
  (``Quantity.Value()``, rounded up), else its request; ``--memory`` is the memory limit; the GPU
  count comes from ``rayStartParams`` / the accelerator limit.
* verl 0.9.1 (``verl/single_controller/ray/base.py:131-160``, ``185-245``, as installed):
  ``ResourcePoolManager(max_colocate_count=3)`` makes one ``{CPU: 3, GPU: 1}`` bundle per GPU,
  one STRICT_PACK placement group per node (``resource_pool_spec = [n_gpus_per_node] * nnodes``,
  ``trainer/ppo/v1/trainer_base.py:848``), checks only GPUs (``_check_resource_available``) and
  then blocks on ``ray.get(pg.ready())``: too few CPUs per node hangs the job until its deadline.
* verl 0.9.1 ``verl/workers/rollout/vllm_rollout/vllm_async_server.py:1377-1384``: each vLLM server
  is a default actor (1 CPU to schedule) with a *hard* NodeAffinity to a GPU node, outside the
  placement group, so a GPU node needs a free CPU after the bundles.
* LLaMA-Factory 0.9.5 (as installed) ``llamafactory/train/tuner.py:300-316`` +
  ``train/trainer_utils.py:894-903``: one ``{CPU: 10, GPU: 1}`` bundle per GPU of the cluster, PACK.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import tempfile

import pytest

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # a local Ray cluster per preset

from mini_o3.kfp.review import rayjob_for, remote_plan  # noqa: E402

TIMEOUT_S = 60.0
VOLUME = {"p0_work_volume_claim": "mini-o3-work"}
PRESETS = {
    "rl-default": ("rl", VOLUME),
    "rl-1-node": ("rl", {**VOLUME, "p3_rl_workers": 1}),
    "sft": ("sft", {**VOLUME, "p2_sft_launch_mode": "rayjob"}),
}
_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(text: str) -> float:
    number, suffix = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text)).groups()
    return float(number) * _SUFFIX[suffix]


def ray_node(group: dict) -> dict:
    """The Ray resources KubeRay starts a pod of ``group`` with (pod.go:1390-1416)."""
    container = group["template"]["spec"]["containers"][0]
    params, res = group.get("rayStartParams", {}), container["resources"]
    cpus = params.get("num-cpus") or res.get("limits", {}).get("cpu") or res.get("requests", {}).get("cpu")
    gpus = params.get("num-gpus") or res.get("limits", {}).get("nvidia.com/gpu", "0")
    return {"num_cpus": math.ceil(quantity(cpus)), "num_gpus": int(gpus),
            "memory": int(quantity(res["limits"]["memory"])), "object_store_memory": 80 * 2**20}


@pytest.fixture
def local_cluster(monkeypatch):
    """A factory: a Ray cluster of the given nodes (own temp dir, free ports), connected; torn down after."""
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    made = []

    def make(head: dict, workers: list[dict]) -> Cluster:
        temp = tempfile.mkdtemp(prefix="rpl", dir="/tmp")  # short: Ray's unix sockets live there
        # Cluster writes a convenience address file into Ray's *default* temp dir whatever temp_dir says
        # (ray/cluster_utils.py, write_ray_address); on a fresh machine that folder does not exist yet
        os.makedirs(os.path.dirname(ray._private.utils.get_ray_address_file(None)), exist_ok=True)
        cluster = Cluster(initialize_head=True, head_node_args={**head, "include_dashboard": False, "temp_dir": temp})
        made.append((cluster, temp))
        for node in workers:
            cluster.add_node(**node)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address)
        return cluster

    yield make
    if ray.is_initialized():
        ray.shutdown()
    for cluster, temp in made:
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _bounded_get(monkeypatch, what: str):
    real_get = ray.get

    def get(refs, *args, **kwargs):
        kwargs.setdefault("timeout", TIMEOUT_S)
        try:
            return real_get(refs, *args, **kwargs)
        except ray.exceptions.GetTimeoutError:
            pytest.fail(f"{what}: placement group not ready after {TIMEOUT_S:.0f}s (the job would hang): "
                        f"available {ray._private.state.available_resources_per_node()}")

    monkeypatch.setattr(ray, "get", get)
    return real_get


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_rayjob_places_the_trainers_bundles(preset, local_cluster, monkeypatch):
    stage, params = PRESETS[preset]
    manifest = rayjob_for(stage, params)
    cluster_spec = manifest["spec"]["rayClusterSpec"]
    (group,) = cluster_spec["workerGroupSpecs"]
    head = ray_node(cluster_spec["headGroupSpec"])
    workers = [ray_node(group)] * group["replicas"]
    local_cluster(head, workers)
    assert shlex.split(manifest["spec"]["entrypoint"])[:3] == ["mini-o3", "stage", "run"]
    request = remote_plan(stage, params).request  # the sealed request `mini-o3 stage run` runs in the RayJob

    if stage == "rl":
        from verl.single_controller.ray.base import ResourcePoolManager

        nnodes, gpus = request.nnodes, request.gpus_per_node
        assert (nnodes, gpus) == (group["replicas"], workers[0]["num_gpus"])
        manager = ResourcePoolManager(resource_pool_spec={"global_pool": [gpus] * nnodes}, mapping={})
        manager.create_resource_pool()
        real_get = _bounded_get(monkeypatch, f"verl on {preset}")
        pgs = manager.resource_pool_dict["global_pool"].get_placement_groups(device_name="cuda")
        assert len(pgs) == nnodes and all(pg.bundle_count == gpus for pg in pgs)
        # a vLLM server actor (default resources, hard affinity) still fits on a GPU node
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("GPU"))

        @ray.remote
        class Server:
            def ready(self) -> bool:
                return True

        server = Server.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=node, soft=False)).remote()
        assert real_get(server.ready.remote(), timeout=TIMEOUT_S * 2)
    else:
        import llamafactory.train.trainer_utils as trainer_utils

        monkeypatch.setattr(trainer_utils, "get_device_name", lambda: "gpu")  # what a CUDA host reports
        total = int(ray.cluster_resources().get("GPU", 0))
        assert total == sum(w["num_gpus"] for w in workers) and _option_set(request.overrides, "launch.ray_num_workers") == total
        pg, bundle = trainer_utils.get_placement_group(total)
        assert bundle == {"CPU": 10, "GPU": 1}
        _bounded_get(monkeypatch, f"LLaMA-Factory on {preset}")
        ray.get(pg.ready())


def _option_set(overrides: list[str], key: str) -> int:
    return int(next(o.split("=", 1)[1] for o in overrides if o.startswith(f"{key}=")))
