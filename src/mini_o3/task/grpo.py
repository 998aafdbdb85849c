"""GRPO maths shared by both RL engines: group advantages, the rejection filter, loss masks and the
clipped policy loss (protocol §12–§13, released code = verl fork at Mini-o3 8654dbf).

Engine-free: group statistics are pure Python; ``policy_loss`` / ``masked_mean`` work on numpy
arrays and on torch tensors (autograd flows), and import neither at module level.

Loss masks follow the released code (``get_final_eos_mask`` then ``dp_actor.update_policy``):
a token trains iff the model generated it, it is not after the response's last ``<|im_end|>``,
and its row is not dropped (exceed under ``ignore_exceed``, void under ``ignore_void``). So a
final turn without a closing ``<|im_end|>`` (cut by the length limit, or the unclosed tool call
an exceed episode ends on) never trains, and a response without any ``<|im_end|>`` trains nothing.

Two treatments of **exceed** trajectories (``OverTurnMode``):

* ``code`` (default, the released code): exceed samples keep their reward (normally 0) in the
  group mean/std and in the zero-variance filter; only the loss mask drops them.
* ``paper`` (the paper's completion mask, unverified): exceed samples are left out of the group
  mean/std and of the filter, get advantage 0, and the loss is normalised over completed samples
  (``loss_normalizer``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Optional

from .prompts import IM_END
from .trajectory import Segment, Trajectory
from .turn_loop import row_trains

OverTurnMode = Literal["code", "paper"]
LossAgg = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]
KLType = Literal["low_var_kl", "kl", "abs", "mse"]

#: Denominator guard of verl's ``masked_mean`` in the seed (``sum / (count + 1e-6)``).
MASKED_MEAN_EPS = 1e-6

__all__ = [
    "KLType", "LossAgg", "MASKED_MEAN_EPS", "OverTurnMode", "PolicyLossOutput", "entropy_from_logits",
    "final_eos_mask", "group_advantages", "kl_penalty", "loss_normalizer", "masked_mean", "policy_loss",
    "trainable_segments", "trajectory_trainable", "valid_groups",
]


# -- group statistics --------------------------------------------------------------------------
def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and unbiased (n-1) std, as ``torch.mean`` / ``torch.std``; std is nan for n < 2."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n == 1:
        return mean, math.nan
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def _members(groups: Sequence[Hashable]) -> dict[Hashable, list[int]]:
    members: dict[Hashable, list[int]] = {}
    for i, key in enumerate(groups):
        members.setdefault(key, []).append(i)
    return members


def _flags(flags: Optional[Sequence[bool]], n: int, name: str) -> list[bool]:
    if flags is None:
        return [False] * n
    if len(flags) != n:
        raise ValueError(f"{name} has {len(flags)} entries for {n} rewards")
    return [bool(f) for f in flags]


def _check(rewards: Sequence[float], groups: Sequence[Hashable], mode: str) -> None:
    if len(groups) != len(rewards):
        raise ValueError(f"groups has {len(groups)} entries for {len(rewards)} rewards")
    if mode not in ("code", "paper"):
        raise ValueError(f"mode must be 'code' or 'paper', got {mode!r}")


def group_advantages(
    rewards: Sequence[float],
    groups: Sequence[Hashable],
    exceed: Optional[Sequence[bool]] = None,
    *,
    mode: OverTurnMode = "code",
    eps: float = 1e-6,
) -> list[float]:
    """GRPO outcome advantages ``A_i = (r_i - mean_g) / (std_g + eps)`` per sample.

    Statistics are ``torch.mean`` / unbiased ``torch.std`` over the group (key = prompt uid); a
    group of one member uses mean 0 and std 1 (verl), so its advantage is ``r / (1 + eps)``.
    ``code``: exceed samples count with their reward. ``paper``: the statistics are over the
    non-exceed members only (same size-1 rule), exceed samples get 0, and a group without a
    non-exceed member is all 0. Computed in float64 (the seed uses float32; compare with a
    tolerance of ~1e-6).
    """
    _check(rewards, groups, mode)
    exceeded = _flags(exceed, len(rewards), "exceed")
    advantages = [0.0] * len(rewards)
    for members in _members(groups).values():
        counted = [i for i in members if mode == "code" or not exceeded[i]]
        if not counted:
            continue
        mean, std = _mean_std([float(rewards[i]) for i in counted])
        if len(counted) == 1:
            mean, std = 0.0, 1.0
        for i in counted:
            advantages[i] = (float(rewards[i]) - mean) / (std + eps)
    return advantages


def valid_groups(
    rewards: Sequence[float],
    groups: Sequence[Hashable],
    judge_failed: Optional[Sequence[bool]] = None,
    exceed: Optional[Sequence[bool]] = None,
    *,
    mode: OverTurnMode = "code",
    min_std: float = 1e-4,
) -> list[bool]:
    """Per-sample keep flags of rejection ("dynamic") sampling; a whole group is kept or dropped.

    A group is dropped when any member's judge call failed, or when the unbiased std of its
    rewards is ``< min_std`` (all right or all wrong). ``code``: the std is over all members,
    exceed included (``get_valid_mask(..., exceed_mask=None)``); ``paper``: over the non-exceed
    members, and a group with no non-exceed member is dropped (it has no signal).

    A std over fewer than two rewards is undefined: ``torch.std`` gives nan and ``nan < 1e-4`` is
    False, so the seed keeps such a group; so do we (only reachable with ``rollout_n == 1``, or in
    ``paper`` mode with one completed member).
    """
    _check(rewards, groups, mode)
    failed = _flags(judge_failed, len(rewards), "judge_failed")
    exceeded = _flags(exceed, len(rewards), "exceed")
    keep = [False] * len(rewards)
    for members in _members(groups).values():
        counted = [i for i in members if mode == "code" or not exceeded[i]]
        _, std = _mean_std([float(rewards[i]) for i in counted])
        drop = any(failed[i] for i in members) or not counted or std < min_std
        for i in members:
            keep[i] = not drop
    return keep


# -- loss masks -----------------------------------------------------------------------------------
def trajectory_trainable(traj: Trajectory, *, ignore_exceed: bool = True, ignore_void: bool = False) -> bool:
    """False when the whole trajectory is masked out of the loss (exceed / void row zeroed)."""
    return row_trains(traj.termination, ignore_exceed=ignore_exceed, ignore_void=ignore_void)


def final_eos_mask(ids: Sequence[int], eos_id: int) -> list[int]:
    """1 on every token up to and including the last ``eos_id`` of ``ids``, 0 after it; all 0
    when there is none. The released code's response attention mask (``get_final_eos_mask(response,
    eos_token=[151645])``, ``verl/utils/torch_functional.py`` at 8654dbf), which the actor
    multiplies into the loss mask: nothing after the last ``<|im_end|>`` is trained."""
    last = max((i for i, token in enumerate(ids) if token == eos_id), default=-1)
    return [1] * (last + 1) + [0] * (len(ids) - last - 1)


def trainable_segments(
    traj: Trajectory, *, ignore_exceed: bool = True, ignore_void: bool = False
) -> list[tuple[Segment, bool]]:
    """Each segment with its loss-mask flag. A ``model`` segment trains when its row does (an
    exceed trajectory under ``ignore_exceed``, a void one under ``ignore_void``, trains nothing)
    and an ``<|im_end|>`` closes it: in its own text (the answer turn's EOS) or in a later segment
    (the injection after a tool call opens with one). ``env`` segments (prompt, observations,
    errors, image tokens) never train. So a last turn cut by the length limit, or the tool call an
    exceed episode ends on, is not trained even when its row is (``final_eos_mask`` is the
    token-level rule engines apply to the ids). Seed defaults: ignore_exceed=True, ignore_void=False."""
    row = trajectory_trainable(traj, ignore_exceed=ignore_exceed, ignore_void=ignore_void)
    closed = max((i for i, segment in enumerate(traj.segments) if IM_END in segment.text), default=-1)
    return [(segment, row and segment.producer == "model" and i <= closed) for i, segment in enumerate(traj.segments)]


# -- array helpers (numpy or torch) ------------------------------------------------------------
def _is_torch(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _as_float(x: Any, like: Any) -> Any:
    """``x`` as an array of ``like``'s kind, dtype (and device)."""
    if _is_torch(like):
        import torch

        return torch.as_tensor(x, device=like.device).to(like.dtype)
    import numpy as np

    return np.asarray(x, dtype=like.dtype)


def _as_array(x: Any) -> Any:
    if _is_torch(x):
        return x
    import numpy as np

    array = np.asarray(x)
    return array if np.issubdtype(array.dtype, np.floating) else array.astype(np.float64)


def _xp(x: Any) -> Any:
    if _is_torch(x):
        import torch

        return torch
    import numpy

    return numpy


def _masked(values: Any, mask: Any) -> Any:
    """``values * mask`` with masked-out entries forced to 0 first (nan/inf never leak)."""
    return _xp(values).where(mask != 0, values, 0.0) * mask


def masked_mean(values: Any, mask: Any, axis: Optional[int] = None, eps: float = MASKED_MEAN_EPS) -> Any:
    """``sum(values * mask) / (sum(mask) + eps)`` over ``axis`` (all when None), verl's
    ``masked_mean``: an all-masked slice gives 0. Masked entries never leak (nan/inf included)."""
    values = _as_array(values)
    mask = _as_float(mask, values)
    return _masked(values, mask).sum(axis=axis) / (mask.sum(axis=axis) + eps)


def kl_penalty(logprobs: Any, ref_logprobs: Any, kl_type: KLType = "low_var_kl") -> Any:
    """Per-token KL estimate between the policy and the reference (verl ``kl_penalty``)."""
    xp = _xp(logprobs)
    if kl_type == "kl":
        return logprobs - ref_logprobs
    if kl_type == "abs":
        return xp.abs(logprobs - ref_logprobs)
    if kl_type == "mse":
        return 0.5 * (logprobs - ref_logprobs) ** 2
    if kl_type == "low_var_kl":  # Schulman's k3, clamped as verl does
        log_ratio = ref_logprobs - logprobs
        return xp.clip(xp.exp(log_ratio) - log_ratio - 1, -10, 10)
    raise ValueError(f"kl_type must be low_var_kl, kl, abs or mse, got {kl_type!r}")


def _aggregate(loss_mat: Any, mask: Any, agg: str, normalizer: Optional[float]) -> Any:
    masked = _masked(loss_mat, mask)
    if agg == "token-mean":
        if normalizer is None:
            return masked.sum() / (mask.sum() + MASKED_MEAN_EPS)
        return masked.sum() / normalizer
    if agg == "seq-mean-token-mean":
        rows = masked.sum(axis=-1) / (mask.sum(axis=-1) + MASKED_MEAN_EPS)
    elif agg == "seq-mean-token-sum":
        rows = masked.sum(axis=-1)
    else:
        raise ValueError(f"agg must be token-mean, seq-mean-token-mean or seq-mean-token-sum, got {agg!r}")
    return rows.sum() / (rows.shape[0] if normalizer is None else normalizer)


def loss_normalizer(mask: Any, *, agg: LossAgg = "seq-mean-token-mean", mode: OverTurnMode = "code") -> float:
    """The outer denominator of ``agg`` over a whole mini-batch ``mask`` [batch, tokens].

    Pass it as ``policy_loss(normalizer=...)`` to every micro-batch of that mini-batch; the sum of
    the micro-batch losses is then exactly the mini-batch loss (gradient accumulation).

    * ``token-mean``: the number of trainable tokens (both modes);
    * ``seq-mean-*``: ``code`` counts every row (fully masked exceed rows included, as the seed's
      constant gradient-accumulation divisor), ``paper`` only rows with a trainable token
      (``sum_i M_i`` over completed samples). At least 1.
    """
    mask = _as_array(mask)
    counts = [float(c) for c in (mask != 0).sum(axis=-1).tolist()]
    if agg == "token-mean":
        return max(math.fsum(counts), 1.0)
    if agg not in ("seq-mean-token-mean", "seq-mean-token-sum"):
        raise ValueError(f"agg must be token-mean, seq-mean-token-mean or seq-mean-token-sum, got {agg!r}")
    if mode == "code":
        return float(max(len(counts), 1))
    if mode == "paper":
        return float(max(sum(1 for c in counts if c > 0), 1))
    raise ValueError(f"mode must be 'code' or 'paper', got {mode!r}")


# -- policy loss -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PolicyLossOutput:
    """Scalars (0-d arrays/tensors) of one policy-loss evaluation.

    ``loss`` is what to backpropagate: ``pg_loss`` (+ ``kl_coef * kl``) (- ``entropy_coef *
    entropy``); ``clip_fraction`` and ``approx_kl`` are detached-style metrics; ``kl`` and
    ``entropy`` are None when off / not given.
    """

    loss: Any
    pg_loss: Any
    clip_fraction: Any
    approx_kl: Any
    kl: Any = None
    entropy: Any = None


def policy_loss(
    logprobs: Any,
    old_logprobs: Any,
    advantages: Any,
    mask: Any,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.3,
    agg: LossAgg = "token-mean",
    ref_logprobs: Any = None,
    kl_coef: float = 0.0,
    kl_type: KLType = "low_var_kl",
    normalizer: Optional[float] = None,
    entropy: Any = None,
    entropy_coef: float = 0.0,
) -> PolicyLossOutput:
    """Clipped PPO/GRPO surrogate (verl ``compute_policy_loss``, DAPO clip-higher, no dual clip).

    Shapes: ``logprobs``/``old_logprobs``/``mask`` [batch, tokens]; ``advantages`` [batch] or
    [batch, tokens]. ``ratio = exp(logp - old)``, ``pg = max(-A*ratio, -A*clip(ratio, 1-clip_low,
    1+clip_high))``, aggregated over ``mask`` by ``agg``:

    * ``token-mean``: ``sum(pg*mask) / (sum(mask) + 1e-6)``;
    * ``seq-mean-token-mean``: mean over rows of the row's token mean (an all-masked row gives 0
      and still counts). With micro-batch 1 the seed's token-mean per micro-batch divided by the
      gradient-accumulation count is exactly this over the mini-batch, so it is the
      seed-equivalent choice (``RLConfig.loss_agg_mode``);
    * ``seq-mean-token-sum``: mean over rows of the row's token sum.

    ``normalizer`` replaces the outer denominator (see ``loss_normalizer``). The KL term
    (``kl_coef > 0`` and ``ref_logprobs`` given) and the entropy bonus use the same aggregation.
    ``clip_fraction``: share of masked tokens where the clipped branch is strictly larger;
    ``approx_kl``: masked token mean of ``old - logp``. Works on numpy and torch alike.
    """
    logprobs = _as_array(logprobs)
    old = _as_float(old_logprobs, logprobs)
    adv = _as_float(advantages, logprobs)
    mask = _as_float(mask, logprobs)
    if tuple(old.shape) != tuple(logprobs.shape) or tuple(mask.shape) != tuple(logprobs.shape):
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old.shape)} and mask {tuple(mask.shape)} must match"
        )
    if adv.ndim == 1:
        adv = adv[:, None]
    xp = _xp(logprobs)
    # Masked positions get log-ratio 0 so that padding (inf/nan) never reaches values or grads.
    log_ratio = xp.where(mask != 0, logprobs - old, 0.0)
    ratio = xp.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * xp.clip(ratio, 1.0 - clip_low, 1.0 + clip_high)
    pg = xp.maximum(unclipped, clipped)
    pg_loss = _aggregate(pg, mask, agg, normalizer)
    clip_fraction = masked_mean(_as_float(clipped > unclipped, logprobs), mask)
    approx_kl = masked_mean(-log_ratio, mask)
    loss, kl, entropy_mean = pg_loss, None, None
    if kl_coef > 0 and ref_logprobs is not None:
        ref = _as_float(ref_logprobs, logprobs)
        ref = xp.where(mask != 0, ref, logprobs)
        kl = _aggregate(kl_penalty(logprobs, ref, kl_type), mask, agg, normalizer)
        loss = loss + kl_coef * kl
    if entropy is not None:
        entropy_mean = _aggregate(_as_float(entropy, logprobs), mask, agg, normalizer)
        if entropy_coef:
            loss = loss - entropy_coef * entropy_mean
    if _is_torch(logprobs):
        clip_fraction, approx_kl = clip_fraction.detach(), approx_kl.detach()
    return PolicyLossOutput(loss, pg_loss, clip_fraction, approx_kl, kl, entropy_mean)


def entropy_from_logits(logits: Any) -> Any:
    """Per-position entropy of the softmax over the last axis (torch; verl's formula)."""
    import torch

    logits = torch.as_tensor(logits)
    probs = torch.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - (probs * logits).sum(dim=-1)
