"""``RLConfig`` → the verl 0.9.1 command: hydra overrides plus the tool and agent-loop yaml files.

Every key is derived from ``RLConfig`` (seed values by default); ``check`` rejects settings verl
cannot express. ``tests/unit/test_verl_command.py`` composes the overrides against verl's own
``ppo_trainer`` config, so a renamed key fails the build.

=============================  ================================================================
RLConfig field                 verl key
=============================  ================================================================
model (argument)               actor_rollout_ref.model.path
train / val (arguments)        data.train_files / data.val_files (converted parquet)
shuffle, seed                  data.shuffle, data.seed
prompt_set                     agent-loop kwarg ``prompt_set`` (prompt text, observations)
train_batch_size               data.train_batch_size
rollout_n                      actor_rollout_ref.rollout.n
ppo_mini_batch_size            actor_rollout_ref.actor.ppo_mini_batch_size
ppo_micro_batch_size_per_gpu   actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu
log_prob_micro_batch_size_...  actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu
ppo_epochs                     actor_rollout_ref.actor.ppo_epochs
lr, lr_scheduler               actor_rollout_ref.actor.optim.lr, .optim.lr_scheduler_type
lr_warmup_steps_ratio          actor_rollout_ref.actor.optim.lr_warmup_steps_ratio
adam_betas, weight_decay       actor_rollout_ref.actor.optim.betas, .optim.weight_decay
grad_clip                      actor_rollout_ref.actor.grad_clip
clip_ratio_low / _high         actor_rollout_ref.actor.clip_ratio_low / clip_ratio_high (0.2/0.3)
loss_agg_mode                  actor_rollout_ref.actor.loss_agg_mode (same names; verl's
                               seq-mean-* divide by rows with a trainable token, i.e. our
                               ``loss_normalizer(mode="paper")``: see README)
entropy_coeff                  actor_rollout_ref.actor.entropy_coeff
use_kl_loss, kl_loss_coef/type actor_rollout_ref.actor.use_kl_loss / kl_loss_coef / kl_loss_type
adv_eps                        fixed 1e-6 in verl (other values are rejected)
over_turn_mode                 algorithm.adv_estimator = grpo_minio3 (code) | grpo_minio3_paper
ignore_exceed / ignore_void    agent-loop kwargs (the loop zeroes the response mask)
mask_cut_final_turn            agent-loop kwarg (false: the tail after the last <|im_end|> trains)
rejection_sample, min_group_   trainer.v1.sampler.custom_sampler = MiniO3ReplayBuffer,
std                            sampler_kwargs.{enable, min_group_std, over_turn_mode}
max_num_gen_batches            not enforced: verl's V1 buffer refills without a cap
max_turns / val_max_turns      agent loops minio3_train / minio3_val (``max_turns``), rows
                               routed by ``agent_name``; multi_turn.max_assistant_turns = max
max_images / val_max_images    agent-loop ``max_images``; +rollout.limit_images = max of both
                               (a RolloutConfig field missing from the yaml: added with +)
max_tokens_per_turn            per-turn ``max_tokens`` of the agent loop
max_context, context_margin    agent loops; data.max_response_length = rollout.max_model_len
                               = max_context (the larger of train / val)
max_prompt_length              data.max_prompt_length (+ data.filter_overlong_prompts=True)
min_pixels, max_pixels         agent loops and CropTool config (task-kit resizes; one tool for
                               both splits: val_ values must equal the training ones)
relative_coordinates           agent loops and CropTool config (likewise)
parser                         multi_turn.format = minio3_grounding | minio3_grounding_lenient
temperature, top_p, top_k      actor_rollout_ref.rollout.temperature / top_p / top_k
(do_sample)                    (False: temperature 0, verl's greedy)
val_temperature, val_do_sample actor_rollout_ref.rollout.val_kwargs.temperature / do_sample
val_top_p, val_top_k           .val_kwargs.top_p / top_k (unset: the training values)
val_n                          actor_rollout_ref.rollout.val_kwargs.n
reward weights, extract_...    reward.custom_reward_function.reward_kwargs.*
judge                          reward_kwargs.judge (RLJudgeConfig JSON; secrets stay in the env)
total_epochs, total_training_  trainer.total_epochs, trainer.total_training_steps
steps
save_freq, test_freq           trainer.save_freq, trainer.test_freq
val_before_train, val_only     trainer.val_before_train, trainer.val_only
checkpoint_dir                 trainer.default_local_dir (relative: under out_dir)
max_actor_ckpt_to_keep         trainer.max_actor_ckpt_to_keep (older global_step_* removed)
(HF policy per checkpoint)     actor.checkpoint.save_contents += hf_model: merged HF weights with
                               config and processor in ``global_step_N/actor/huggingface`` (what
                               evaluation and the next stage load); load_contents = the shards
nnodes, n_gpus_per_node (args) trainer.nnodes, trainer.n_gpus_per_node
(metrics)                      trainer.logger=[console,file], VERL_FILE_LOGGER_PATH (ray_init
                               runtime_env) = out_dir/verl/metrics.jsonl
(seed engine settings)         rollout.name=vllm, mode=async, tensor_model_parallel_size=1,
                               gpu_memory_utilization=0.6, max_num_batched_tokens=32768,
                               enable_chunked_prefill=False, enable_prefix_caching=True;
                               model.use_remove_padding, enable_gradient_checkpointing
=============================  ================================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from ..config import RLConfig, RLJudgeConfig
from .names import PARSER_NAMES, TRAIN_AGENT, VAL_AGENT

PACKAGE_DIR = Path(__file__).resolve().parent
ENTRYPOINT = ["python", "-m", "mini_o3.rl.verl.main"]
TOOL_CLASS = "mini_o3.rl.verl.tool.CropTool"
AGENT_LOOP_CLASS = "mini_o3.rl.verl.agent_loop.MiniO3AgentLoop"
SAMPLER_CLASS = "MiniO3ReplayBuffer"
PARSERS = {mode: name for name, mode in PARSER_NAMES.items()}
#: Limits the crop tool applies (one tool serves both splits).
CROP_TOOL_LIMITS = ("min_pixels", "max_pixels", "relative_coordinates")
#: verl's per-step metrics (its ``file`` logger: ``{"step": N, "data": {name: value}}`` lines), under out_dir
METRICS_FILE = "verl/metrics.jsonl"


def check(config: RLConfig, *, nnodes: int, n_gpus_per_node: int) -> None:
    """Raise ``ValueError`` for settings the verl engine cannot express (each names the field)."""
    if nnodes < 1:
        raise ValueError(f"nnodes must be >= 1, got {nnodes}")
    if n_gpus_per_node < 1:
        raise ValueError(f"n_gpus_per_node must be >= 1 (verl trains on GPUs only), got {n_gpus_per_node}")
    config.check_world_size(nnodes * n_gpus_per_node)
    if config.adv_eps != 1e-6:
        raise ValueError(f"adv_eps={config.adv_eps}: verl's GRPO estimators use a fixed epsilon of 1e-6")
    if config.over_turn_mode == "paper" and (not config.ignore_exceed or config.ignore_void):
        raise ValueError(
            "over_turn_mode=paper with the verl engine needs ignore_exceed=true and ignore_void=false "
            "(its estimator recognises exceed rows by their all-zero response mask)"
        )
    train, val = config.rollout_limits, config.val_limits_config()
    for name in CROP_TOOL_LIMITS:
        if getattr(val, name) != getattr(train, name):
            raise ValueError(f"val_{name}={getattr(val, name)!r}: the verl engine's one crop tool serves both splits "
                             f"with {name}={getattr(train, name)!r}; leave val_{name} unset")


def agent_loops(config: RLConfig) -> list[dict[str, Any]]:
    """The two agent-loop entries (train 6 turns, val 12 turns by default)."""
    entries = []
    for name, split, limits in ((TRAIN_AGENT, "train", config.train_limits()), (VAL_AGENT, "val", config.val_limits())):
        entries.append({
            "name": name,
            "_target_": AGENT_LOOP_CLASS,
            "split": split,
            **asdict(limits),
            "prompt_set": config.prompt_set,
            "ignore_exceed": config.ignore_exceed,
            "ignore_void": config.ignore_void,
            "mask_cut_final_turn": config.mask_cut_final_turn,
        })
    return entries


def tools(config: RLConfig) -> dict[str, Any]:
    """The tool config: the crop tool with the model-facing pixel bounds (both splits: ``check``)."""
    limits = config.rollout_limits
    return {"tools": [{
        "class_name": TOOL_CLASS,
        "config": {"type": "native", **{name: getattr(limits, name) for name in CROP_TOOL_LIMITS}},
    }]}


def write_files(config: RLConfig, folder: Path) -> dict[str, Path]:
    """Write ``agent_loops.yaml`` and ``crop_tool.yaml`` into ``folder``; name → path."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"agent_loops.yaml": agent_loops(config), "crop_tool.yaml": tools(config)}
    paths = {}
    for name, content in files.items():
        path = folder / name
        path.write_text(yaml.safe_dump(content, sort_keys=False))
        paths[name] = path
    return paths


def judge_kwarg(config: RLJudgeConfig) -> str | None:
    """The reward function's ``judge`` kwarg: the RLJudgeConfig as JSON (None when the judge is off)."""
    return json.dumps(config.model_dump(), separators=(",", ":"), sort_keys=True) if config.enabled else None


_PLAIN = re.compile(r"[A-Za-z_/.][A-Za-z0-9_./:@-]*")
_KEYWORDS = {"true", "false", "null", "nan", "inf"}


def _quote(value: str) -> str:
    """A hydra override string: bare when unambiguous, else a quoted literal."""
    if _PLAIN.fullmatch(value) and value.lower() not in _KEYWORDS:
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_value(v) for v in value) + "]"
    return _quote(str(value))


def overrides(
    config: RLConfig,
    *,
    model: str,
    train_files: Sequence[Path],
    val_files: Sequence[Path],
    files: dict[str, Path],
    out_dir: Path,
    nnodes: int = 1,
    n_gpus_per_node: int = 8,
    experiment_name: str = "mini-o3-rl",
) -> list[str]:
    """The hydra overrides (``key=value``) of the verl run (see the module table)."""
    check(config, nnodes=nnodes, n_gpus_per_node=n_gpus_per_node)
    checkpoints = Path(config.checkpoint_dir)
    checkpoints = checkpoints if checkpoints.is_absolute() else Path(out_dir) / checkpoints
    a, r = "actor_rollout_ref.actor", "actor_rollout_ref.rollout"
    rk = "reward.custom_reward_function.reward_kwargs"
    train, val = config.train_limits(), config.val_limits()
    context = max(train.max_context, val.max_context)
    sampling, val_sampling = config.sampling, config.val_sampling_config()
    values: list[tuple[str, Any]] = [
        ("algorithm.adv_estimator", "grpo_minio3" if config.over_turn_mode == "code" else "grpo_minio3_paper"),
        ("algorithm.norm_adv_by_std_in_grpo", True),
        ("algorithm.use_kl_in_reward", False),
        ("algorithm.filter_groups.enable", False),
        ("data.train_files", [str(p) for p in train_files]),
        ("data.val_files", [str(p) for p in val_files] or [str(p) for p in train_files][:1]),
        ("data.train_batch_size", config.train_batch_size),
        ("data.max_prompt_length", config.max_prompt_length),
        ("data.max_response_length", context),
        ("data.filter_overlong_prompts", True),
        ("data.truncation", "error"),
        ("data.shuffle", config.shuffle),
        ("data.seed", config.seed),
        ("data.image_key", "images"),
        ("data.return_raw_chat", True),
        ("actor_rollout_ref.model.path", model),
        ("actor_rollout_ref.model.use_remove_padding", True),
        ("actor_rollout_ref.model.enable_gradient_checkpointing", True),
        (f"{a}.optim.lr", config.lr),
        (f"{a}.optim.lr_scheduler_type", config.lr_scheduler),
        (f"{a}.optim.lr_warmup_steps_ratio", config.lr_warmup_steps_ratio),
        (f"{a}.optim.betas", list(config.adam_betas)),
        (f"{a}.optim.weight_decay", config.weight_decay),
        (f"{a}.grad_clip", config.grad_clip),
        (f"{a}.ppo_mini_batch_size", config.ppo_mini_batch_size),
        (f"{a}.ppo_micro_batch_size_per_gpu", config.ppo_micro_batch_size_per_gpu),
        (f"{a}.ppo_epochs", config.ppo_epochs),
        (f"{a}.clip_ratio_low", config.clip_ratio_low),
        (f"{a}.clip_ratio_high", config.clip_ratio_high),
        (f"{a}.policy_loss.loss_mode", "vanilla"),
        (f"{a}.loss_agg_mode", config.loss_agg_mode),
        (f"{a}.entropy_coeff", config.entropy_coeff),
        (f"{a}.use_kl_loss", config.use_kl_loss),
        (f"{a}.kl_loss_coef", config.kl_loss_coef),
        (f"{a}.kl_loss_type", config.kl_loss_type),
        (f"{r}.name", "vllm"),
        (f"{r}.mode", "async"),
        (f"{r}.n", config.rollout_n),
        (f"{r}.temperature", sampling.temperature if sampling.do_sample else 0.0),
        (f"{r}.top_p", sampling.top_p),
        (f"{r}.top_k", sampling.top_k),
        (f"{r}.val_kwargs.temperature", val_sampling.temperature if val_sampling.do_sample else 0.0),
        (f"{r}.val_kwargs.top_p", val_sampling.top_p),
        (f"{r}.val_kwargs.top_k", val_sampling.top_k),
        (f"{r}.val_kwargs.do_sample", val_sampling.do_sample),
        (f"{r}.val_kwargs.n", config.val_n),
        (f"{r}.log_prob_micro_batch_size_per_gpu", config.log_prob_micro_batch_size_per_gpu),
        (f"{r}.tensor_model_parallel_size", 1),
        (f"{r}.gpu_memory_utilization", 0.6),
        (f"{r}.max_num_batched_tokens", context),
        (f"{r}.max_model_len", context),
        (f"{r}.enable_chunked_prefill", False),
        (f"{r}.enable_prefix_caching", True),
        (f"+{r}.limit_images", max(train.max_images, val.max_images)),
        (f"{r}.multi_turn.enable", True),
        (f"{r}.multi_turn.format", PARSERS[config.parser]),
        (f"{r}.multi_turn.max_assistant_turns", max(train.max_turns, val.max_turns)),
        (f"{r}.multi_turn.tool_config_path", str(files["crop_tool.yaml"])),
        (f"{r}.agent.agent_loop_config_path", str(files["agent_loops.yaml"])),
        (f"{r}.agent.default_agent_loop", TRAIN_AGENT),
        ("reward.custom_reward_function.path", str(PACKAGE_DIR / "reward.py")),
        ("reward.custom_reward_function.name", "compute_score"),
        ("reward.reward_manager.name", "naive"),
        (f"+{rk}.acc_reward_weight", config.acc_reward_weight),
        (f"+{rk}.format_reward_weight", config.format_reward_weight),
        (f"+{rk}.tool_call_penalty", config.tool_call_penalty),
        (f"+{rk}.use_tool_reward_weight", config.use_tool_reward_weight),
        (f"+{rk}.extract_answer_tags", config.extract_answer_tags),
        (f"+{rk}.judge", judge_kwarg(config.judge)),
        ("trainer.v1.sampler.custom_sampler.path", str(PACKAGE_DIR / "sampler.py")),
        ("trainer.v1.sampler.custom_sampler.name", SAMPLER_CLASS),
        ("+trainer.v1.sampler.sampler_kwargs.enable", config.rejection_sample),
        ("+trainer.v1.sampler.sampler_kwargs.over_turn_mode", config.over_turn_mode),
        ("+trainer.v1.sampler.sampler_kwargs.min_group_std", config.min_group_std),
        ("+trainer.v1.sampler.sampler_kwargs.train_batch_size", config.train_batch_size),
        ("trainer.total_epochs", config.total_epochs),
        ("trainer.total_training_steps", config.total_training_steps),
        ("trainer.save_freq", config.save_freq),
        ("trainer.test_freq", config.test_freq if val_files else -1),
        ("trainer.val_before_train", config.val_before_train and bool(val_files)),
        ("trainer.val_only", config.val_only),
        ("trainer.default_local_dir", str(checkpoints)),
        ("trainer.max_actor_ckpt_to_keep", config.max_actor_ckpt_to_keep),
        ("trainer.nnodes", nnodes),
        ("trainer.n_gpus_per_node", n_gpus_per_node),
        ("trainer.project_name", "mini-o3"),
        ("trainer.experiment_name", experiment_name),
        ("trainer.logger", ["console", "file"]),
        # verl's file logger runs in the trainer actor, which inherits no driver env on a Ray cluster
        ("+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH", str(Path(out_dir) / METRICS_FILE)),
        ("trainer.critic_warmup", 0),
        (f"{a}.checkpoint.save_contents", ["model", "optimizer", "extra", "hf_model"]),
        (f"{a}.checkpoint.load_contents", ["model", "optimizer", "extra"]),
    ]
    return [f"{key}={_value(value)}" for key, value in values]
