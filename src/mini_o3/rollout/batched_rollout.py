"""Lock-step batched rollouts: every sample is a task-kit ``Episode`` (the step-driven
``run_episode``); each round collects the next request of every live episode and answers all of
them with ONE ``backend.generate`` call. Requests are batched in episode order, so a seeded run
is deterministic. With ``seed``, every request carries its own seed from (seed, sample id, turn):
an episode's draws then depend on no other episode (batch size, concurrency, resume), and two
models rolled out with the same seed sample with common random numbers (their paired difference
has less variance than two independent runs')."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from mini_o3.task import (
    DEFAULT_PROMPT_SET,
    Episode,
    EpisodeSample,
    PolicyOutput,
    PromptSet,
    RolloutLimits,
    TokenCounter,
    Trajectory,
)

from .hf_backend import GenerationRequest, RolloutBackend
from .settings import SamplingConfig, request_seed


@dataclass
class RolloutStats:
    """Counters of one ``rollout`` call."""

    generate_calls: int = 0
    generate_seconds: float = 0.0
    generated_tokens: int = 0


class RolloutError(RuntimeError):
    """An episode failed; the message names its sample."""


def rollout(
    backend: RolloutBackend,
    samples: Sequence[EpisodeSample],
    limits: RolloutLimits,
    sampling: SamplingConfig,
    *,
    counter: TokenCounter | None = None,
    prompt_set: str | PromptSet = DEFAULT_PROMPT_SET,
    parser: str = "strict",
    max_live: int = 1024,
    stats: RolloutStats | None = None,
    seed: int | None = None,
) -> list[Trajectory]:
    """Roll out one episode per sample (at most ``max_live`` at once); trajectories in input order.
    ``seed``: the base of per-request seeds (samples without a ``sample_id`` use their index).
    A failing episode (its image, its output, the backend) does not stop the others; the first
    failure, by sample order, is raised at the end as a ``RolloutError``."""
    if max_live < 1:
        raise ValueError(f"max_live must be >= 1, got {max_live}")
    stats = stats if stats is not None else RolloutStats()
    live: dict[int, Episode] = {}
    results: list[Trajectory | None] = [None] * len(samples)
    errors: dict[int, BaseException] = {}
    next_index = 0
    # Episodes that ended in the last round (or failed to start in this refill) hold their slot
    # until the next round's refill: the threaded batcher this replaces refilled before their
    # threads had left, and batch composition decides what a seeded sampler draws.
    ended = 0
    while True:
        while next_index < len(samples) and len(live) + ended < max_live:
            try:
                live[next_index] = Episode(samples[next_index], limits, prompt_set=prompt_set, parser=parser,  # type: ignore[arg-type]
                                           counter=counter)
            except BaseException as exc:  # reported at the end
                errors[next_index] = exc
                ended += 1
            next_index += 1
        ended = 0
        if not live:
            if next_index >= len(samples):
                break
            continue
        batch = sorted(live.items())
        requests = [episode.request() for _, episode in batch]  # live episodes have one
        generation = [
            GenerationRequest(r.trajectory.token_stream(), tuple(r.trajectory.images), r.max_tokens, tuple(r.stop),
                              None if seed is None else request_seed(seed, samples[i].sample_id or i, r.turn))
            for (i, _), r in zip(batch, requests)  # type: ignore[union-attr]
        ]
        start = time.perf_counter()
        try:
            outputs: Sequence[PolicyOutput | BaseException] = backend.generate(generation, sampling)
            if len(outputs) != len(generation):
                raise RuntimeError(f"backend returned {len(outputs)} outputs for {len(generation)} requests")
        except BaseException as exc:
            outputs = [exc] * len(generation)
        stats.generate_seconds += time.perf_counter() - start
        stats.generate_calls += 1
        stats.generated_tokens += sum(o.num_tokens or 0 for o in outputs if isinstance(o, PolicyOutput))
        for (index, episode), out in zip(batch, outputs):
            try:
                if isinstance(out, BaseException):
                    raise out
                episode.feed(out)
            except BaseException as exc:  # reported at the end
                errors[index] = exc
                del live[index]
                ended += 1
                continue
            if episode.request() is None:
                results[index] = episode.trajectory
                del live[index]
                ended += 1
    if errors:
        index = min(errors)
        sample_id = samples[index].sample_id or f"#{index}"
        raise RolloutError(f"episode of sample {sample_id!r} failed: {errors[index]!r}") from errors[index]
    return [r for r in results if r is not None]
