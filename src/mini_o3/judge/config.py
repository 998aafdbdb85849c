"""``JudgeConfig``: the one judge settings model, composed into ``EvalConfig.judge`` and (with the
RL switches) ``RLConfig.judge``. Defaults are the seed's (reference ``general_qa_tool.py``: Azure
GPT-4o-2024-11-20, 5 attempts at temperature ``min(0.2 * attempt, 1.0)``, 16384 tokens, 120 s;
``data.gpt_threads=300`` calls in flight, which the seed's evaluation, the training command with
``trainer.val_only=True``, uses too).

Credentials are never stored here, only the names of the environment variables holding them:
azure reads ``END_POINT``, ``API_VERSION``, ``API_KEY`` (as the seed); openai reads
``OPENAI_BASE_URL`` (optional) and ``OPENAI_API_KEY``. ``base_url`` overrides the environment.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mini_o3.redact import redact_url
from mini_o3.task.judge import REFERENCE_JUDGE_MODEL

#: Version of the judge prompts (``mini_o3.task.judge``) in cache keys.
JUDGE_PROMPT_VERSION = "mini-o3-v1"


class JudgeConfig(BaseModel):
    """Judge endpoint and the seed's call settings. ``api="auto"``: azure when ``END_POINT`` is set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api: Literal["auto", "openai", "azure"] = Field("auto", description="client flavour; auto: azure when the "
                                                                        "Azure endpoint variable is set")
    model: str = Field(REFERENCE_JUDGE_MODEL, description="judge deployment / model name")
    base_url: str | None = Field(None, description="explicit endpoint; None: from the environment")
    azure_endpoint_env: str = Field("END_POINT", description="env var holding the Azure endpoint")
    api_version_env: str = Field("API_VERSION", description="env var holding the Azure API version")
    azure_key_env: str = Field("API_KEY", description="env var holding the Azure API key")
    openai_base_url_env: str = Field("OPENAI_BASE_URL", description="env var holding an OpenAI-compatible endpoint")
    openai_key_env: str = Field("OPENAI_API_KEY", description="env var holding the OpenAI API key")
    max_attempts: int = Field(5, ge=1, description="counted attempts (errors, unparsable replies) before a "
                                                   "sample counts as a judge failure")
    temperature_step: float = Field(0.2, ge=0, description="attempt k uses temperature min(step*k, 1.0)")
    max_tokens: int = Field(16384, gt=0, description="max_tokens of the judge reply")
    timeout_s: float = Field(120.0, gt=0, description="per-request timeout in seconds")
    retry_sleep_s: float = Field(1.0, ge=0, description="sleep after a counted failure")
    rate_limit_sleep_s: float = Field(3.0, ge=0, description="sleep after a rate-limit error (not counted)")
    max_rate_limit_waits: int = Field(100, ge=0, description="rate-limit retries before the call fails")
    retry_after_max_s: float = Field(300.0, ge=0, description="longest Retry-After honoured (seconds)")
    concurrency: int = Field(300, ge=1, description="judge calls in flight (seed data.gpt_threads)")
    cache_path: str | None = Field(None, description="sqlite cache file; None: no persistent cache")
    prompt_version: str = Field(JUDGE_PROMPT_VERSION, description="version of the judge prompts in cache keys")

    def flavour(self) -> Literal["openai", "azure"]:
        if self.api != "auto":
            return self.api
        return "azure" if os.environ.get(self.azure_endpoint_env) and not self.base_url else "openai"

    def endpoint(self) -> str:
        """The judge URL without credentials (for messages)."""
        if self.flavour() == "azure":
            url = self.base_url or os.environ.get(self.azure_endpoint_env, f"${self.azure_endpoint_env}")
        else:
            url = self.base_url or os.environ.get(self.openai_base_url_env, "https://api.openai.com/v1")
        return redact_url(url)
