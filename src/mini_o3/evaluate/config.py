"""``EvalConfig``: everything that decides an evaluation's numbers (k, limits, prompts, sampling,
scoring, judge) plus run control (concurrency, question limit, viewer size).

``protocol`` is how a sample is scored: ``paper`` (the default) is the released recipe's
evaluation (Mini-o3/Mini-o3 @8654dbf README "Evaluation": the training command with
``trainer.val_only=True``, which keeps ``reward_model.use_hybrid_reward_manager=True``, so
``verl/trainer/main_ppo.py`` L149-156 scores every validation sample with ``general_qa_tool``):
strict ``<answer>`` extraction, then the GPT judge on every extracted answer, multiple choice
included, with no rule pre-check (``verl/utils/reward_score/general_qa_tool.py`` L283-316).
``rule`` scores with the task kit's rule scorers only; its numbers are not comparable to the paper's.

``config_hash`` fingerprints the fields that change a sample's outcome. ``k``, ``k_by_family``,
``default_k``, ``limit``, ``concurrency`` and the viewer settings are left out: sample j of a
question is the same job whatever k is, so raising k (or the limit) reuses every stored sample.
Under ``protocol=rule`` the judge settings are left out too (no judge is called).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mini_o3.data.bench.registry import PAPER_K  # k per family (BenchSpec.default_k)
from mini_o3.rollout.settings import LimitsConfig, SamplingConfig, flat_dump, flat_keys, lift_flat_keys
from mini_o3.task import DEFAULT_PROMPT_SET, EVAL_LIMITS, RolloutLimits

from mini_o3.judge.config import JudgeConfig


#: Fields that do not change any single sample's outcome (excluded from ``config_hash``).
_RUN_CONTROL = {"k", "k_by_family", "default_k", "limit", "concurrency", "viewer_samples", "viewer_max_side",
                "sample_error", "max_error_rate", "max_consecutive_errors"}


#: Scoring protocols: ``paper`` (judge on every sample, as upstream's validation) or ``rule``.
Protocol = Literal["paper", "rule"]

#: ServeConfig fields that only say how the server is run, not what it generates.
_SERVE_TRANSPORT = {"executable", "host", "port", "health_timeout_s", "stop_timeout_s", "log_path"}

#: Judge settings that can change a score (the rest is transport: retries, sleeps, cache, ...).
_JUDGE_OUTCOME = {"api", "model", "base_url", "max_attempts", "temperature_step", "max_tokens", "prompt_version"}


class EvalConfig(BaseModel):
    """Evaluation settings. Defaults follow the Mini-o3 README evaluation (12 turns / 12 images,
    T=1, top_p=1, no top-k, 8192 tokens per turn, 32768 context with a 2000 margin).

    Note: the headline VisualProbe-Hard 48.0 used a 32-turn test-time limit: set
    ``max_turns=32 max_images=32`` to reproduce it; 12 turns gives roughly 41-47.
    """

    model_config = ConfigDict(extra="forbid")
    #: Flat override keys of the nested limits / sampling: ``max_turns`` = ``rollout_limits.max_turns``,
    #: ``temperature`` = ``sampling.temperature``, ...
    FLAT_KEYS: ClassVar[dict[str, str]] = {**flat_keys("", LimitsConfig, "rollout_limits"),
                                           **flat_keys("", SamplingConfig, "sampling")}

    # -- k ---------------------------------------------------------------------------------
    k: int | None = Field(None, ge=1, description="samples per question for every benchmark (overrides the defaults)")
    k_by_family: dict[str, int] = Field(default_factory=lambda: dict(PAPER_K),
                                        description="k by data_source prefix (paper values)")
    default_k: int = Field(1, ge=1, description="k for data sources no family matches (e.g. synthetic)")
    # -- rollout limits and sampling (flat keys: FLAT_KEYS) ----------------------------------
    rollout_limits: LimitsConfig = Field(default_factory=lambda: LimitsConfig.of(EVAL_LIMITS),
                                         description="episode limits (12 turns; max_turns=32 reproduces the VP-Hard headline)")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig, description="sampling of every turn")
    # -- prompt / parser --------------------------------------------------------------------
    prompt_set: str = DEFAULT_PROMPT_SET
    parser: Literal["strict", "lenient"] = "strict"
    seed: int = Field(0, description="base seed; each (question, sample) derives its own")
    # -- scoring ----------------------------------------------------------------------------
    protocol: Protocol = Field(
        "paper", description="paper: the LLM judge scores every sample with an answer, as the paper's evaluation; "
                             "rule: rule scorers only (numbers not comparable to the paper's)")
    judge: JudgeConfig = Field(default_factory=JudgeConfig,
                         description="the LLM judge of protocol=paper (mini_o3.judge); unused under rule")
    judge_failure: Literal["score_zero", "exclude"] = Field(
        "score_zero", description="a judge call that fails after its retries scores 0 (upstream's validation; "
                                  "counted) or drops the sample from the metrics")
    sample_error: Literal["score_zero", "exclude"] = Field(
        "score_zero", description="a sample whose rollout fails for good (HTTP 4xx, corrupt image, retries spent) "
                                  "is stored with its error and scores 0 (counted in Avg@k) or is left out of the "
                                  "metrics; either way it is counted and retried by the next run")
    max_error_rate: float = Field(0.01, ge=0, le=1, description="mini-o3 eval exits non-zero when more than this "
                                                                "share of the samples errored (the report is written)")
    max_consecutive_errors: int = Field(32, ge=1, description="stop scheduling new samples after this many errors "
                                                              "in a row (a dead endpoint); the report is written")
    openai: dict[str, Any] = Field(default_factory=dict,
                                   description="extra OpenAIPolicyConfig fields for openai: policies (retries, timeouts, ...)")
    serve: dict[str, Any] = Field(default_factory=dict,
                                  description="extra ServeConfig fields for vllm: policies (gpu_memory_utilization, "
                                              "extra_args, dtype, ...)")
    # -- run control ------------------------------------------------------------------------
    concurrency: int = Field(16, ge=1, description="episodes in flight (local: batch size of one rollout call)")
    limit: int | None = Field(None, ge=1, description="first N questions of each benchmark only")
    viewer_samples: int = Field(40, ge=0, description="samples shown in viewer.html")
    viewer_max_side: int = Field(384, ge=32, description="longest side of viewer images, px")

    @model_validator(mode="before")
    @classmethod
    def _flat_keys(cls, data: Any) -> Any:
        return lift_flat_keys(cls, cls.FLAT_KEYS, data)

    @field_validator("judge", mode="before")
    @classmethod
    def _judge_is_a_config(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("judge cannot be null; for scoring without the LLM judge set protocol=rule")
        return value

    @field_validator("prompt_set")
    @classmethod
    def _known_prompt_set(cls, value: str) -> str:
        from mini_o3.task import get_prompt_set

        get_prompt_set(value)  # raises naming the known sets
        return value

    @field_validator("k_by_family")
    @classmethod
    def _positive_k(cls, value: dict[str, int]) -> dict[str, int]:
        bad = {name: k for name, k in value.items() if k < 1}
        if bad:
            raise ValueError(f"k_by_family values must be >= 1, got {bad}")
        return value

    def k_for(self, data_source: str) -> int:
        """k of one data source: ``k`` if set, else the longest matching family prefix, else ``default_k``."""
        if self.k is not None:
            return self.k
        matches = [name for name in self.k_by_family if data_source.startswith(name)]
        return self.k_by_family[max(matches, key=len)] if matches else self.default_k

    def limits(self) -> RolloutLimits:
        return self.rollout_limits.limits()

    def config_hash(self, policy_spec: str) -> str:
        """12 hex digits fingerprinting the policy and every outcome-relevant setting."""
        data = flat_dump(self, mode="json", exclude=_RUN_CONTROL)  # flat: the hash of the top-level fields before
        data["serve"] = {k: v for k, v in data["serve"].items() if k not in _SERVE_TRANSPORT}
        if self.protocol == "rule":
            data.pop("judge")
            data.pop("judge_failure")
        else:
            data["judge"] = {k: v for k, v in data["judge"].items() if k in _JUDGE_OUTCOME}
        blob = json.dumps({"policy": policy_spec, "config": data}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]
