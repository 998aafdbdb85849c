"""``SynthConfig``: every knob of the synthetic visual-search generator, validated by pydantic."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ...task import TRAIN_LIMITS
from ..schemas import Category, Difficulty
from .grid import GRID_STRATEGIES, GridSpec, GridStrategy

#: Bumped whenever the same (config, seed) would draw different images or questions.
GENERATOR_VERSION = "synthetic-v1"

Strategy = Literal["direct", "coarse_to_fine", "recovery", "recovery_coarse_to_fine"]
#: Oracle strategies, from 1 to 3 tool turns.
STRATEGIES: tuple[Strategy, ...] = ("direct", "coarse_to_fine", "recovery", "recovery_coarse_to_fine")


def _check_range(value: tuple, name: str) -> tuple:
    low, high = value
    if low > high:
        raise ValueError(f"{name}: low {low} must be <= high {high}")
    return value


class DifficultySpec(BaseModel):
    """Knobs of one difficulty level.

    Target sizes are fractions of the canvas's geometric-mean side sqrt(W*H). For canvases above
    the model's pixel budget (2 MP) the model-facing size is then about ``frac * 1414`` px
    whatever the canvas, so the defaults put hard targets at ~3.5–5 px on the model's image.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_frac: tuple[float, float] = Field(description="target short side / sqrt(W*H), (low, high)")
    distractors: tuple[int, int] = Field(description="random distractors (shapes, words, code boxes), (low, high)")
    lookalikes: tuple[int, int] = Field(description="distractors sharing the target's colour or shape, (low, high)")

    @field_validator("target_frac")
    @classmethod
    def _frac(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0 < v <= 0.25 for v in value):
            raise ValueError(f"fractions must be in (0, 0.25], got {value}")
        return _check_range(value, "target_frac")

    @field_validator("distractors", "lookalikes")
    @classmethod
    def _counts(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not all(0 <= v <= 5000 for v in value):
            raise ValueError(f"counts must be in [0, 5000], got {value}")
        return _check_range(value, "count")


def _default_difficulties() -> dict[str, DifficultySpec]:
    return {
        "easy": DifficultySpec(target_frac=(0.025, 0.04), distractors=(40, 80), lookalikes=(0, 2)),
        "medium": DifficultySpec(target_frac=(0.007, 0.012), distractors=(100, 180), lookalikes=(3, 6)),
        "hard": DifficultySpec(target_frac=(0.0025, 0.0035), distractors=(180, 320), lookalikes=(8, 14)),
    }


class SynthConfig(BaseModel):
    """Generator settings. Defaults give 2048–4096 px canvases, an even difficulty and category
    mix and half multiple-choice questions. Hard targets stay legible after zooming thanks to
    ``min_target_px`` / ``min_font_px``; they are invisible at the model's resolution only on
    large canvases (a short side of 12 px shrinks below 5 px on canvases of ~12 MP and more).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    family: Literal["search", "grid"] = Field(
        "search", description="search: one small target among distractors (the benchmark); grid: the learning "
                              "profile's named-cell shape question (see data.synthetic.grid)")
    grid: GridSpec = Field(default_factory=GridSpec, description="knobs of the grid family")
    width_range: tuple[int, int] = Field((2048, 4096), description="canvas width in px, (low, high) inclusive")
    height_range: tuple[int, int] = Field((1536, 3072), description="canvas height in px, (low, high) inclusive")
    difficulty_mix: dict[Difficulty, float] = Field(
        default_factory=lambda: {"easy": 1.0, "medium": 1.0, "hard": 1.0},
        description="relative weights of the difficulties",
    )
    category_mix: dict[Category, float] = Field(
        default_factory=lambda: {"colour": 1.0, "text": 1.0, "shape": 1.0, "position": 1.0},
        description="relative weights of the question categories",
    )
    mc_fraction: float = Field(0.5, ge=0.0, le=1.0, description="share of multiple-choice questions (rest free-form)")
    difficulties: dict[Difficulty, DifficultySpec] = Field(
        default_factory=_default_difficulties, description="size and distractor knobs per difficulty"
    )
    distractor_frac: tuple[float, float] = Field(
        (0.003, 0.03), description="distractor size / sqrt(W*H), (low, high), log-uniform"
    )
    min_target_px: int = Field(11, ge=6, le=256, description="smallest drawn shape side in px (legible after zoom)")
    min_font_px: int = Field(9, ge=7, le=128, description="smallest font size of codes and words in px")
    code_length: int = Field(3, ge=2, le=6, description="characters in a text code")
    image_format: Literal["png"] = Field("png", description="image file format (lossless, deterministic)")
    png_compress_level: int = Field(6, ge=0, le=9, description="zlib level of PNG files")
    coldstart_rollouts: int = Field(2, ge=0, le=len(STRATEGIES), description="oracle trajectories per train question")
    coldstart_strategies: tuple[Strategy | GridStrategy, ...] = Field(
        STRATEGIES, description="oracle strategies to draw from (the family's: search STRATEGIES, grid GRID_STRATEGIES)")
    coldstart_pixels: tuple[int, int] = Field(
        (TRAIN_LIMITS.min_pixels, TRAIN_LIMITS.max_pixels),
        description="min/max pixels of the model-facing images in cold-start trajectories (match the SFT/RL limits)")

    @field_validator("width_range", "height_range")
    @classmethod
    def _size(cls, value: tuple[int, int]) -> tuple[int, int]:
        if not all(256 <= v <= 16384 for v in value):
            raise ValueError(f"canvas sides must be in [256, 16384] px, got {value}")
        return _check_range(value, "canvas size")

    @field_validator("distractor_frac")
    @classmethod
    def _distractor_frac(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0 < v <= 0.2 for v in value):
            raise ValueError(f"fractions must be in (0, 0.2], got {value}")
        return _check_range(value, "distractor_frac")

    @field_validator("difficulty_mix", "category_mix")
    @classmethod
    def _mix(cls, value: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in value.values()) or sum(value.values()) <= 0:
            raise ValueError(f"weights must be >= 0 with a positive sum, got {value}")
        return value

    @field_validator("coldstart_strategies")
    @classmethod
    def _strategies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or len(set(value)) != len(value):
            raise ValueError(f"need one or more distinct strategies, got {value}")
        return value

    @model_validator(mode="after")
    def _complete(self) -> "SynthConfig":
        allowed = GRID_STRATEGIES if self.family == "grid" else STRATEGIES
        foreign = [s for s in self.coldstart_strategies if s not in allowed]
        if foreign:
            raise ValueError(f"coldstart_strategies {foreign} are not strategies of family {self.family!r}; "
                             f"expected some of {list(allowed)}")
        _check_range(self.coldstart_pixels, "coldstart_pixels")
        for level, weight in self.difficulty_mix.items():
            if weight > 0 and level not in self.difficulties:
                raise ValueError(f"difficulty_mix uses {level!r} but difficulties has no spec for it")
        if self.coldstart_rollouts > len(self.coldstart_strategies):
            raise ValueError(
                f"coldstart_rollouts ({self.coldstart_rollouts}) exceeds the "
                f"{len(self.coldstart_strategies)} coldstart_strategies (one rollout per strategy)"
            )
        return self
