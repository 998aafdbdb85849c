"""The turn loop's control flow, once: an episode's state and its two transitions. Every engine
drives it — the synchronous ``run_episode`` (evaluator, local RL engine) and verl's async agent
loop — and only generates, tokenises and runs the crop in its own way.

Per turn (reference ``AsyncvLLMEngine._async_rollout_a_request``):

1. the engine generates at most ``state.budget()`` tokens (stop on ``</grounding>``; anything
   after it is cut, ``cut_at_tool_stop``);
2. ``state.model_turn(text, finish_reason, tokens, tool_call=...)``: a turn without a tool call
   ends the episode ``answer``, or ``void`` when it was cut by length or does not end with
   ``<answer>…</answer>``; a tool call at the last allowed turn, with the image budget spent, or
   with the context (the call included) at the cap ends it ``exceed``; otherwise it returns None
   and the engine runs the call;
3. ``state.observation(result)`` turns the crop (or the parse / crop error) into what the model
   sees next: the prompt set's observation injection with the resized crop, or its error
   injection; the engine counts its tokens;
4. ``state.observe(observation, cost)`` appends it — unless it reaches the context cap: then it is
   not added (the reference's undo) and the episode ends ``exceed`` (context).

``state.trains(...)`` is the row rule of the loss mask (an exceed row under ``ignore_exceed``, a
void one under ``ignore_void``, trains nothing); the token rule (nothing after the last
``<|im_end|>``, so a length-cut last turn is never trained) is ``grpo.final_eos_mask``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from PIL import Image

from .answer import ends_with_answer
from .crop import Crop, CropError, crop, resize_observation
from .grounding import GroundingCall, GroundingError, ParserMode, parse_grounding
from .limits import RolloutLimits
from .prompts import TOOL_STOP, PromptSet
from .trajectory import ExceedReason, FinishReason, Termination

#: Error shown to the model when its output is not valid UTF-8.
INVALID_UTF8 = "the model output is not valid UTF-8"

ToolResult = Union[Crop, CropError, GroundingError]


@dataclass(frozen=True)
class Stop:
    """How an episode ended: ``answer`` / ``void`` / ``exceed`` (with its reason)."""

    termination: Termination
    exceed_reason: Optional[ExceedReason] = None


@dataclass(frozen=True)
class Observation:
    """The environment's reply to a tool call: the injection text (``<|im_end|>`` … ``assistant\\n``)
    and, after a successful crop, the model-facing image it shows and the raw crop; after a
    failure, the error message (and no image)."""

    text: str
    image: Optional[Image.Image] = None
    crop: Optional[Crop] = None
    error: Optional[str] = None


@dataclass
class EpisodeState:
    """One episode in progress. ``raw_images`` are the full-resolution images (the original, then
    the raw crop of every shown observation), ``images`` their model-facing copies (what the
    model sees; ``observation_i`` is ``images[i]``); ``context_tokens`` starts at the prompt's
    tokens (image tokens included); ``turn`` is the 0-based index of the turn to generate (the
    number of observations and errors shown so far); ``outputs`` the assistant texts."""

    limits: RolloutLimits
    prompts: PromptSet
    raw_images: list[Image.Image]
    images: list[Image.Image]
    context_tokens: int
    turn: int = 0
    outputs: list[str] = field(default_factory=list)
    stop: Optional[Stop] = None

    @property
    def termination(self) -> Optional[Termination]:
        return self.stop.termination if self.stop else None

    @property
    def exceed_reason(self) -> Optional[ExceedReason]:
        return self.stop.exceed_reason if self.stop else None

    def budget(self) -> int:
        """``max_tokens`` of the next turn: the per-turn cap, or what the context has left (≥ 1)."""
        return max(1, min(self.limits.max_tokens_per_turn, self.limits.max_context - self.context_tokens))

    def model_turn(self, text: str, finish_reason: FinishReason, tokens: int, *, tool_call: bool) -> Optional[Stop]:
        """Record the next assistant turn (``tokens`` of ``text``); the stop it causes, or None
        when ``tool_call`` is to run (then ``observation`` / ``observe``)."""
        if self.stop is not None or self.turn >= self.limits.max_turns:
            raise RuntimeError(f"the episode has ended ({self.stop}); no turn {self.turn} to record")
        self.outputs.append(text)
        self.context_tokens += tokens
        if not tool_call:
            void = finish_reason == "length" or not ends_with_answer(text)
            return self._end(Stop("void" if void else "answer"))
        reason = self._tool_turn_exceed()
        return self._end(Stop("exceed", reason)) if reason is not None else None

    def run_tool(self, text: str, parser: ParserMode = "strict") -> tuple[Optional[GroundingCall], ToolResult]:
        """Parse the turn's call and crop: the parsed call (None when it does not parse) and the
        crop or the error. The synchronous engine's tool; verl's ``CropTool`` calls ``tool_result`` too."""
        parsed = parse_grounding(text, parser)
        result = tool_result(parsed, self.raw_images, [image.size for image in self.images],
                             relative=self.limits.relative_coordinates)
        return (parsed if isinstance(parsed, GroundingCall) else None), result

    def observation(self, result: ToolResult, shown: Optional[Image.Image] = None) -> Observation:
        """What the model sees after ``result``; ``shown`` is the model-facing crop when the tool
        already resized it (else NEAREST into [min_pixels, max_pixels] here)."""
        if isinstance(result, Crop):
            shown = shown if shown is not None else resize_observation(result.image, self.limits.min_pixels, self.limits.max_pixels)
            return Observation(self.prompts.observation_injection(self.turn), shown, result)
        return Observation(self.prompts.error_injection(result.message), error=result.message)

    def observe(self, observation: Observation, cost: int) -> Optional[Stop]:
        """Append ``observation`` (``cost`` tokens, image tokens included) and go to the next
        turn; when it would reach the context cap it is not added and the episode ends ``exceed``."""
        if self.context_tokens + cost >= self.limits.context_cap:
            return self._end(Stop("exceed", "context"))
        if observation.crop is not None:
            self.raw_images.append(observation.crop.image)
            self.images.append(observation.image)  # type: ignore[arg-type]
        self.context_tokens += cost
        self.turn += 1
        return None

    def trains(self, *, ignore_exceed: bool = True, ignore_void: bool = False) -> bool:
        """False when the whole row is masked out of the loss (exceed / void row zeroed)."""
        return row_trains(self.termination, ignore_exceed=ignore_exceed, ignore_void=ignore_void)

    def _tool_turn_exceed(self) -> Optional[ExceedReason]:
        """Why a tool call ends the episode before it runs (over-turn masking), checked in this
        order: the image budget is spent, it is the last allowed turn, the context reached the cap."""
        if len(self.images) >= self.limits.max_images:
            return "images"
        if self.turn == self.limits.max_turns - 1:
            return "turns"
        if self.context_tokens >= self.limits.context_cap:
            return "context"
        return None

    def _end(self, stop: Stop) -> Stop:
        self.stop = stop
        return stop


def tool_result(parsed: Union[GroundingCall, GroundingError], raw_images: list[Image.Image],
                shown_sizes: list[tuple[int, int]], *, relative: bool) -> ToolResult:
    """The crop tool of every engine: a parse error passes through; a call crops its source (box in
    the model-facing ``shown_sizes``' coordinates) or fails with the crop's error."""
    if isinstance(parsed, GroundingError):
        return parsed
    try:
        return crop(parsed, raw_images, shown_sizes, relative=relative)
    except TypeError as exc:  # a non-numeric coordinate from a hand-made call (verl's tool arguments)
        return CropError(str(exc))


def call_from_arguments(arguments: dict, parser: ParserMode = "strict") -> Union[GroundingCall, GroundingError]:
    """A tool call handed over as verl tool arguments: ``{"bbox_2d": [...], "source": ...}``, the
    parser's ``{"error": message}``, or ``{"text": call JSON, "parser": mode}`` (parsed here)."""
    if "error" in arguments:
        return GroundingError(str(arguments["error"]))
    if "text" in arguments:
        return parse_grounding(str(arguments["text"]), arguments.get("parser", parser))
    try:
        return GroundingCall(bbox=tuple(arguments["bbox_2d"]), source=str(arguments["source"]))  # type: ignore[arg-type]
    except (KeyError, TypeError) as exc:
        return GroundingError(f"invalid crop arguments {arguments!r:.200}: {exc}")


def row_trains(termination: Optional[Termination], *, ignore_exceed: bool = True, ignore_void: bool = False) -> bool:
    """The row rule of the loss mask: an exceed row under ``ignore_exceed``, a void one under
    ``ignore_void``, trains nothing. Seed defaults: ignore_exceed=True, ignore_void=False."""
    if ignore_exceed and termination == "exceed":
        return False
    return not (ignore_void and termination == "void")


def cut_at_tool_stop(text: str) -> tuple[str, bool]:
    """Generation stops on ``</grounding>``, whatever the engine did after it: the text up to it
    and whether anything was cut (then reported token ids no longer match the text)."""
    stop = text.find(TOOL_STOP)
    if stop >= 0 and stop + len(TOOL_STOP) < len(text):
        return text[: stop + len(TOOL_STOP)], True
    return text, False
