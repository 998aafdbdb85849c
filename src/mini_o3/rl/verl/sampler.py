"""Rejection sampling for verl's V1 trainer (``trainer.v1.sampler.custom_sampler``: this file,
``MiniO3ReplayBuffer``).

verl 0.9.1's built-in ``algorithm.filter_groups`` evicts a finished group when one reward metric
is identical across it (``np.std == 0``). Mini-o3 drops a group when ``mini_o3.task.grpo.
valid_groups`` says so: reward std < ``min_group_std`` or any member's judge call failed, with the
std over all members (``code``) or over the non-exceed ones (``paper``). ``MiniO3ReplayBuffer``
is verl's ``ReplayBuffer`` with that rule in ``_dapo_filtered_keys``; eviction, refill (2k for k
evicted groups in sync mode) and metrics are verl's. It reads each trajectory's
``reward_extra_info`` (``score``, ``judge_failed``, ``exceed`` from ``compute_score``).

``sampler_kwargs``: ``over_turn_mode``, ``min_group_std``, ``train_batch_size``,
``max_inflight_gen_batches`` (written by the config builder).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from mini_o3.task.grpo import OverTurnMode, valid_groups

#: The reward_extra_info keys the filter reads.
SCORE_KEY, JUDGE_FAILED_KEY, EXCEED_KEY = "score", "judge_failed", "exceed"


def filtered_groups(
    members: Mapping[str, Sequence[Mapping[str, Any]]], *, mode: OverTurnMode = "code", min_std: float = 1e-4
) -> dict[str, float]:
    """Groups to drop → their mean score. ``members``: uid → each trajectory's reward_extra_info."""
    rewards, uids, failed, exceed = [], [], [], []
    for uid, infos in members.items():
        for info in infos:
            missing = [k for k in (SCORE_KEY, JUDGE_FAILED_KEY, EXCEED_KEY) if k not in info]
            if missing:
                raise KeyError(f"group {uid}: reward_extra_info lacks {missing}; use mini_o3.rl.verl.reward.compute_score")
            rewards.append(float(info[SCORE_KEY]))
            uids.append(uid)
            failed.append(bool(info[JUDGE_FAILED_KEY]))
            exceed.append(bool(info[EXCEED_KEY]))
    keep = valid_groups(rewards, uids, failed, exceed, mode=mode, min_std=min_std)
    dropped: dict[str, list[float]] = defaultdict(list)
    for uid, reward, k in zip(uids, rewards, keep):
        if not k:
            dropped[uid].append(reward)
    return {uid: sum(values) / len(values) for uid, values in dropped.items()}


try:  # verl's V1 replay buffer needs TransferQueue (verl[vllm] / verl[fsdp] images), absent on CPU CI
    import transfer_queue as tq
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
except ImportError as _exc:  # pragma: no cover - exercised where TransferQueue is missing
    _IMPORT_ERROR: ImportError | None = _exc

    def __getattr__(name: str) -> Any:
        if name == "MiniO3ReplayBuffer":
            raise ImportError(f"MiniO3ReplayBuffer needs verl's V1 trainer with TransferQueue installed: {_IMPORT_ERROR}")
        raise AttributeError(name)
else:

    class MiniO3ReplayBuffer(ReplayBuffer):
        """verl's sync ``ReplayBuffer`` whose group filter is Mini-o3's (see the module doc)."""

        def __init__(self, *args: Any, sampler_kwargs: Any = None, **kwargs: Any):
            options = dict(sampler_kwargs or {})
            self.over_turn_mode: OverTurnMode = options.get("over_turn_mode", "code")
            self.min_group_std = float(options.get("min_group_std", 1e-4))
            if self.over_turn_mode not in ("code", "paper"):
                raise ValueError(f"sampler_kwargs.over_turn_mode must be code or paper, got {self.over_turn_mode!r}")
            enabled = bool(options.get("enable", True))
            kwargs.setdefault("filter_groups_metric", SCORE_KEY if enabled else None)
            kwargs.setdefault("train_batch_size", options.get("train_batch_size"))
            kwargs.setdefault("gen_batch_size", 1 if enabled else options.get("train_batch_size"))
            kwargs.setdefault("max_inflight_gen_batches", int(options.get("max_inflight_gen_batches", 1)))
            super().__init__(*args, sampler_kwargs=sampler_kwargs, **kwargs)

        def _dapo_filtered_keys(self, partition_id: str) -> tuple[set[str], Counter]:
            if partition_id == "val" or self.filter_groups_metric is None:
                return set(), Counter()
            finished = self.finished_keys[partition_id]
            cache = self._dapo_classification_cache[partition_id]
            for uid in cache.keys() - finished:
                del cache[uid]
            new = finished - cache.keys()
            keys = [key for key in self.partitions[partition_id] if key.split("_")[0] in new]
            members: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
            if keys:
                data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=["extra_fields"])
                for key, value in zip(keys, list(data["extra_fields"]), strict=True):
                    fields = getattr(value, "data", value)
                    members[key.split("_")[0]].append(dict(fields.get("reward_extra_info", {})))
            dropped = filtered_groups(members, mode=self.over_turn_mode, min_std=self.min_group_std)
            for uid in new:
                cache[uid] = dropped.get(uid)
            kept = {uid: value for uid, value in cache.items() if value is not None}
            return set(kept), Counter(kept.values())
