"""RLConfig: seed defaults, documentation, derived limits/weights, overrides and their errors."""

from __future__ import annotations

import pytest

from mini_o3.rl import RLConfig
from mini_o3.rl.config import RLJudgeConfig
from mini_o3.task import EVAL_LIMITS, TRAIN_LIMITS, RewardWeights

#: The seed's RL run: README "Stage 2" overrides + fork yaml defaults (protocol §9, §10, §13,
#: §14, §16), README eval for val_n / val_do_sample (§17.1).
SEED = {
    "model_path": "Mini-o3/Mini-o3-7B-SFT",  # actor_rollout_ref.model.path
    "train_files": ["VisualProbe_train/train.json", "DeepEyes_train_4K/train.json"],
    "val_files": [
        "Vstar_Bench/val.json",
        "VisualProbe_Easy/val.json",
        "VisualProbe_Medium/val.json",
        "VisualProbe_Hard/val.json",
    ],
    "shuffle": True,  # data.shuffle
    "seed": 1,  # data.seed
    "train_batch_size": 256,  # data.train_batch_size
    "rollout_n": 16,  # rollout.n
    "ppo_mini_batch_size": 32,
    "ppo_micro_batch_size_per_gpu": 1,
    "log_prob_micro_batch_size_per_gpu": 1,
    "ppo_epochs": 1,
    "lr": 1e-6,
    "lr_scheduler": "constant",
    "lr_warmup_steps_ratio": 0.0,
    "adam_betas": (0.9, 0.999),
    "weight_decay": 1e-2,
    "grad_clip": 1.0,
    "clip_ratio_low": 0.2,
    "clip_ratio_high": 0.3,
    "loss_agg_mode": "seq-mean-token-mean",  # seed token-mean at micro-batch 1 (see module doc)
    "entropy_coeff": 0.0,
    "use_kl_loss": False,
    "kl_loss_coef": 0.0,
    "kl_loss_type": "low_var_kl",
    "adv_eps": 1e-6,
    "over_turn_mode": "code",
    "ignore_exceed": True,
    "ignore_void": False,
    "rejection_sample": True,
    "min_group_std": 1e-4,
    "max_num_gen_batches": 256,
    "max_turns": 6,  # max_generation_round
    "max_images": 12,  # limit_mm_per_prompt.image
    "val_max_turns": 12,
    "val_max_images": 12,
    "max_tokens_per_turn": 8192,  # response_length
    "max_context": 32768,  # max_total_response_length
    "context_margin": 2000,
    "max_prompt_length": 8192,
    "min_pixels": 40000,
    "max_pixels": 2000000,
    "relative_coordinates": True,
    "parser": "strict",
    "temperature": 1.0,
    "top_p": 1.0,
    "top_k": -1,
    "val_temperature": 1.0,
    "val_do_sample": True,
    "val_n": 32,
    "acc_reward_weight": 1.0,
    "format_reward_weight": 0.0,
    "tool_call_penalty": 0.0,
    "use_tool_reward_weight": 0.0,
    "extract_answer_tags": "strict",
    "prompt_set": "mini-o3-v1",
    "total_epochs": 100,
    "save_freq": 25,
    "test_freq": 5,
    "val_before_train": True,
    "val_only": False,
}

SEED_JUDGE = {
    "enabled": True,  # use_hybrid_reward_manager=True: every sample is judged
    "model": "gpt-4o-2024-11-20",
    "azure_endpoint_env": "END_POINT",
    "api_version_env": "API_VERSION",
    "azure_key_env": "API_KEY",
    "max_attempts": 5,
    "timeout_s": 120.0,
    "max_tokens": 16384,
    "temperature_step": 0.2,
    "retry_sleep_s": 1.0,
    "rate_limit_sleep_s": 3.0,
    "concurrency": 300,  # data.gpt_threads
    "failure_drops_group_in_training": True,
    "failure_scores_zero_in_validation": True,
}


def setting(config: RLConfig, key: str):
    """A setting by its flat key; a nested limit / sampling key (``RLConfig.FLAT_KEYS``) reads the
    value the engines use (``val_`` ones: the validation value after falling back)."""
    if key not in RLConfig.FLAT_KEYS:
        return getattr(config, key)
    parent, name = RLConfig.FLAT_KEYS[key].split(".")
    effective = {"val_rollout_limits": config.val_limits_config(), "val_sampling": config.val_sampling_config()}
    return getattr(effective.get(parent) or getattr(config, parent), name)


@pytest.mark.parametrize(("field", "value"), sorted(SEED.items()))
def test_defaults_are_the_seed(field, value):
    assert setting(RLConfig(), field) == value


@pytest.mark.parametrize(("field", "value"), sorted(SEED_JUDGE.items()))
def test_judge_defaults_are_the_seed(field, value):
    assert getattr(RLConfig().judge, field) == value


@pytest.mark.parametrize("model", [RLConfig, RLJudgeConfig])
def test_every_field_is_documented(model):
    for name, field in model.model_fields.items():
        assert field.description and len(field.description) > 10, name


def test_batch_arithmetic_of_the_seed():
    config = RLConfig()
    assert config.trajectories_per_step == 4096 and config.trajectories_per_mini_batch == 512
    assert config.optimizer_steps_per_rl_step == 8
    config.check_world_size(64)  # 8 trajectories per GPU per mini-batch
    config.check_world_size(1)
    assert not config.uses_reference_model
    assert RLConfig(use_kl_loss=True, kl_loss_coef=0.0).uses_reference_model is False
    assert RLConfig(use_kl_loss=True, kl_loss_coef=1e-3).uses_reference_model is True


def test_world_size_errors_name_the_batch():
    with pytest.raises(ValueError, match=r"train_batch_size \* rollout_n \(4096\) must be divisible by the 48 ranks"):
        RLConfig().check_world_size(48)
    with pytest.raises(ValueError, match=r"ppo_mini_batch_size \* rollout_n \(512\) must be divisible by the 1024"):
        RLConfig().check_world_size(1024)
    with pytest.raises(ValueError, match="multiple of ppo_micro_batch_size_per_gpu"):
        RLConfig(ppo_micro_batch_size_per_gpu=16).check_world_size(64)  # 8 per rank
    with pytest.raises(ValueError, match="world_size"):
        RLConfig().check_world_size(0)


def test_limits_and_reward_weights():
    config = RLConfig()
    assert config.train_limits() == TRAIN_LIMITS
    assert config.val_limits() == EVAL_LIMITS
    assert config.train_limits().context_cap == 30768
    assert config.reward_weights() == RewardWeights()
    custom = config.with_overrides(["max_turns=3", "val_max_images=32", "val_max_turns=32", "context_margin=100"])
    assert (custom.train_limits().max_turns, custom.train_limits().context_cap) == (3, 32668)
    assert (custom.val_limits().max_turns, custom.val_limits().max_images) == (32, 32)
    assert custom.val_limits().context_cap == 32668  # unset validation limits are the training values
    weights = config.with_overrides(["format_reward_weight=1.0", "tool_call_penalty=0.1"]).reward_weights()
    assert weights == RewardWeights(accuracy=1.0, format=1.0, tool_call_penalty=0.1, use_tool=0.0)


def test_validation_settings_fall_back_to_the_training_values():
    config = RLConfig().with_overrides(["max_images=4", "max_tokens_per_turn=64", "temperature=0.7", "top_k=20"])
    assert (config.val_limits().max_images, config.val_limits().max_tokens_per_turn) == (4, 64)
    assert config.val_limits().max_turns == 12  # set: the seed's validation turns
    assert config.val_sampling_config() == config.sampling.model_copy(update={"temperature": 0.7, "top_k": 20})
    config = config.with_overrides(["val_temperature=0", "val_max_context=8192", "val_do_sample=false"])
    assert (config.val_sampling_config().temperature, config.sampling.temperature) == (0.0, 0.7)
    assert (config.val_limits().max_context, config.train_limits().max_context) == (8192, 32768)
    assert config.val_sampling_config().do_sample is False and config.sampling.do_sample is True


def test_flat_keys_are_the_nested_settings():
    flat = RLConfig(max_turns=3, val_max_turns=5, temperature=0.5, val_top_p=0.9)
    nested = RLConfig().with_overrides(["rollout_limits.max_turns=3", "val_rollout_limits.max_turns=5",
                                        "sampling.temperature=0.5", "val_sampling.top_p=0.9"])
    assert flat == nested == RLConfig.model_validate(flat.model_dump())
    assert (flat.train_limits().max_turns, flat.val_limits().max_turns, flat.val_sampling_config().top_p) == (3, 5, 0.9)
    with pytest.raises(ValueError, match=r"unknown RL setting 'max_turn'.*did you mean max_turns"):
        RLConfig().with_overrides(["max_turn=3"])


def test_overrides():
    config = RLConfig().with_overrides(
        [
            "rollout_n=4",
            "train_batch_size=8",
            "ppo_mini_batch_size=4",
            "lr=2e-6",
            "adam_betas=[0.9, 0.99]",
            "train_files=[a/train.json]",
            "judge.enabled=false",
            "judge.concurrency=8",
            "over_turn_mode=paper",
            "data_root=/data",
        ]
    )
    assert (config.rollout_n, config.train_batch_size, config.ppo_mini_batch_size) == (4, 8, 4)
    assert config.lr == 2e-6 and config.adam_betas == (0.9, 0.99)
    assert config.train_files == ["a/train.json"] and config.data_root == "/data"
    assert config.judge.enabled is False and config.judge.concurrency == 8
    assert config.over_turn_mode == "paper"
    assert RLConfig().rollout_n == 16  # the original is untouched


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("rollout_m=4", r"unknown RL setting 'rollout_m'.*did you mean rollout_n"),
        ("judge.modle=x", r"unknown RL setting 'judge.modle'.*did you mean model"),
        ("rollout_n=0", "rollout_n"),
        ("train_batch_size=100", r"train_batch_size \(100\) must be a multiple of ppo_mini_batch_size \(32\)"),
        ("ppo_micro_batch_size_per_gpu=3", r"512 trajectories.*multiple of ppo_micro_batch_size_per_gpu \(3\)"),
        ("clip_ratio_low=1.0", "clip_ratio_low"),
        ("loss_agg_mode=token-sum", "loss_agg_mode"),
        ("over_turn_mode=both", "over_turn_mode"),
        ("kl_loss_type=full", "kl_loss_type"),
        ("top_k=0", "top_k must be -1"),
        ("top_p=0", "top_p"),
        ("min_pixels=3000000", r"min_pixels \(3000000\) exceeds max_pixels"),
        ("context_margin=40000", r"context_margin \(40000\) must be < max_context"),
        ("val_context_margin=40000", r"context_margin \(40000\) must be < max_context"),
        ("val_top_k=0", "top_k must be -1"),
        ("val_max_turns=0", "max_turns"),
        ("save_freq=0", "save_freq and test_freq"),
        ("train_files=[]", "train_files must name"),
        ("adam_betas=[0.9, 1.0]", "adam_betas"),
        ("judge.max_attempts=0", "judge.max_attempts"),
        ("lr=-1", "lr"),
    ],
)
def test_bad_values_are_clear_errors(assignment, message):
    with pytest.raises(ValueError, match=message):
        RLConfig().with_overrides([assignment])


def test_unknown_constructor_keys_are_rejected():
    with pytest.raises(ValueError, match="extra"):
        RLConfig(n_samples=4)
