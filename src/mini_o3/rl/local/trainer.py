"""The GRPO update of the seed: old log-probs recomputed before the update, then per mini-batch
(``ppo_mini_batch_size`` prompts × ``rollout_n`` trajectories) micro-batches of
``ppo_micro_batch_size_per_gpu`` trajectories with gradient accumulation, grad-norm clip and one
AdamW step; ``ppo_epochs`` passes. The loss is the task kit's ``policy_loss`` with the mini-batch
``loss_normalizer``, so the accumulated micro-batch losses are exactly the mini-batch loss.

Only the positions predicting a trainable token are sent through the LM head
(``logits_to_keep``), so the log-probs are 1-D per trajectory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mini_o3.task.grpo import (
    PolicyLossOutput,
    entropy_from_logits,
    loss_normalizer,
    policy_loss,
)

from ..config import RLConfig
from .batch import TrainSample
from .timers import Timers


@dataclass(frozen=True)
class LossSettings:
    """The loss knobs of ``RLConfig`` that the update needs."""

    clip_low: float = 0.2
    clip_high: float = 0.3
    agg: str = "seq-mean-token-mean"
    mode: str = "code"
    entropy_coef: float = 0.0
    kl_coef: float = 0.0  # > 0 only with a reference policy (``RLConfig.uses_reference_model``)
    kl_type: str = "low_var_kl"

    @classmethod
    def from_config(cls, config: RLConfig) -> LossSettings:
        return cls(config.clip_ratio_low, config.clip_ratio_high, config.loss_agg_mode,
                   config.over_turn_mode, config.entropy_coeff,
                   config.kl_loss_coef if config.uses_reference_model else 0.0, config.kl_loss_type)


def sequence_logprobs(model: Any, sample: TrainSample, device: str, *, with_entropy: bool = False) -> tuple[Any, Any]:
    """Log-probs (and entropies) of ``sample``'s trainable tokens under ``model`` (temperature 1)."""
    import torch

    positions = sample.target_positions()
    if positions.numel() == 0:
        empty = torch.zeros(0, device=device)
        return empty, (empty if with_entropy else None)
    dtype = next(model.parameters()).dtype
    kwargs: dict[str, Any] = {}
    if sample.pixel_values is not None:
        kwargs.update(pixel_values=sample.pixel_values.to(device, dtype), image_grid_thw=sample.image_grid_thw.to(device))
    ids = sample.input_ids.to(device)[None]
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), logits_to_keep=positions.to(device),
                use_cache=False, **kwargs)
    logits = out.logits[0].float()
    targets = sample.targets().to(device)
    logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = entropy_from_logits(logits.detach())
    return logprobs, entropy


def compute_old_logprobs(model: Any, samples: Sequence[TrainSample], device: str, *, into: str = "old_logprobs") -> None:
    """Fill ``sample.<into>`` (``old_logprobs``; ``ref_logprobs`` for the reference) with
    ``model``'s log-probs of the trainable tokens (no grad)."""
    import torch

    was_training = model.training
    model.eval()
    with torch.no_grad():
        for sample in samples:
            setattr(sample, into, sequence_logprobs(model, sample, device)[0].detach())
    model.train(was_training)


def pad_rows(rows: Sequence[Any], device: str | None = None) -> tuple[Any, Any]:
    """Right-pad 1-D tensors to [len(rows), max_len]; returns (values, mask)."""
    import torch

    width = max((int(r.numel()) for r in rows), default=0)
    ref = rows[0] if rows else torch.zeros(0)
    values = torch.zeros(len(rows), width, dtype=torch.float32, device=device or ref.device)
    mask = torch.zeros(len(rows), width, dtype=torch.float32, device=device or ref.device)
    for i, row in enumerate(rows):
        n = int(row.numel())
        if n:
            values[i, :n] = row.to(values.device, torch.float32)
            mask[i, :n] = 1.0
    return values, mask


def mini_batch_normalizer(samples: Sequence[TrainSample], settings: LossSettings) -> float:
    """``loss_normalizer`` over a mini-batch's trainable-token masks."""
    import torch

    _, mask = pad_rows([torch.ones(s.num_trainable) for s in samples], device="cpu")
    return loss_normalizer(mask, agg=settings.agg, mode=settings.mode)  # type: ignore[arg-type]


def micro_batch_loss(
    logprobs: Sequence[Any],
    old_logprobs: Sequence[Any],
    advantages: Sequence[float],
    settings: LossSettings,
    normalizer: float,
    entropies: Sequence[Any] | None = None,
    ref_logprobs: Sequence[Any] | None = None,
) -> PolicyLossOutput:
    """``policy_loss`` over one micro-batch of 1-D per-trajectory log-probs (with the KL term to
    ``ref_logprobs`` when ``settings.kl_coef`` > 0)."""
    import torch

    values, mask = pad_rows(list(logprobs))
    # Keep the graph: pad by concatenation instead of copying into a fresh tensor.
    width = values.shape[1]
    stacked = torch.stack([torch.cat([lp, lp.new_zeros(width - lp.numel())]) for lp in logprobs])
    old, _ = pad_rows(list(old_logprobs), device=str(stacked.device))
    entropy = pad_rows(list(entropies), device=str(stacked.device))[0] if entropies is not None else None
    adv = torch.tensor(list(advantages), dtype=torch.float32, device=stacked.device)
    ref = None
    if settings.kl_coef > 0:
        if ref_logprobs is None or any(r is None for r in ref_logprobs):
            raise ValueError("the KL loss is on (kl_coef > 0) but a sample has no reference log-probs")
        ref = pad_rows(list(ref_logprobs), device=str(stacked.device))[0]
    return policy_loss(
        stacked, old, adv, mask.to(stacked.device),
        clip_low=settings.clip_low, clip_high=settings.clip_high, agg=settings.agg,  # type: ignore[arg-type]
        normalizer=normalizer, entropy=entropy, entropy_coef=settings.entropy_coef,
        ref_logprobs=ref, kl_coef=settings.kl_coef, kl_type=settings.kl_type,  # type: ignore[arg-type]
    )


def update_policy(
    model: Any,
    optimizer: Any,
    samples: Sequence[TrainSample],
    *,
    settings: LossSettings,
    mini_batch_size: int,
    micro_batch_size: int,
    ppo_epochs: int,
    grad_clip: float,
    device: str,
    timers: Timers | None = None,
) -> dict[str, float]:
    """Run the PPO epochs over ``samples`` (grouped, in order); returns mean metrics."""
    import torch

    timers = timers or Timers()
    model.train()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def record(name: str, value: float) -> None:
        sums[name] = sums.get(name, 0.0) + float(value)
        counts[name] = counts.get(name, 0) + 1

    for _ in range(ppo_epochs):
        for start in range(0, len(samples), mini_batch_size):
            mini = samples[start:start + mini_batch_size]
            normalizer = mini_batch_normalizer(mini, settings)
            optimizer.zero_grad(set_to_none=True)
            mini_loss, mini_kl = 0.0, 0.0
            for m in range(0, len(mini), micro_batch_size):
                micro = list(mini[m:m + micro_batch_size])
                if all(s.num_trainable == 0 for s in micro):
                    # Fully masked (exceed, or no <|im_end|>): loss and gradient 0, not computed; the
                    # seed still logs this micro-batch's (zero) metrics.
                    for name in ("actor/clip_fraction", "actor/approx_kl", "actor/entropy"):
                        record(name, 0.0)
                    timers.add("forward_backward", 0.0)
                    continue
                with timers.time("forward_backward"):
                    rows = [sequence_logprobs(model, s, device, with_entropy=True) for s in micro]
                    out = micro_batch_loss([r[0] for r in rows], [s.old_logprobs for s in micro],
                                           [s.advantage for s in micro], settings, normalizer,
                                           entropies=[r[1] for r in rows],
                                           ref_logprobs=[s.ref_logprobs for s in micro] if settings.kl_coef > 0 else None)
                    out.loss.backward()
                mini_loss += float(out.pg_loss.detach())
                if out.kl is not None:
                    mini_kl += float(out.kl.detach())
                record("actor/clip_fraction", out.clip_fraction)
                record("actor/approx_kl", out.approx_kl)
                if out.entropy is not None:
                    ent, mask = pad_rows([r[1] for r in rows])  # token mean over this micro-batch
                    record("actor/entropy", float((ent * mask).sum() / max(mask.sum(), 1.0)))
            with timers.time("optimizer"):
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                if torch.isfinite(grad_norm):
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            record("actor/pg_loss", mini_loss)
            if settings.kl_coef > 0:
                record("actor/kl_loss", mini_kl)  # the mini-batch's KL term (before kl_coef)
            record("actor/grad_norm", float(grad_norm))
    return {name: sums[name] / counts[name] for name in sums}
