"""``run_episode``: the synchronous turn loop (evaluator, local RL engine). An ``Episode`` drives
the shared core (``turn_loop.EpisodeState``: limits, stops, observations — the same one verl's
agent loop drives) with a policy output per turn, the kit's parser and crop as the tool and a
``TokenCounter``, and records the episode as a ``Trajectory`` (turns + model / env segments).
``run_episode`` feeds one ``Episode`` from a ``Policy``; the batched rollout feeds many at once.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Optional, Protocol, Union

from PIL import Image

from .crop import as_rgb, resize_initial
from .grounding import GroundingError, ParserMode, has_tool_call
from .limits import ApproxTokenCounter, RolloutLimits, TokenCounter, TRAIN_LIMITS
from .prompts import DEFAULT_PROMPT_SET, IM_END, IMAGE_PLACEHOLDER, TOOL_STOP, PromptSet, get_prompt_set
from .trajectory import FinishReason, Segment, Trajectory, Turn
from .turn_loop import INVALID_UTF8, EpisodeState, Stop, cut_at_tool_stop


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
    episode = Episode(sample, limits, prompt_set=prompt_set, parser=parser, counter=counter)
    while (request := episode.request()) is not None:
        episode.feed(policy(request))
    return episode.trajectory


class Episode:
    """One synchronous episode, a step at a time: ``request()`` is the next turn's policy request
    (None once the episode has ended), ``feed(output)`` applies the policy's output (the model
    turn, then the tool and its observation). ``run_episode`` drives one; the batched rollout
    drives many in lock-step. ``trajectory`` is the record so far."""

    def __init__(
        self,
        sample: EpisodeSample,
        limits: RolloutLimits = TRAIN_LIMITS,
        *,
        prompt_set: Union[str, PromptSet] = DEFAULT_PROMPT_SET,
        parser: ParserMode = "strict",
        counter: Optional[TokenCounter] = None,
    ) -> None:
        prompts = get_prompt_set(prompt_set) if isinstance(prompt_set, str) else prompt_set
        self.counter, self.parser = counter or ApproxTokenCounter(), parser
        if IMAGE_PLACEHOLDER not in sample.problem:
            raise ValueError(f"sample {sample.sample_id!r}: problem must contain {IMAGE_PLACEHOLDER!r}")
        raw, first = _original(sample, limits)
        prompt = prompts.initial_prompt(sample.problem)
        # The single image pad in the prompt expands to the image's tokens.
        self.state = EpisodeState(limits, prompts, [raw], [first], self.counter.text(prompt) + self.counter.image(first.size) - 1)
        self.trajectory = Trajectory(problem=sample.problem, prompt_set=prompts, limits=limits, sample_id=sample.sample_id,
                                     raw_images=self.state.raw_images, images=self.state.images,
                                     context_tokens=self.state.context_tokens)
        self.trajectory.segments.append(Segment("env", prompt, image=0))

    def request(self) -> Optional[PolicyRequest]:
        """What the policy answers next; None when the episode has ended."""
        if self.state.stop is not None:
            return None
        return PolicyRequest(self.trajectory, self.state.turn, self.state.budget())

    def feed(self, output: Union[str, bytes, PolicyOutput]) -> Optional[Stop]:
        """Apply the policy's output for the requested turn; the stop it causes, or None."""
        state, traj, counter = self.state, self.trajectory, self.counter
        out = _normalise(output)
        turn = Turn(index=state.turn, output=out.text, finish_reason=out.finish_reason, token_ids=out.token_ids)
        turn.tokens = out.num_tokens if out.num_tokens is not None else counter.text(out.text)
        tool_call = out.invalid_utf8 or has_tool_call(out.text)
        stop = state.model_turn(out.text, out.finish_reason, turn.tokens, tool_call=tool_call)
        traj.turns.append(turn)
        traj.segments.extend(_model_segments(out, tool_call))
        traj.context_tokens = state.context_tokens
        if stop is not None:
            return self._ended(stop)
        call, result = (None, GroundingError(INVALID_UTF8)) if out.invalid_utf8 else state.run_tool(out.text, self.parser)
        observation = state.observation(result)
        cost = counter.text(observation.text)
        if observation.image is not None:
            cost += counter.image(observation.image.size) - 1
        else:
            turn.tool_call = call  # an error turn records its call (if it parsed) even when undone
        stop = state.observe(observation, cost)
        traj.context_tokens = state.context_tokens
        if stop is not None:
            return self._ended(stop)  # the observation is not added (reference undo)
        turn.tool_call, turn.error = call, observation.error
        if observation.crop is not None:
            turn.crop, turn.observation = observation.crop, len(traj.images) - 1
        traj.segments.append(Segment("env", observation.text, image=turn.observation))
        return None

    def _ended(self, stop: Stop) -> Stop:
        self.trajectory.termination, self.trajectory.exceed_reason = stop.termination, stop.exceed_reason
        return stop


def _model_segments(out: "_Output", tool_call: bool) -> list[Segment]:
    """The model segments of a turn. An answer turn that stopped ends with the EOS the model
    generated (already in its ids when reported); a tool turn ends at ``</grounding>``."""
    if tool_call:
        return [Segment("model", out.text, token_ids=out.token_ids)]
    if out.token_ids is not None:
        return [Segment("model", out.text + (IM_END if out.finish_reason == "stop" else ""), token_ids=out.token_ids)]
    return [Segment("model", out.text)] + ([Segment("model", IM_END)] if out.finish_reason == "stop" else [])


@dataclass
class _Output:
    text: str
    finish_reason: FinishReason
    num_tokens: Optional[int]
    invalid_utf8: bool
    token_ids: Optional[tuple[int, ...]] = None


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
    text, cut = cut_at_tool_stop(text)
    if cut:  # the reported ids no longer match the text: engines re-tokenise it
        ids = None
    return _Output(text, out.finish_reason, out.num_tokens, invalid, ids)


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
