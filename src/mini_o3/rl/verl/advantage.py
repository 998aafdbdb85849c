"""GRPO advantage estimators for verl (``algorithm.adv_estimator=grpo_minio3`` / ``grpo_minio3_paper``).

Both call ``mini_o3.task.grpo.group_advantages`` (unbiased std, size-1 groups mean 0 / std 1,
``eps`` = 1e-6) on the trajectory scores ``token_level_rewards.sum(-1)`` grouped by ``index``
(verl's prompt uid), then broadcast the scalar over ``response_mask``:

* ``grpo_minio3`` (over_turn_mode ``code``, the released code): exceed rewards stay in the group
  statistics; the loss mask alone removes exceed rows;
* ``grpo_minio3_paper``: exceed rows leave the statistics and get advantage 0. verl hands an
  estimator no per-row flags, so an exceed row is recognised by its all-zero ``response_mask``
  (the agent loop zeroes it under ``ignore_exceed``): the config builder therefore requires
  ``ignore_exceed=true`` and ``ignore_void=false`` for this mode.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from verl.trainer.ppo.core_algos import register_adv_est

from mini_o3.task.grpo import OverTurnMode, group_advantages


def minio3_scores(
    token_level_rewards: torch.Tensor, response_mask: torch.Tensor, index: np.ndarray, mode: OverTurnMode, eps: float = 1e-6
) -> list[float]:
    """Per-row scalar advantages (before the response-mask broadcast)."""
    rewards = token_level_rewards.sum(dim=-1).tolist()
    exceed = (response_mask.sum(dim=-1) == 0).tolist()
    return group_advantages(rewards, [str(i) for i in index], exceed, mode=mode, eps=eps)


def _estimator(mode: OverTurnMode):
    def compute(
        token_level_rewards: torch.Tensor,
        response_mask: torch.Tensor,
        index: np.ndarray,
        config: Any = None,
        epsilon: float = 1e-6,
        **_: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = minio3_scores(token_level_rewards, response_mask, index, mode, epsilon)
        with torch.no_grad():
            column = torch.tensor(scores, dtype=token_level_rewards.dtype, device=token_level_rewards.device)
            advantages = column.unsqueeze(-1) * response_mask
        return advantages, advantages

    compute.__name__ = f"compute_grpo_minio3_{mode}_advantage"
    compute.__doc__ = f"Mini-o3 GRPO advantages, over_turn_mode={mode!r} (see the module doc)."
    return compute


compute_grpo_minio3_code = register_adv_est("grpo_minio3")(_estimator("code"))
compute_grpo_minio3_paper = register_adv_est("grpo_minio3_paper")(_estimator("paper"))
