"""Lock-step batched rollouts: every episode runs the task kit's ``run_episode`` in its own thread;
its policy call parks the request, and once every live episode is parked (or finished) the
batcher answers all of them with ONE ``backend.generate`` call. Requests are batched in episode
order, so a seeded run is deterministic whatever the thread timing."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from mini_o3.task import (
    DEFAULT_PROMPT_SET,
    EpisodeSample,
    PolicyOutput,
    PolicyRequest,
    PromptSet,
    RolloutLimits,
    TokenCounter,
    Trajectory,
    run_episode,
)

from .hf_backend import GenerationRequest, RolloutBackend, SamplingParams


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
    sampling: SamplingParams,
    *,
    counter: TokenCounter | None = None,
    prompt_set: str | PromptSet = DEFAULT_PROMPT_SET,
    parser: str = "strict",
    max_live: int = 1024,
    stats: RolloutStats | None = None,
) -> list[Trajectory]:
    """Roll out one episode per sample (at most ``max_live`` at once); trajectories in input order."""
    import time

    if max_live < 1:
        raise ValueError(f"max_live must be >= 1, got {max_live}")
    stats = stats if stats is not None else RolloutStats()
    cond = threading.Condition()
    pending: dict[int, PolicyRequest] = {}
    answers: dict[int, PolicyOutput | BaseException] = {}
    live: set[int] = set()
    results: list[Trajectory | None] = [None] * len(samples)
    errors: dict[int, BaseException] = {}
    counter = _LockedCounter(counter) if counter is not None else None

    def worker(index: int) -> None:
        def policy(request: PolicyRequest) -> PolicyOutput:
            with cond:
                pending[index] = request
                cond.notify_all()
                while index not in answers:
                    cond.wait()
                answer = answers.pop(index)
            if isinstance(answer, BaseException):
                raise answer
            return answer

        try:
            results[index] = run_episode(policy, samples[index], limits, prompt_set=prompt_set, parser=parser, counter=counter)  # type: ignore[arg-type]
        except BaseException as exc:  # reported by the batcher
            errors[index] = exc
        finally:
            with cond:
                live.discard(index)
                cond.notify_all()

    threads: list[threading.Thread] = []
    next_index = 0
    while True:
        with cond:
            while next_index < len(samples) and len(live) < max_live:
                live.add(next_index)
                thread = threading.Thread(target=worker, args=(next_index,), daemon=True, name=f"episode-{next_index}")
                threads.append(thread)
                thread.start()
                next_index += 1
            while live and len(pending) < len(live):
                cond.wait()
            if not live:
                if next_index >= len(samples):
                    break
                continue
            batch = sorted(pending.items())
            pending.clear()
        requests = [
            GenerationRequest(r.trajectory.token_stream(), tuple(r.trajectory.images), r.max_tokens, tuple(r.stop))
            for _, r in batch
        ]
        start = time.perf_counter()
        try:
            outputs: Sequence[PolicyOutput | BaseException] = backend.generate(requests, sampling)
            if len(outputs) != len(requests):
                raise RuntimeError(f"backend returned {len(outputs)} outputs for {len(requests)} requests")
        except BaseException as exc:
            outputs = [exc] * len(requests)
        stats.generate_seconds += time.perf_counter() - start
        stats.generate_calls += 1
        stats.generated_tokens += sum(o.num_tokens or 0 for o in outputs if isinstance(o, PolicyOutput))
        with cond:
            answers.update({index: out for (index, _), out in zip(batch, outputs)})
            cond.notify_all()
    for thread in threads:
        thread.join()
    if errors:
        index = min(errors)
        sample_id = samples[index].sample_id or f"#{index}"
        raise RolloutError(f"episode of sample {sample_id!r} failed: {errors[index]!r}") from errors[index]
    return [r for r in results if r is not None]


class _LockedCounter:
    """Serialises a token counter shared by the episode threads (HF fast tokenizers are not
    safe to call from several threads at once)."""

    def __init__(self, inner: TokenCounter) -> None:
        self.inner, self.lock = inner, threading.Lock()

    def text(self, text: str) -> int:
        with self.lock:
            return self.inner.text(text)

    def image(self, size: tuple[int, int]) -> int:
        with self.lock:
            return self.inner.image(size)
