"""Rejection ("dynamic") sampling: roll out generation batches and keep the prompt groups that
``valid_groups`` accepts until ``batch_size`` groups are collected (at most ``max_gen_batches``
generation batches, then a clear error, as the seed). ``progress`` hears about every generation
batch; a policy whose groups show no reward variance for ``max_barren_gen_batches`` batches in a
row fails at once (a too-weak or saturated policy would otherwise loop silently through all of them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mini_o3.task import Trajectory
from mini_o3.task.grpo import valid_groups

from ..rewards import Score


@dataclass
class Group:
    """The ``n`` trajectories of one prompt with their scores; ``uid`` keys the GRPO group."""

    uid: str
    prompt: Any
    trajectories: list[Trajectory]
    scores: list[Score]


@dataclass
class Collected:
    groups: list[Group]
    generated: list[Group] = field(default_factory=list)  # every group rolled out (for metrics)
    gen_batches: int = 0
    filtered_groups: int = 0


class NotEnoughValidGroups(RuntimeError):
    """Rejection sampling ran out of generation batches."""


def collect_groups(
    generate_batch: Callable[[int], Sequence[Group]],
    batch_size: int,
    *,
    rejection_sample: bool,
    max_gen_batches: int,
    mode: str = "code",
    min_std: float = 1e-4,
    max_barren_gen_batches: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> Collected:
    """``generate_batch(k)`` rolls out and scores the ``k``-th generation batch of this step."""
    result = Collected(groups=[])
    barren = 0  # consecutive generation batches without one valid group
    while len(result.groups) < batch_size:
        if result.gen_batches >= max_gen_batches:
            raise NotEnoughValidGroups(
                f"rejection sampling kept {len(result.groups)} of {batch_size} prompt groups after "
                f"{result.gen_batches} generation batches (max_num_gen_batches); all other groups had reward "
                f"std < min_group_std or a failed judge call. Raise max_num_gen_batches or set rejection_sample=false"
            )
        batch = list(generate_batch(result.gen_batches))
        result.gen_batches += 1
        result.generated.extend(batch)
        if not rejection_sample:
            result.groups.extend(batch)
            continue
        rewards, uids, failed, exceed = [], [], [], []
        for group in batch:
            for traj, score in zip(group.trajectories, group.scores):
                rewards.append(score.reward)
                uids.append(group.uid)
                failed.append(score.judge_failed)
                exceed.append(traj.termination == "exceed")
        keep = valid_groups(rewards, uids, failed, exceed, mode=mode, min_std=min_std)  # type: ignore[arg-type]
        kept_uids = {uid for uid, k in zip(uids, keep) if k}
        for group in batch:
            if group.uid in kept_uids:
                result.groups.append(group)
            else:
                result.filtered_groups += 1
        barren = 0 if kept_uids else barren + 1
        if progress is not None:
            progress(f"generation batch {result.gen_batches}/{max_gen_batches}: {min(len(result.groups), batch_size)}"
                     f"/{batch_size} valid groups ({result.filtered_groups} filtered)")
        if max_barren_gen_batches is not None and barren >= max_barren_gen_batches:
            mean = sum(rewards) / max(len(rewards), 1)
            raise NotEnoughValidGroups(
                f"no reward variance in {barren} generation batches in a row (every group's rewards were equal; "
                f"mean reward of the last batch {mean:.3f}): the policy is too weak (all 0) or saturated (all 1) "
                f"for GRPO. Check the SFT model (valid rate, Avg@k) or raise max_barren_gen_batches")
    result.groups = result.groups[:batch_size]
    return result
