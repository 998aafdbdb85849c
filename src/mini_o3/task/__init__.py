"""The engine-free Mini-o3 kit: protocol strings, tool-call parser, crop tool, the turn loop,
answer extraction, scorers, rewards and the GRPO maths. Pure Python + Pillow; imports nothing else of ours."""

from .answer import extract_answer
from .crop import Crop, CropError, crop, image_tokens, resize_initial, resize_observation
from .episode import Episode, EpisodeSample, Policy, PolicyOutput, PolicyRequest, run_episode
from .grounding import GroundingCall, GroundingError, has_tool_call, parse_grounding
from .grpo import (
    LossAgg, OverTurnMode, PolicyLossOutput, entropy_from_logits, group_advantages, kl_penalty,
    loss_normalizer, masked_mean, policy_loss, trainable_segments, trajectory_trainable, valid_groups,
)
from .limits import EVAL_LIMITS, TRAIN_LIMITS, ApproxTokenCounter, RolloutLimits, TokenCounter
from .prompts import DEFAULT_PROMPT_SET, MINI_O3_V1, PROMPT_SETS, PromptSet, get_prompt_set
from .reward import RewardWeights, compose_reward, format_reward
from .scoring import score_answer, score_free_form, score_mme_realworld, score_multiple_choice
from .trajectory import Segment, Trajectory, Turn
from .turn_text import answer_block, answer_turn, grounding_block, observation_source, think_block, tool_turn

__all__ = [
    "ApproxTokenCounter", "Crop", "CropError", "DEFAULT_PROMPT_SET", "EVAL_LIMITS", "Episode", "EpisodeSample", "GroundingCall",
    "GroundingError", "LossAgg", "MINI_O3_V1", "OverTurnMode", "PROMPT_SETS", "Policy",
    "PolicyLossOutput", "PolicyOutput", "PolicyRequest", "PromptSet", "RewardWeights",
    "RolloutLimits", "Segment", "TRAIN_LIMITS", "TokenCounter", "Trajectory", "Turn",
    "compose_reward", "crop", "entropy_from_logits", "extract_answer", "format_reward",
    "get_prompt_set", "group_advantages", "has_tool_call", "image_tokens", "kl_penalty",
    "loss_normalizer", "masked_mean", "parse_grounding", "policy_loss", "resize_initial",
    "resize_observation", "run_episode", "score_answer", "score_free_form", "score_mme_realworld",
    "score_multiple_choice", "trainable_segments", "trajectory_trainable", "valid_groups",
    "answer_block", "answer_turn", "grounding_block", "observation_source", "think_block", "tool_turn",
]
