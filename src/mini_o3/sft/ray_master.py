"""The rendezvous node of LLaMA-Factory's Ray mode when ``launch.master_addr`` is unset.

LLaMA-Factory 0.9.5 (``train/tuner.py::_ray_training_function``) then uses the Ray *head* node's IP
as torch.distributed ``MASTER_ADDR``, but rank 0 goes to a bundle of its placement group, which
holds ``{GPU: 1, CPU: 10}`` per GPU of the cluster (``strategy="PACK"``); bundles on the
``master_addr`` node get the lowest ranks (``sort_placement_group_by_node_ip``). Our RayJob head has
``num-gpus: 0``, so no bundle is there: rank 0 lands on a worker and the other ranks wait on the
head, where nothing listens. Naming an alive GPU node instead puts rank 0 on that node: the group
spans every GPU of the cluster, so every GPU node holds bundles.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

#: ``Resources`` key Ray gives the head node.
HEAD_RESOURCE = "node:__internal_head__"


def gpu_master_addr(nodes: Sequence[Mapping[str, Any]], device: str = "GPU") -> str | None:
    """The ``NodeManagerAddress`` rank 0 should rendezvous on, from a ``ray.nodes()`` list: the head
    when it has a ``device`` (LLaMA-Factory's own choice is right then), else the alive node with the
    most ``device`` resources (ties: the lowest address, so the choice is stable); None without any."""
    alive = [n for n in nodes if n.get("Alive") and float((n.get("Resources") or {}).get(device, 0)) >= 1]
    if not alive:
        return None
    heads = [n for n in alive if HEAD_RESOURCE in (n.get("Resources") or {})]
    if heads:
        return str(heads[0]["NodeManagerAddress"])
    best = min(alive, key=lambda n: (-float(n["Resources"][device]), str(n["NodeManagerAddress"])))
    return str(best["NodeManagerAddress"])


def resolve_master_addr(init_kwargs: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """``master_addr`` for a Ray-mode run joining an existing cluster (``init_kwargs["address"]`` or
    ``RAY_ADDRESS``): connect, pick with :func:`gpu_master_addr`, disconnect. None when no cluster is
    named (``ray.init()`` then starts a local one whose head is this machine: the default is right).
    Raises RuntimeError when the cluster has no alive GPU node (training could not start anyway)."""
    if not (init_kwargs.get("address") or environ.get("RAY_ADDRESS")):
        return None
    import ray

    owned = not ray.is_initialized()
    if owned:
        ray.init(**{"logging_level": logging.WARNING, **init_kwargs})
    try:
        nodes = ray.nodes()
    finally:
        if owned:
            ray.shutdown()
    addr = gpu_master_addr(nodes)
    if addr is None:
        alive = [n.get("NodeManagerAddress") for n in nodes if n.get("Alive")]
        raise RuntimeError(f"SFT in Ray mode: no alive Ray node has a GPU (alive nodes: {alive}); "
                           "check the worker pods' nvidia.com/gpu requests and rayStartParams num-gpus")
    return addr
