"""``run_episode``: THE multi-turn loop. Both RL engines and the evaluator call it; nothing else
re-implements it.

Per turn (reference ``AsyncvLLMEngine._async_rollout_a_request``):

1. the policy returns the next assistant text (generation stops on ``</grounding>``);
2. a turn without ``<grounding>…</grounding>`` is the answer turn: the episode ends ``answer``,
   or ``void`` when it was cut by length or does not end with ``<answer>…</answer>``;
3. a tool call at the last allowed turn, with the image budget spent, or with the context at the
   cap ends the episode ``exceed`` (over-turn masking drops such episodes from the loss);
4. otherwise the call is parsed and cropped: a success appends the observation (and the resized
   crop), a failure the error message; if the observation pushes the context over the cap it is
   undone and the episode ends ``exceed``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Optional, Protocol, Union

from PIL import Image

from .answer import ends_with_answer
from .crop import Crop, as_rgb, crop, resize_initial, resize_observation
from .grounding import GroundingError, ParserMode, has_tool_call, parse_grounding
from .limits import ApproxTokenCounter, RolloutLimits, TokenCounter, TRAIN_LIMITS
from .prompts import DEFAULT_PROMPT_SET, IM_END, IMAGE_PLACEHOLDER, TOOL_STOP, PromptSet, get_prompt_set
from .trajectory import ExceedReason, FinishReason, Segment, Termination, Trajectory, Turn

#: Error shown to the model when its output is not valid UTF-8.
INVALID_UTF8 = "the model output is not valid UTF-8"


@dataclass(frozen=True)
class EpisodeSample:
    """One question: ``problem`` holds ``<image>\\n`` + question; ``image`` is the raw original."""

    problem: str
    image: Union[Image.Image, str, os.PathLike]
    sample_id: str = ""


@dataclass(frozen=True)
class PolicyRequest:
    """What a policy sees: the trajectory so far and the generation budget of this turn."""

    trajectory: Trajectory
    turn: int
    max_tokens: int
    stop: tuple[str, ...] = (TOOL_STOP,)


@dataclass(frozen=True)
class PolicyOutput:
    """A policy's answer. ``num_tokens`` (when known) replaces the estimated count; ``token_ids``
    (when known) are the generated ids, EOS included when generation ended on it."""

    text: Union[str, bytes]
    finish_reason: FinishReason = "stop"
    num_tokens: Optional[int] = None
    token_ids: Optional[tuple[int, ...]] = None


class Policy(Protocol):
    def __call__(self, request: PolicyRequest) -> Union[str, bytes, PolicyOutput]: ...


def run_episode(
    policy: Policy,
    sample: EpisodeSample,
    limits: RolloutLimits = TRAIN_LIMITS,
    *,
    prompt_set: Union[str, PromptSet] = DEFAULT_PROMPT_SET,
    parser: ParserMode = "strict",
    counter: Optional[TokenCounter] = None,
) -> Trajectory:
    """Roll out one episode of ``policy`` on ``sample`` under ``limits``; returns the record."""
    prompts = get_prompt_set(prompt_set) if isinstance(prompt_set, str) else prompt_set
    counter = counter or ApproxTokenCounter()
    if IMAGE_PLACEHOLDER not in sample.problem:
        raise ValueError(f"sample {sample.sample_id!r}: problem must contain {IMAGE_PLACEHOLDER!r}")
    raw, first = _original(sample, limits)
    traj = Trajectory(
        problem=sample.problem,
        prompt_set=prompts,
        limits=limits,
        sample_id=sample.sample_id,
        raw_images=[raw],
        images=[first],
    )
    prompt = prompts.initial_prompt(sample.problem)
    traj.segments.append(Segment("env", prompt, image=0))
    # The single image pad in the prompt expands to the image's tokens.
    traj.context_tokens = counter.text(prompt) + counter.image(first.size) - 1

    for t in range(limits.max_turns):
        budget = max(1, min(limits.max_tokens_per_turn, limits.max_context - traj.context_tokens))
        out = _normalise(policy(PolicyRequest(traj, t, budget)))
        turn = Turn(index=t, output=out.text, finish_reason=out.finish_reason, token_ids=out.token_ids)
        turn.tokens = out.num_tokens if out.num_tokens is not None else counter.text(out.text)
        traj.turns.append(turn)
        if out.invalid_utf8 is False and not has_tool_call(out.text):
            if out.token_ids is not None:  # the ids already hold the EOS the model generated
                eos = IM_END if out.finish_reason == "stop" else ""
                traj.segments.append(Segment("model", out.text + eos, token_ids=out.token_ids))
            else:
                traj.segments.append(Segment("model", out.text))
                if out.finish_reason == "stop":
                    traj.segments.append(Segment("model", IM_END))  # the EOS the model generated
            traj.context_tokens += turn.tokens
            traj.termination = answer_termination(out.text, out.finish_reason)
            return traj
        traj.segments.append(Segment("model", out.text, token_ids=out.token_ids))
        traj.context_tokens += turn.tokens

        reason = tool_turn_exceed(len(traj.images), t, traj.context_tokens, limits)
        if reason is not None:
            return _exceed(traj, reason)

        result = _tool_result(out, traj, limits, parser)
        if isinstance(result, Crop):
            shown = resize_observation(result.image, limits.min_pixels, limits.max_pixels)
            injection = prompts.observation_injection(t)
            cost = counter.text(injection) + counter.image(shown.size) - 1
            if observation_overflows(traj.context_tokens, cost, limits):
                return _exceed(traj, "context")  # the observation is not added (reference undo)
            turn.tool_call, turn.crop, turn.observation = out.call, result, len(traj.images)
            traj.raw_images.append(result.image)
            traj.images.append(shown)
            traj.segments.append(Segment("env", injection, image=turn.observation))
        else:
            turn.tool_call = out.call
            turn.error = result.message
            injection = prompts.error_injection(result.message)
            cost = counter.text(injection)
            if observation_overflows(traj.context_tokens, cost, limits):
                turn.error = None
                return _exceed(traj, "context")
            traj.segments.append(Segment("env", injection))
        traj.context_tokens += cost
    raise AssertionError("unreachable: the last turn always answers or exceeds")


def answer_termination(text: str, finish_reason: FinishReason) -> Termination:
    """How a turn without a tool call ends the episode: ``void`` when generation was cut by length
    or the text does not end with ``<answer>…</answer>``, else ``answer``."""
    return "void" if finish_reason == "length" or not ends_with_answer(text) else "answer"


def tool_turn_exceed(n_images: int, turn: int, context_tokens: int, limits: RolloutLimits) -> Optional[ExceedReason]:
    """Why a tool call at 0-based ``turn`` ends the episode before it runs (over-turn masking), or
    None: the image budget is spent (``images``), it is the last allowed turn (``turns``), or the
    context (the call included) reached the cap (``context``). Checked in this order."""
    if n_images >= limits.max_images:
        return "images"
    if turn == limits.max_turns - 1:
        return "turns"
    if context_tokens >= limits.context_cap:
        return "context"
    return None


def observation_overflows(context_tokens: int, cost: int, limits: RolloutLimits) -> bool:
    """True when appending an observation (or error message) of ``cost`` tokens reaches the context
    cap: the observation is not added and the episode ends ``exceed`` (context)."""
    return context_tokens + cost >= limits.context_cap


def _exceed(traj: Trajectory, reason: str) -> Trajectory:
    traj.termination = "exceed"
    traj.exceed_reason = reason  # type: ignore[assignment]
    return traj


@dataclass
class _Output:
    text: str
    finish_reason: FinishReason
    num_tokens: Optional[int]
    invalid_utf8: bool
    token_ids: Optional[tuple[int, ...]] = None
    call: object = None


def _normalise(raw: Union[str, bytes, PolicyOutput]) -> _Output:
    """Coerce a policy's return value; invalid UTF-8 is replaced and flagged, never raised."""
    out = raw if isinstance(raw, PolicyOutput) else PolicyOutput(text=raw)
    if out.finish_reason not in ("stop", "length"):
        raise ValueError(f"policy finish_reason must be 'stop' or 'length', got {out.finish_reason!r}")
    text, invalid = out.text, False
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            text, invalid = text.decode("utf-8", "replace"), True
    elif not isinstance(text, str):
        raise TypeError(f"policy must return str, bytes or PolicyOutput, got {type(text).__name__}")
    else:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates
            text, invalid = text.encode("utf-8", "replace").decode("utf-8"), True
    ids = tuple(out.token_ids) if out.token_ids is not None and not invalid else None
    stop = text.find(TOOL_STOP)
    if stop >= 0 and stop + len(TOOL_STOP) < len(text):
        # Generation stops on </grounding>, whatever the policy did after it; the reported ids no
        # longer match the text, so engines re-tokenise it.
        text, ids = text[: stop + len(TOOL_STOP)], None
    return _Output(text, out.finish_reason, out.num_tokens, invalid, ids)


def _tool_result(out: _Output, traj: Trajectory, limits: RolloutLimits, parser: ParserMode):
    if out.invalid_utf8:
        return GroundingError(INVALID_UTF8)
    parsed = parse_grounding(out.text, parser)
    if isinstance(parsed, GroundingError):
        return parsed
    out.call = parsed
    sizes = [image.size for image in traj.images]
    return crop(parsed, traj.raw_images, sizes, relative=limits.relative_coordinates)


def _original(sample: EpisodeSample, limits: RolloutLimits) -> tuple[Image.Image, Image.Image]:
    """The raw original in RGB (the reference's ``load_image``: ``Image.open(path).convert("RGB")``)
    and its model-facing copy. For a file, both are cached by (path, mtime, size, pixel bounds): the
    k samples of one question run back to back, and the LANCZOS resize of a 12 MP original costs
    ~0.1 s. The images are never mutated, so episodes can share them."""
    if isinstance(sample.image, Image.Image):
        raw = as_rgb(sample.image)
        return raw, resize_initial(raw, limits.min_pixels, limits.max_pixels)
    try:
        stat = os.stat(sample.image)
    except OSError as exc:
        raise ValueError(f"sample {sample.sample_id!r}: cannot read image {os.fspath(sample.image)!r}: {exc}") from exc
    key = (os.path.abspath(sample.image), stat.st_mtime_ns, stat.st_size, limits.min_pixels, limits.max_pixels)
    try:
        return _cached_original(*key)
    except (OSError, Image.DecompressionBombError) as exc:
        raise ValueError(f"sample {sample.sample_id!r}: cannot read image {os.fspath(sample.image)!r}: {exc}") from exc


@functools.lru_cache(maxsize=8)
def _cached_original(path: str, mtime_ns: int, size: int, min_pixels: int, max_pixels: int) -> tuple[Image.Image, Image.Image]:
    with Image.open(path) as image:
        raw = image.convert("RGB")  # a copy, also when the file is RGB
    return raw, resize_initial(raw, min_pixels, max_pixels)
