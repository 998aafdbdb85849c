"""``RLConfig``: the GRPO stage of the recipe as one typed config, read by both RL engines (the
CPU reference loop and verl).

Defaults are the seed's RL run (README "Stage 2" command + the fork's yaml defaults, protocol
§9, §10, §13, §14, §16) except where noted:

* ``loss_agg_mode`` is ``seq-mean-token-mean``: the seed sets ``token-mean`` but applies it per
  micro-batch of ONE trajectory and divides by the gradient-accumulation count, which is exactly a
  per-trajectory token mean averaged over the mini-batch;
* ``val_n`` = 32 and ``val_do_sample`` = True are the README evaluation (Avg@32); the yaml's own
  defaults are 1 / False (greedy);
* paths: ``model_path``, ``train_files`` / ``val_files`` and ``data_root`` record what a run
  read: the engines fill them from their arguments (``with_inputs``), so ``rl_config.json`` and
  the logged params name the model and data actually used; the defaults are the seed's.

Batch sizes are in prompts (verl convention): one step = ``train_batch_size * rollout_n``
trajectories, one optimizer step per ``ppo_mini_batch_size * rollout_n`` trajectories.

Overrides are ``key=value`` strings, values read as YAML, nested keys with dots:
``rollout_n=4``, ``lr=2e-6``, ``judge.enabled=false``, ``train_files=[a/train.json]``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..judge.config import JudgeConfig
from ..overrides import apply_overrides
from ..rollout.settings import (
    LimitsConfig, SamplingConfig, ValLimitsConfig, ValSamplingConfig, flat_keys, lift_flat_keys, with_fallback,
)
from ..task import DEFAULT_PROMPT_SET, EVAL_LIMITS, RewardWeights, RolloutLimits

LossAggMode = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]
OverTurnModeName = Literal["code", "paper"]
KLLossType = Literal["low_var_kl", "kl", "abs", "mse"]

#: The seed's training sets, relative to ``data_root`` ($BASE_IMAGE_DIR).
SEED_TRAIN_FILES = ("VisualProbe_train/train.json", "DeepEyes_train_4K/train.json")
#: The seed's validation sets, relative to ``data_root``.
SEED_VAL_FILES = (
    "Vstar_Bench/val.json",
    "VisualProbe_Easy/val.json",
    "VisualProbe_Medium/val.json",
    "VisualProbe_Hard/val.json",
)


class RLJudgeConfig(JudgeConfig):
    """The judge of the RL rewards: the shared judge settings (``mini_o3.judge.JudgeConfig``, the
    reference ``general_qa_tool`` call) plus the RL engines' switch and failure rules."""

    enabled: bool = Field(True, description="score every sample with the judge (seed); False: rule-based scorer")
    failure_drops_group_in_training: bool = Field(
        True, description="a failed judge call drops its whole prompt group from the training batch (seed; "
                          "the only behaviour both engines implement: False is refused)"
    )
    failure_scores_zero_in_validation: bool = Field(
        True, description="a failed judge call scores 0 in validation (seed; the only behaviour both engines "
                          "implement: False is refused)"
    )

    @model_validator(mode="after")
    def _implemented(self) -> RLJudgeConfig:
        for name in ("failure_drops_group_in_training", "failure_scores_zero_in_validation"):
            if not getattr(self, name):
                raise ValueError(f"judge.{name}=false is not implemented by the RL engines (they follow the seed: "
                                 "a failed judge call drops its group in training and scores 0 in validation)")
        return self


class RLConfig(BaseModel):
    """Every knob of the GRPO stage; both RL engines translate it to their own settings."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    #: Flat override keys of the nested limits / sampling: ``max_turns`` = ``rollout_limits.max_turns``,
    #: ``val_max_turns`` = ``val_rollout_limits.max_turns``, ``temperature`` = ``sampling.temperature``, ...
    FLAT_KEYS: ClassVar[dict[str, str]] = {
        **flat_keys("", LimitsConfig, "rollout_limits"), **flat_keys("val_", LimitsConfig, "val_rollout_limits"),
        **flat_keys("", SamplingConfig, "sampling"), **flat_keys("val_", SamplingConfig, "val_sampling"),
    }

    # -- model and data ---------------------------------------------------------------------------
    model_path: str = Field("Mini-o3/Mini-o3-7B-SFT", description="HF id or local path of the SFT policy")
    data_root: str | None = Field(None, description="root of relative data files and images ($BASE_IMAGE_DIR); None: cwd")
    train_files: list[str] = Field(default_factory=lambda: list(SEED_TRAIN_FILES), description="Mini-o3 train.json files")
    val_files: list[str] = Field(default_factory=lambda: list(SEED_VAL_FILES), description="Mini-o3 val.json files")
    shuffle: bool = Field(True, description="shuffle the training set each epoch (data.shuffle)")
    seed: int = Field(1, description="data shuffle seed (data.seed)")
    prompt_set: str = Field(DEFAULT_PROMPT_SET, description="system prompt + observation templates (seed tool_crop / v2)")
    # -- batch arithmetic -------------------------------------------------------------------------
    train_batch_size: int = Field(256, gt=0, description="prompts per RL step (after rejection sampling)")
    rollout_n: int = Field(16, gt=0, description="trajectories sampled per prompt (GRPO group size)")
    ppo_mini_batch_size: int = Field(32, gt=0, description="prompts per optimizer step")
    ppo_micro_batch_size_per_gpu: int = Field(1, gt=0, description="trajectories per forward/backward on one device")
    log_prob_micro_batch_size_per_gpu: int = Field(1, gt=0, description="trajectories per old-log-prob forward")
    ppo_epochs: int = Field(1, gt=0, description="passes over each RL batch")
    # -- optimizer --------------------------------------------------------------------------------
    lr: float = Field(1e-6, gt=0, description="AdamW learning rate")
    lr_scheduler: Literal["constant"] = Field("constant", description="learning-rate schedule")
    lr_warmup_steps_ratio: float = Field(0.0, ge=0, le=1, description="share of steps spent warming up")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    weight_decay: float = Field(1e-2, ge=0, description="AdamW weight decay")
    grad_clip: float = Field(1.0, gt=0, description="max global grad norm")
    # -- GRPO loss --------------------------------------------------------------------------------
    clip_ratio_low: float = Field(0.2, ge=0, lt=1, description="ratio clipped below at 1 - clip_ratio_low")
    clip_ratio_high: float = Field(0.3, ge=0, description="ratio clipped above at 1 + clip_ratio_high (clip-higher)")
    loss_agg_mode: LossAggMode = Field(
        "seq-mean-token-mean", description="loss aggregation; seq-mean-token-mean = seed token-mean at micro-batch 1"
    )
    entropy_coeff: float = Field(0.0, ge=0, description="entropy bonus weight (seed: 0, logged only)")
    use_kl_loss: bool = Field(False, description="add a KL-to-reference loss (seed: off, no reference model)")
    kl_loss_coef: float = Field(0.0, ge=0, description="weight of the KL loss")
    kl_loss_type: KLLossType = Field("low_var_kl", description="KL estimator (inert while the KL loss is off)")
    adv_eps: float = Field(1e-6, gt=0, description="epsilon of (r - mean) / (std + eps)")
    # -- over-turn masking and rejection sampling ------------------------------------------------
    over_turn_mode: OverTurnModeName = Field(
        "code", description="code: exceed rewards enter group stats (released code); paper: excluded, advantage 0"
    )
    ignore_exceed: bool = Field(True, description="exceed trajectories get an all-zero loss mask")
    ignore_void: bool = Field(False, description="void trajectories get an all-zero loss mask (seed: trained)")
    mask_cut_final_turn: bool = Field(
        True, description="nothing after the response's last <|im_end|> is trained (seed: get_final_eos_mask), so a "
                          "final turn cut by the length limit or stopped at </grounding> without a parsable call is "
                          "never penalised; false trains it with its row's advantage")
    rejection_sample: bool = Field(True, description="drop zero-variance / judge-failed groups and refill")
    min_group_std: float = Field(1e-4, ge=0, description="a group whose reward std is below this is dropped")
    max_num_gen_batches: int = Field(256, gt=0, description="generation batches allowed to fill one RL step")
    max_barren_gen_batches: int = Field(
        8, gt=0, description="fail once this many generation batches in a row gave no valid group (no reward "
                             "variance: a too-weak or saturated policy); not in the seed, which loops to "
                             "max_num_gen_batches")
    # -- rollout limits and sampling (flat keys: FLAT_KEYS) ----------------------------------------
    rollout_limits: LimitsConfig = Field(default_factory=LimitsConfig,
                                         description="training episode limits (6 turns, 12 images, 8192/turn, 32768 ctx)")
    val_rollout_limits: ValLimitsConfig = Field(  # type: ignore[valid-type]
        default_factory=lambda: ValLimitsConfig(max_turns=EVAL_LIMITS.max_turns),
        description="validation episode limits; a None field is the training value (seed: 12 turns)")
    max_prompt_length: int = Field(8192, gt=0, description="longest initial prompt in tokens; longer rows are filtered")
    parser: Literal["strict", "lenient"] = Field("strict", description="tool-call parser (seed regex: strict)")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="training rollout sampling (T=1)")
    val_sampling: ValSamplingConfig = Field(  # type: ignore[valid-type]
        default_factory=lambda: ValSamplingConfig(do_sample=True),
        description="validation sampling; a None field is the training value (README eval: sampled)")
    val_n: int = Field(32, gt=0, description="samples per validation question: the k of Avg@k (README eval)")
    # -- reward -----------------------------------------------------------------------------------
    acc_reward_weight: float = Field(1.0, description="weight of the 0/1 accuracy")
    format_reward_weight: float = Field(0.0, description="weight of the grounding-format reward")
    tool_call_penalty: float = Field(0.0, description="accuracy scaled by 1 - penalty when a tool was called")
    use_tool_reward_weight: float = Field(0.0, description="bonus when a tool was called")
    extract_answer_tags: Literal["strict", "split"] = Field("strict", description="answer extraction (strict: first block)")
    judge: RLJudgeConfig = Field(default_factory=RLJudgeConfig, description="the LLM judge")
    # -- schedule ---------------------------------------------------------------------------------
    total_epochs: int = Field(100, gt=0, description="passes over the training set")
    total_training_steps: int | None = Field(None, gt=0, description="stop after N RL steps (None: from epochs)")
    save_freq: int = Field(25, description="checkpoint every N RL steps (-1: never)")
    test_freq: int = Field(5, description="validate every N RL steps (-1: never)")
    val_before_train: bool = Field(True, description="validate once before the first step")
    val_only: bool = Field(False, description="validate and stop")
    checkpoint_dir: str = Field("save", description="checkpoint folder (global_step_*/actor inside)")
    max_actor_ckpt_to_keep: int | None = Field(
        2, gt=0, description="verl engine: keep only the newest N actor checkpoints (trainer.max_actor_ckpt_to_keep; "
                             "verl and the seed keep every one: None). Each holds fp32 FSDP shards, Adam state and "
                             "the merged bf16 HF policy, ~14 bytes per parameter (Qwen2.5-VL-7B: ~115 GB); the work "
                             "volume peaks at max(N, 2) of them (chart README: Sizing). The stage hands on the newest")

    @model_validator(mode="before")
    @classmethod
    def _flat_keys(cls, data: Any) -> Any:
        return lift_flat_keys(cls, cls.FLAT_KEYS, data)

    @model_validator(mode="after")
    def _consistent(self) -> RLConfig:
        if self.train_batch_size % self.ppo_mini_batch_size:
            raise ValueError(
                f"train_batch_size ({self.train_batch_size}) must be a multiple of "
                f"ppo_mini_batch_size ({self.ppo_mini_batch_size}) prompts"
            )
        mini = self.ppo_mini_batch_size * self.rollout_n
        if mini % self.ppo_micro_batch_size_per_gpu:
            raise ValueError(
                f"a mini-batch of {mini} trajectories (ppo_mini_batch_size * rollout_n) must be a multiple "
                f"of ppo_micro_batch_size_per_gpu ({self.ppo_micro_batch_size_per_gpu})"
            )
        self.val_limits_config()  # the merged validation limits must be consistent too
        for sampling in (self.sampling, self.val_sampling_config()):
            if sampling.top_k == 0 or sampling.top_k < -1:
                raise ValueError(f"top_k must be -1 (off) or positive, got {sampling.top_k}")
        if self.save_freq == 0 or self.save_freq < -1 or self.test_freq == 0 or self.test_freq < -1:
            raise ValueError("save_freq and test_freq must be -1 (never) or positive")
        if not self.train_files:
            raise ValueError("train_files must name at least one file")
        beta1, beta2 = self.adam_betas
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"adam_betas must lie in [0, 1), got {self.adam_betas}")
        return self

    # -- derived views ----------------------------------------------------------------------------
    @property
    def trajectories_per_step(self) -> int:
        return self.train_batch_size * self.rollout_n

    @property
    def trajectories_per_mini_batch(self) -> int:
        return self.ppo_mini_batch_size * self.rollout_n

    @property
    def optimizer_steps_per_rl_step(self) -> int:
        return self.ppo_epochs * self.train_batch_size // self.ppo_mini_batch_size

    @property
    def uses_reference_model(self) -> bool:
        """A reference policy exists only with the KL loss on and a positive weight (seed: no)."""
        return self.use_kl_loss and self.kl_loss_coef > 0

    def check_world_size(self, world_size: int) -> None:
        """Raise unless ``world_size`` data-parallel ranks split every batch evenly (seed: 64)."""
        if world_size < 1:
            raise ValueError(f"world_size must be >= 1, got {world_size}")
        for what, size in (
            ("train_batch_size * rollout_n", self.trajectories_per_step),
            ("ppo_mini_batch_size * rollout_n", self.trajectories_per_mini_batch),
        ):
            if size % world_size:
                raise ValueError(f"{what} ({size}) must be divisible by the {world_size} ranks")
        per_rank = self.trajectories_per_mini_batch // world_size
        if per_rank % self.ppo_micro_batch_size_per_gpu:
            raise ValueError(
                f"{per_rank} trajectories per rank per mini-batch must be a multiple of "
                f"ppo_micro_batch_size_per_gpu ({self.ppo_micro_batch_size_per_gpu})"
            )

    def train_limits(self) -> RolloutLimits:
        """Limits of a training episode (6 turns, 12 images)."""
        return self.rollout_limits.limits()

    def val_limits_config(self) -> LimitsConfig:
        """The validation limits: ``val_rollout_limits`` over ``rollout_limits``."""
        return with_fallback(self.val_rollout_limits, self.rollout_limits)

    def val_limits(self) -> RolloutLimits:
        """Limits of a validation episode (12 turns, 12 images)."""
        return self.val_limits_config().limits()

    def val_sampling_config(self) -> SamplingConfig:
        """The validation sampling: ``val_sampling`` over ``sampling``."""
        return with_fallback(self.val_sampling, self.sampling)

    def reward_weights(self) -> RewardWeights:
        return RewardWeights(
            accuracy=self.acc_reward_weight,
            format=self.format_reward_weight,
            tool_call_penalty=self.tool_call_penalty,
            use_tool=self.use_tool_reward_weight,
        )

    def with_overrides(self, assignments: list[str] | tuple[str, ...]) -> RLConfig:
        """Apply ``key=value`` strings (see the module doc); an unknown key raises naming it."""
        return apply_overrides(self, assignments, label="RL setting")

    def with_inputs(self, model: str, train: list[str], val: list[str]) -> RLConfig:
        """This config recording the model and data a run actually uses (``model_path``,
        ``train_files``, ``val_files``; ``data_root`` None: the paths are absolute or as given), so
        ``rl_config.json`` and the logged params tell the truth. The engines take these from their
        arguments; a value set by an override that differs from them is an error, never ignored."""
        defaults = RLConfig.model_fields
        given = {"model_path": model, "train_files": list(train), "val_files": list(val), "data_root": None}
        for name, used in given.items():
            value = getattr(self, name)
            default = defaults[name].get_default(call_default_factory=True)
            if value != default and value != used:
                raise ValueError(f"RL setting {name}={value!r} is not read: the run uses {used!r} "
                                 "(--model / --train / --val name the model and data); drop the override")
        return self.model_copy(update=given)
