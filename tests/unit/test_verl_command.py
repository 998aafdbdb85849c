"""The verl config builder: its overrides compose against verl's own ``ppo_trainer`` config (a
renamed key fails here), values land where the table says, and bad settings are refused."""

from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from mini_o3.rl import RLConfig
from mini_o3.rl.verl import command

pytestmark = pytest.mark.slow  # hydra composition of verl's config takes a few seconds


def _build(tmp_path: Path, config: RLConfig = RLConfig(), **kw) -> list[str]:
    files = command.write_files(config, tmp_path)
    return command.overrides(config, model="/models/sft", train_files=[tmp_path / "train.parquet"],
                             val_files=kw.pop("val_files", [tmp_path / "val.parquet"]), files=files,
                             out_dir=tmp_path, **kw)


def _compose(overrides: list[str]):
    with initialize_config_module("verl.trainer.config", version_base=None):
        return compose("ppo_trainer", overrides=overrides)


def test_seed_overrides_compose_and_land(tmp_path):
    cfg = _compose(_build(tmp_path, nnodes=8, n_gpus_per_node=8))
    a, r = cfg.actor_rollout_ref.actor, cfg.actor_rollout_ref.rollout
    assert (a.optim.lr, a.ppo_mini_batch_size, a.clip_ratio_low, a.clip_ratio_high) == (1e-6, 32, 0.2, 0.3)
    assert list(a.optim.betas) == [0.9, 0.999] and a.loss_agg_mode == "seq-mean-token-mean" and a.use_kl_loss is False
    assert (r.name, r.mode, r.n, r.gpu_memory_utilization, r.limit_images, r.max_model_len) == ("vllm", "async", 16, 0.6, 12, 32768)
    assert (r.val_kwargs.n, r.val_kwargs.do_sample, r.multi_turn.format) == (32, True, "minio3_grounding")
    assert r.agent.default_agent_loop == "minio3_train" and r.multi_turn.enable is True
    assert (cfg.data.train_batch_size, cfg.data.max_prompt_length, cfg.data.max_response_length) == (256, 8192, 32768)
    assert cfg.data.train_files == [str(tmp_path / "train.parquet")]
    assert cfg.algorithm.adv_estimator == "grpo_minio3" and cfg.algorithm.filter_groups.enable is False
    t = cfg.trainer
    assert (t.nnodes, t.n_gpus_per_node, t.save_freq, t.test_freq, t.total_epochs) == (8, 8, 25, 5, 100)
    assert t.default_local_dir == str(tmp_path / "save")
    # Every checkpoint also holds the merged HF policy (global_step_N/actor/huggingface), the folder the
    # RL stage hands on and evaluation serves; resuming loads the FSDP shards only.
    assert list(a.checkpoint.save_contents) == ["model", "optimizer", "extra", "hf_model"]
    assert list(a.checkpoint.load_contents) == ["model", "optimizer", "extra"]
    # Per-step metrics go to a file the RL stage reads; the path reaches the trainer actor through
    # ray.init's runtime_env (actors on a Ray cluster inherit no driver env).
    assert list(t.logger) == ["console", "file"]
    env = cfg.ray_kwargs.ray_init.runtime_env.env_vars
    assert env.VERL_FILE_LOGGER_PATH == str(tmp_path / "verl" / "metrics.jsonl")
    assert t.v1.sampler.custom_sampler.name == "MiniO3ReplayBuffer"
    assert Path(t.v1.sampler.custom_sampler.path).is_file() and Path(cfg.reward.custom_reward_function.path).is_file()
    assert dict(t.v1.sampler.sampler_kwargs) == {"enable": True, "over_turn_mode": "code", "min_group_std": 1e-4,
                                                 "train_batch_size": 256}
    kwargs = cfg.reward.custom_reward_function.reward_kwargs
    assert kwargs.acc_reward_weight == 1.0 and kwargs.extract_answer_tags == "strict"
    assert RLConfig().judge.model_validate_json(kwargs.judge) == RLConfig().judge
    # The typed sections verl instantiates accept the values.
    from verl.utils.config import omega_conf_to_dataclass

    rollout = omega_conf_to_dataclass(r)
    assert rollout.multi_turn.max_assistant_turns == 12 and rollout.prompt_length == 8192
    OmegaConf.resolve(cfg)


def test_changed_settings_and_no_validation(tmp_path):
    config = RLConfig().with_overrides(["over_turn_mode=paper", "parser=lenient", "judge.enabled=false", "lr=2e-6",
                                        "checkpoint_dir=/ckpt", "val_do_sample=false", "rejection_sample=false"])
    cfg = _compose(_build(tmp_path, config, val_files=[]))
    assert cfg.algorithm.adv_estimator == "grpo_minio3_paper"
    assert cfg.actor_rollout_ref.rollout.multi_turn.format == "minio3_grounding_lenient"
    assert cfg.actor_rollout_ref.rollout.val_kwargs.temperature == 0.0
    assert cfg.reward.custom_reward_function.reward_kwargs.judge is None
    assert cfg.trainer.default_local_dir == "/ckpt" and cfg.trainer.test_freq == -1 and cfg.trainer.val_before_train is False
    assert cfg.trainer.v1.sampler.sampler_kwargs.enable is False


def test_validation_limits_and_sampling_fall_back_to_training(tmp_path):
    config = RLConfig().with_overrides(["top_p=0.9", "top_k=20", "val_top_k=5", "max_context=16384",
                                        "val_max_context=20000", "do_sample=false"])
    r = _compose(_build(tmp_path, config)).actor_rollout_ref.rollout
    assert (r.temperature, r.top_p, r.top_k) == (0.0, 0.9, 20)  # do_sample=false: verl's greedy
    assert (r.val_kwargs.temperature, r.val_kwargs.top_p, r.val_kwargs.top_k) == (1.0, 0.9, 5)
    assert r.max_model_len == 20000  # the larger context of the two splits


def test_a_misspelled_key_fails_composition(tmp_path):
    bad = [o.replace("clip_ratio_high=", "clip_ratio_hihg=") for o in _build(tmp_path)]
    with pytest.raises(ConfigCompositionException, match="clip_ratio_hihg"):
        _compose(bad)


def test_generated_yaml_files(tmp_path):
    files = command.write_files(RLConfig().with_overrides(["max_turns=4", "min_pixels=3136"]), tmp_path)
    loops = {entry["name"]: entry for entry in yaml.safe_load(files["agent_loops.yaml"].read_text())}
    assert loops["minio3_train"]["max_turns"] == 4 and loops["minio3_val"]["max_turns"] == 12
    assert loops["minio3_val"]["split"] == "val" and loops["minio3_train"]["_target_"] == command.AGENT_LOOP_CLASS
    assert loops["minio3_train"]["context_margin"] == 2000 and loops["minio3_train"]["min_pixels"] == 3136
    (tool,) = yaml.safe_load(files["crop_tool.yaml"].read_text())["tools"]
    assert tool["class_name"] == command.TOOL_CLASS and tool["config"]["type"] == "native"
    from verl.tools.tool_registry import initialize_tools_from_config

    (crop,) = initialize_tools_from_config(str(files["crop_tool.yaml"]))
    assert crop.name == "crop" and crop.min_pixels == 3136


@pytest.mark.parametrize(
    ("sets", "kw", "message"),
    [
        ([], {"n_gpus_per_node": 0}, "n_gpus_per_node"),
        ([], {"nnodes": 3, "n_gpus_per_node": 7}, "divisible"),
        (["adv_eps=1e-5"], {}, "adv_eps"),
        (["over_turn_mode=paper", "ignore_exceed=false"], {}, "ignore_exceed"),
        (["val_max_pixels=1000000"], {}, "one crop tool serves both splits"),
        (["val_relative_coordinates=false"], {}, "leave val_relative_coordinates unset"),
    ],
)
def test_settings_verl_cannot_express_are_refused(sets, kw, message):
    with pytest.raises(ValueError, match=message):
        command.check(RLConfig().with_overrides(sets), **{"nnodes": 1, "n_gpus_per_node": 8, **kw})


def test_the_documented_smoke_run_composes(tmp_path):
    from mini_o3.rl.verl import SMOKE_RL_OVERRIDES, SMOKE_VERL_OVERRIDES

    config = RLConfig().with_overrides(list(SMOKE_RL_OVERRIDES))
    cfg = _compose(_build(tmp_path, config, nnodes=1, n_gpus_per_node=1) + list(SMOKE_VERL_OVERRIDES))
    assert cfg.actor_rollout_ref.model.lora_rank == 8 and cfg.trainer.total_training_steps == 1
    assert cfg.actor_rollout_ref.rollout.n == 2 and cfg.data.max_response_length == 8192


@pytest.mark.parametrize(("sets", "kept"), [([], 2), (["max_actor_ckpt_to_keep=5"], 5),
                                             (["max_actor_ckpt_to_keep=null"], None)])
def test_checkpoint_retention_reaches_verl(tmp_path, sets, kept):
    """verl keeps every checkpoint unless ``trainer.max_actor_ckpt_to_keep`` is set: its ppo_trainer.yaml
    (verl 0.9.1 verl/trainer/config/ppo_trainer.yaml:220) defaults it to null, and the V1 trainer
    passes it to the actor's save_checkpoint (verl/trainer/ppo/v1/trainer_base.py:964-979)."""
    cfg = _compose(_build(tmp_path, RLConfig().with_overrides(sets)))
    assert cfg.trainer.max_actor_ckpt_to_keep == kept


@pytest.mark.parametrize(("keep", "peak", "steady"), [(1, 2, 1), (2, 2, 2), (3, 3, 3), (None, 6, 6)])
def test_verl_retention_peak_is_what_the_sizing_docs_assume(tmp_path, keep, peak, steady):
    """The chart README sizes the work volume for max(N, 2) checkpoints. verl 0.9.1's checkpoint
    manager (verl/utils/checkpoint/checkpoint_manager.py:166-194) prunes to N - 1 before a save
    (ensure_checkpoint_capacity, nothing for N = 1) and to N after it (register_checkpoint); run its
    own methods over six saves and count the folders on disk."""
    from verl.utils.checkpoint.checkpoint_manager import BaseCheckpointManager

    manager = object.__new__(BaseCheckpointManager)
    manager.previous_saved_paths = []
    most = 0
    for step in range(1, 7):
        manager.ensure_checkpoint_capacity(keep)
        path = tmp_path / f"global_step_{step}" / "actor"
        path.mkdir(parents=True)  # the save writes its shards here
        most = max(most, sum(1 for p in tmp_path.glob("global_step_*/actor") if p.exists()))
        manager.register_checkpoint(str(path), keep)
    assert most == peak
    assert sorted(p.parent.name for p in tmp_path.glob("global_step_*/actor")) == [
        f"global_step_{s}" for s in range(7 - steady, 7)]
