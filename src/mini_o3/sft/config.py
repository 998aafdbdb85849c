"""``SFTConfig``: the cold-start SFT recipe as one typed config, and ``SFTLaunch``: how it runs.

Defaults are the seed's ``sft_configs/qwen2.5-vl.yaml`` (Mini-o3 @ 8654dbf) except where noted:

* ``overwrite_output_dir`` is False (seed: True) so that re-running into a run folder resumes
  from its last checkpoint;
* ``report_to`` is ["none"] (seed: wandb); "mlflow" is added when ``MLFLOW_TRACKING_URI`` is set;
* ``deepspeed`` names a config we generate ("z3_offload" = the seed's
  ``examples/deepspeed/ds_z3_offload_config.json``) instead of a path inside LLaMA-Factory's tree;
* ``seed`` and ``max_steps`` are the HF Trainer defaults (the seed file leaves them unset).

Overrides are ``key=value`` strings (``--set`` on the CLI, a list parameter in pipelines); values
are parsed as YAML, nested keys use dots: ``learning_rate=2e-5``, ``launch.mode=ray``,
``launch.ray_init_kwargs.address=auto``, ``extra_args.save_total_limit=2``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..overrides import apply_overrides
from ..task import TRAIN_LIMITS

DeepSpeedStage = Literal["none", "z2", "z3", "z3_offload"]
AttentionImpl = Literal["auto", "disabled", "sdpa", "fa2", "fa3"]
LaunchMode = Literal["auto", "torchrun", "ray"]

#: LLaMA-Factory keys the run folder owns; ``extra_args`` may not set them.
RESERVED_KEYS = frozenset({"output_dir", "dataset_dir", "media_dir", "deepspeed", "do_train", "model_name_or_path"})


class SFTLaunch(BaseModel):
    """How the training process starts (LLaMA-Factory's launcher reads these as env / yaml keys).

    * ``auto``: one process; LLaMA-Factory itself switches to torchrun when more than one GPU is
      visible, and we force torchrun when DeepSpeed is on (LLaMA-Factory requires it).
    * ``torchrun``: ``FORCE_TORCHRUN=1`` with ``NNODES``/``NODE_RANK``/``NPROC_PER_NODE``/
      ``MASTER_ADDR``/``MASTER_PORT``; run the same command on every node for multi-node.
    * ``ray``: ``USE_RAY=1``; LLaMA-Factory starts ``ray_num_workers`` workers (1 GPU + 10 CPUs
      each, fixed in 0.9.5) on the Ray cluster that ``ray.init(**ray_init_kwargs)`` joins.

    Unset (None) torchrun fields keep what the environment says (e.g. a job controller's
    ``NODE_RANK``), else LLaMA-Factory's defaults (1 node, rank 0, all visible GPUs, localhost).
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    mode: LaunchMode = Field("auto", description="auto (LLaMA-Factory decides), torchrun or ray")
    nproc_per_node: int | None = Field(None, gt=0, description="torchrun NPROC_PER_NODE (None: env, else visible GPUs)")
    nnodes: int | None = Field(None, gt=0, description="torchrun NNODES (None: env, else 1)")
    node_rank: int | None = Field(None, ge=0, description="torchrun NODE_RANK of this node (None: env, else 0)")
    master_addr: str | None = Field(None, description="rendezvous host: torchrun MASTER_ADDR, Ray master_addr (a node IP)")
    master_port: int | None = Field(None, gt=0, lt=65536, description="rendezvous port (None: env, else a free port)")
    ray_num_workers: int = Field(1, gt=0, description="Ray training workers, one GPU each")
    ray_init_kwargs: dict[str, Any] = Field(default_factory=dict, description="ray.init kwargs, e.g. {address: auto}")
    cpu_fallback: bool = Field(True, description="with no GPU visible, switch to CPU-safe settings (never in Ray mode)")
    env: dict[str, str] = Field(default_factory=dict, description="extra environment for the training process")

    @model_validator(mode="after")
    def _consistent(self) -> SFTLaunch:
        if self.nnodes is not None and self.node_rank is not None and self.node_rank >= self.nnodes:
            raise ValueError(f"launch.node_rank ({self.node_rank}) must be < launch.nnodes ({self.nnodes})")
        if self.mode != "torchrun" and (self.nnodes or self.node_rank is not None or self.nproc_per_node):
            raise ValueError("launch.nnodes/node_rank/nproc_per_node need launch.mode=torchrun")
        if self.mode != "ray" and (self.ray_num_workers != 1 or self.ray_init_kwargs):
            raise ValueError("launch.ray_num_workers/ray_init_kwargs need launch.mode=ray")
        return self


class SFTConfig(BaseModel):
    """Every knob of the LLaMA-Factory run; ``extra_args`` passes any other LLaMA-Factory key."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # -- model --------------------------------------------------------------------------------
    model_name_or_path: str = Field("Qwen/Qwen2.5-VL-7B-Instruct", description="HF id or local path of the base model")
    trust_remote_code: bool = Field(True, description="allow model code from the checkpoint")
    image_max_pixels: int = Field(TRAIN_LIMITS.max_pixels, gt=0,
                                  description="largest image area fed to the model (the rollouts'; not LF's 262144)")
    image_min_pixels: int = Field(TRAIN_LIMITS.min_pixels, gt=0, description="smallest image area fed to the model")
    video_max_pixels: int = Field(16_384, gt=0, description="largest video frame area (unused by Mini-o3)")
    flash_attn: AttentionImpl = Field("fa2", description="attention kernel; CPU runs switch to sdpa")
    # -- method -------------------------------------------------------------------------------
    stage: Literal["sft"] = Field("sft", description="LLaMA-Factory stage")
    finetuning_type: Literal["full", "lora", "freeze"] = Field("full", description="full fine-tuning of the LLM")
    freeze_vision_tower: bool = Field(True, description="keep the ViT frozen")
    freeze_multi_modal_projector: bool = Field(True, description="keep the vision-language projector frozen")
    freeze_language_model: bool = Field(False, description="train the language model")
    deepspeed: DeepSpeedStage = Field("z3_offload", description="generated DeepSpeed config; CPU runs use none")
    # -- data ---------------------------------------------------------------------------------
    dataset: str = Field("minio3_coldstart", description="dataset name in dataset_info.json")
    template: str = Field("qwen2_vl", description="LLaMA-Factory chat template")
    cutoff_len: int = Field(32_768, gt=0, description="max tokens per sample; longer ones are cut")
    max_samples: int = Field(100_000, gt=0, description="cap on training samples")
    overwrite_cache: bool = Field(True, description="re-tokenise instead of reusing a cache")
    preprocessing_num_workers: int = Field(16, gt=0, description="tokenisation processes")
    dataloader_num_workers: int = Field(0, ge=0, description="dataloader worker processes")
    # -- output -------------------------------------------------------------------------------
    logging_steps: int = Field(10, gt=0, description="log loss every N optimizer steps")
    save_steps: int = Field(500, gt=0, description="checkpoint every N optimizer steps (resume points)")
    plot_loss: bool = Field(True, description="LLaMA-Factory's own loss plot (we also plot loss_curve.png)")
    overwrite_output_dir: bool = Field(False, description="False: resume from the last checkpoint (seed: True)")
    save_only_model: bool = Field(False, description="False keeps optimizer state in checkpoints (needed to resume)")
    report_to: list[str] = Field(default_factory=lambda: ["none"], description="HF Trainer reporters (seed: wandb)")
    resume_from_checkpoint: str | None = Field(None, description="explicit checkpoint; None: the run's last one")
    # -- train --------------------------------------------------------------------------------
    per_device_train_batch_size: int = Field(1, gt=0, description="micro-batch per device")
    gradient_accumulation_steps: int = Field(4, gt=0, description="micro-batches per optimizer step")
    learning_rate: float = Field(1.0e-5, gt=0, description="peak learning rate")
    num_train_epochs: float = Field(3.0, gt=0, description="epochs over the cold-start set")
    max_steps: int = Field(-1, ge=-1, description="stop after N optimizer steps (-1: use epochs)")
    lr_scheduler_type: str = Field("cosine", description="learning-rate schedule")
    warmup_ratio: float = Field(0.1, ge=0, le=1, description="share of steps spent warming up")
    bf16: bool = Field(True, description="bfloat16 training; CPU runs switch it off")
    ddp_timeout: int = Field(180_000_000, gt=0, description="collective timeout in seconds")
    seed: int = Field(42, description="training seed (HF Trainer default)")
    # -- how it runs ----------------------------------------------------------------------------
    launch: SFTLaunch = Field(default_factory=SFTLaunch, description="single node, torchrun or Ray")
    extra_args: dict[str, Any] = Field(default_factory=dict, description="other LLaMA-Factory keys, passed as is")

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("max_steps")
    @classmethod
    def _max_steps(cls, value: int) -> int:
        if value == 0:
            raise ValueError("max_steps must be -1 (use num_train_epochs) or positive")
        return value

    @field_validator("extra_args")
    @classmethod
    def _extra_args(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if key in RESERVED_KEYS:
                raise ValueError(f"extra_args.{key} is set by the run folder and cannot be overridden")
            if key in cls.model_fields:
                raise ValueError(f"extra_args.{key} duplicates the SFTConfig field {key!r}; set {key}=... instead")
        return value

    @model_validator(mode="after")
    def _pixels(self) -> SFTConfig:
        if self.image_min_pixels > self.image_max_pixels:
            raise ValueError(
                f"image_min_pixels ({self.image_min_pixels}) exceeds image_max_pixels ({self.image_max_pixels})"
            )
        return self

    def with_overrides(self, assignments: list[str] | tuple[str, ...]) -> SFTConfig:
        """Apply ``key=value`` strings (see the module doc); an unknown key raises naming it."""
        return apply_overrides(
            self, assignments, label="SFT setting", unknown_hint="pass any other LLaMA-Factory key as extra_args.KEY=VALUE"
        )
