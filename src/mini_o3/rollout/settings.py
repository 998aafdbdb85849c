"""The two settings shapes of every rollout, declared once: ``LimitsConfig`` (turns, images,
tokens, pixels: the typed face of the task kit's ``RolloutLimits``) and ``SamplingConfig``.

``RLConfig`` composes them as ``rollout_limits`` / ``sampling`` (training) plus
``val_rollout_limits`` / ``val_sampling`` (validation overrides: a field left ``None`` falls back to the training value,
as TRL's ``GRPOConfig`` does with its ``*_eval`` settings); ``EvalConfig`` as ``rollout_limits``
/ ``sampling``. Both configs keep their flat override keys (``max_turns=4``, ``val_max_turns=4``,
``temperature=0``) as aliases of these fields: ``flat_keys`` and ``lift_flat_keys``."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from mini_o3.task import TRAIN_LIMITS, RolloutLimits

_DEFAULT = TRAIN_LIMITS


class LimitsConfig(BaseModel):
    """Limits of one episode (``task.RolloutLimits``); defaults are the seed's training values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_turns: int = Field(_DEFAULT.max_turns, gt=0, description="assistant turns per episode (max_generation_round)")
    max_images: int = Field(_DEFAULT.max_images, gt=0, description="images per episode, the original included")
    max_tokens_per_turn: int = Field(_DEFAULT.max_tokens_per_turn, gt=0,
                                     description="generation cap per turn (response_length)")
    max_context: int = Field(_DEFAULT.max_context, gt=0, description="total context in tokens (max_total_response_length)")
    context_margin: int = Field(_DEFAULT.context_margin, ge=0, description="episodes stop at max_context - context_margin")
    min_pixels: int = Field(_DEFAULT.min_pixels, gt=0, description="smallest model-facing image area")
    max_pixels: int = Field(_DEFAULT.max_pixels, gt=0, description="largest model-facing image area")
    relative_coordinates: bool = Field(_DEFAULT.relative_coordinates,
                                       description="bbox values are fractions of the image size")

    @model_validator(mode="after")
    def _consistent(self) -> LimitsConfig:
        if self.context_margin >= self.max_context:
            raise ValueError(f"context_margin ({self.context_margin}) must be < max_context ({self.max_context})")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels ({self.min_pixels}) exceeds max_pixels ({self.max_pixels})")
        return self

    @classmethod
    def of(cls, limits: RolloutLimits) -> LimitsConfig:
        return cls(**asdict(limits))

    def limits(self) -> RolloutLimits:
        return RolloutLimits(**self.model_dump())


class SamplingConfig(BaseModel):
    """Sampling of every turn; ``do_sample=False`` or ``temperature=0`` is greedy, ``top_k <= 0``
    disables top-k. Defaults are the recipe's (T=1, top_p=1, no top-k)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    do_sample: bool = Field(True, description="sample; False: greedy")
    temperature: float = Field(1.0, ge=0, description="sampling temperature")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus mass")
    top_k: int = Field(-1, description="top-k (<= 0: off)")

    def served(self) -> dict[str, Any]:
        """``temperature``, ``top_p``, ``top_k`` as a sampling server (OpenAI-compatible, vLLM) is
        sent them: greedy (``do_sample=False``) is temperature 0, top_p 1, top_k -1."""
        if self.do_sample:
            return {"temperature": self.temperature, "top_p": self.top_p, "top_k": self.top_k}
        return {"temperature": 0.0, "top_p": 1.0, "top_k": -1}


def _overrides_of(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` with every field optional and ``None`` by default: ``None`` = the training value."""
    fields: dict[str, Any] = {
        name: (Optional[field.annotation], Field(None, description=f"validation {field.description}; "
                                                                   "None: the training value"))
        for name, field in model.model_fields.items()
    }
    return create_model(f"Val{model.__name__}", __config__=ConfigDict(extra="forbid", frozen=True), **fields)


#: Validation overrides of the limits / sampling (None: the training value).
ValLimitsConfig = _overrides_of(LimitsConfig)
ValSamplingConfig = _overrides_of(SamplingConfig)


def with_fallback(overrides: BaseModel, base: BaseModel) -> Any:
    """``base`` with every field ``overrides`` sets (not None); re-validated."""
    changes = {name: value for name, value in overrides.model_dump().items() if value is not None}
    return type(base).model_validate({**base.model_dump(), **changes})


def flat_keys(prefix: str, model: type[BaseModel], field: str) -> dict[str, str]:
    """Flat alias → dotted path of every field of ``model`` under config field ``field``
    (``prefix`` in front of the alias: ``"val_"``)."""
    return {f"{prefix}{name}": f"{field}.{name}" for name in model.model_fields}


def flat_dump(config: BaseModel, **dump: Any) -> dict[str, Any]:
    """``config.model_dump(**dump)`` with its nested settings under their flat keys (``FLAT_KEYS``
    of its class): the layout of the logged params and of ``EvalConfig.config_hash``."""
    data = config.model_dump(**dump)
    aliases: dict[str, str] = getattr(type(config), "FLAT_KEYS", {})
    parents = {path.split(".")[0] for path in aliases.values()}
    nested = {parent: data.pop(parent) for parent in parents if parent in data}
    for alias, path in aliases.items():
        parent, name = path.split(".")
        if parent in nested:
            data[alias] = nested[parent][name]
    return data


def lift_flat_keys(config: type[BaseModel], aliases: dict[str, str], data: Any) -> Any:
    """Constructor / JSON input of ``config`` with each flat alias key moved under its nested
    field, on top of what that field is given or its default (``{"max_turns": 4}`` →
    ``{"rollout_limits": {..., "max_turns": 4}}``); input without aliases is returned as is."""
    if not isinstance(data, dict) or not any(key in aliases for key in data):
        return data
    out = dict(data)
    for alias, path in aliases.items():
        if alias not in out:
            continue
        parent, name = path.split(".")
        node = out.get(parent, config.model_fields[parent].get_default(call_default_factory=True))
        node = node.model_dump() if isinstance(node, BaseModel) else dict(node or {})
        node[name] = out.pop(alias)
        out[parent] = node
    return out


def request_seed(base: int, *parts: object) -> int:
    """Deterministic per-request sampling seed in [0, 2**31) from ``base`` and what names the request:
    (question, sample, turn) for the OpenAI policy, (sample id, turn) for the local backend. A
    request's draws then depend on no other request (batching, concurrency, resume), and two
    models evaluated with the same base seed sample with common random numbers."""
    key = "\x1f".join(str(p) for p in (base, *parts))
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") % (2**31)
