"""Trajectory → training tensors: ids from the segments, loss mask from segment ownership.

Model segments contribute the ids the policy generated (re-tokenised text when it reported none),
env segments their tokenised text. Each ``<|image_pad|>`` is expanded to the image's token count
(``grid_thw.prod() // merge**2``) with mask 0. ``loss_mask[t] == 1`` iff token ``t`` was generated,
its trajectory trains (``trainable_segments``: exceed rows all 0 under ``ignore_exceed``) and it
is not after the sequence's last ``<|im_end|>`` id (``final_eos_mask``, the released code's
attention mask): a last turn cut by the length limit gets no loss. Vision pads a model happened
to generate are dropped (no image stands behind them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mini_o3.task import Trajectory
from mini_o3.task.grpo import final_eos_mask, trainable_segments
from mini_o3.task.prompts import IM_END

IMAGE_PAD = "<|image_pad|>"


@dataclass
class TrainSample:
    """One trajectory ready for a forward pass (tensors on CPU; moved at use)."""

    input_ids: Any  # LongTensor [L]
    loss_mask: Any  # FloatTensor [L]; 1 on trainable generated tokens
    pixel_values: Any  # FloatTensor [patches, dim] or None
    image_grid_thw: Any  # LongTensor [images, 3] or None
    group: str = ""
    reward: float = 0.0
    advantage: float = 0.0
    old_logprobs: Any = None  # FloatTensor [n_trainable], filled before the update
    ref_logprobs: Any = None  # FloatTensor [n_trainable] under the reference policy (KL loss only)

    @property
    def num_trainable(self) -> int:
        return int(self.loss_mask.sum().item())

    def target_positions(self) -> Any:
        """Positions whose logits predict a trainable token (``t - 1`` for each trainable ``t``)."""
        import torch

        return torch.nonzero(self.loss_mask[1:], as_tuple=False).flatten()

    def targets(self) -> Any:
        return self.input_ids[1:][self.loss_mask[1:] != 0]


def build_sample(
    traj: Trajectory,
    processor: Any,
    *,
    ignore_exceed: bool = True,
    ignore_void: bool = False,
    mask_cut_final_turn: bool = True,
    group: str = "",
    reward: float = 0.0,
    advantage: float = 0.0,
) -> TrainSample:
    """The ids, loss mask and image tensors of ``traj``; errors name the trajectory."""
    import torch

    tokenizer = processor.tokenizer
    pad_id = tokenizer.convert_tokens_to_ids(IMAGE_PAD)
    vision_ids = {pad_id, tokenizer.convert_tokens_to_ids("<|video_pad|>")}
    grid: torch.Tensor | None = None
    pixel_values: torch.Tensor | None = None
    counts: list[int] = []
    if traj.images:
        vision = processor.image_processor(images=list(traj.images), return_tensors="pt")
        pixel_values, grid = vision["pixel_values"], vision["image_grid_thw"]
        merge = int(getattr(processor.image_processor, "merge_size", 2))
        counts = [int(g.prod().item()) // (merge * merge) for g in grid]
    ids: list[int] = []
    mask: list[int] = []
    image = 0
    for segment, trains in trainable_segments(traj, ignore_exceed=ignore_exceed, ignore_void=ignore_void):
        if segment.producer == "model" and segment.token_ids is not None:
            seg_ids = list(segment.token_ids)
        else:
            seg_ids = tokenizer.encode(segment.text, add_special_tokens=False)
        for token in seg_ids:
            if token == pad_id and segment.producer == "env":
                if image >= len(counts):
                    raise ValueError(f"trajectory {traj.sample_id!r}: more {IMAGE_PAD} tokens than its {len(counts)} images")
                ids.extend([pad_id] * counts[image])
                mask.extend([0] * counts[image])
                image += 1
            elif token in vision_ids and segment.producer == "model":
                continue  # a generated vision pad has no image behind it (its text was dropped too)
            else:
                ids.append(token)
                mask.append(1 if trains else 0)
    if image != len(counts):
        raise ValueError(f"trajectory {traj.sample_id!r}: {image} {IMAGE_PAD} tokens for {len(counts)} images")
    if mask_cut_final_turn:
        mask = [m * e for m, e in zip(mask, final_eos_mask(ids, tokenizer.convert_tokens_to_ids(IM_END)))]
    return TrainSample(
        input_ids=torch.tensor(ids, dtype=torch.long),
        loss_mask=torch.tensor(mask, dtype=torch.float32),
        pixel_values=pixel_values,
        image_grid_thw=grid,
        group=group,
        reward=reward,
        advantage=advantage,
    )
