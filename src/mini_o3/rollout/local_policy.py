"""``LocalHFPolicy`` (the ``local:DIR`` evaluation policy): a transformers model rolled out in
batches: many episodes (a question's k samples and more) run concurrently through
``batched_rollout.rollout`` on one ``HFBackend``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mini_o3.task import EpisodeSample, RolloutLimits, Trajectory
from mini_o3.task.grounding import ParserMode

from .batched_rollout import rollout
from .hf_backend import HFBackend, TokenizerCounter
from .settings import SamplingConfig
from .model_identity import model_identity


class LocalHFPolicy:
    """Loads ``model_dir`` (an ``AutoModelForImageTextToText`` checkpoint) once; ``rollout_batch``
    rolls out a batch of episodes under ``limits``, the prompt set, parser and ``sampling``, at
    most ``concurrency`` episodes per generate call."""

    def __init__(self, model_dir: str | Path, limits: RolloutLimits, sampling: SamplingConfig, *,
                 prompt_set: str, parser: ParserMode, concurrency: int, device: str = "cpu") -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ValueError(f"local policy: {model_dir} is not a model folder (no config.json)")
        self.spec = f"local:{model_identity(model_dir)}"  # names the model: resume never mixes models
        self.backend = HFBackend.from_pretrained(model_dir, device=device, max_batch_size=concurrency)
        self.processor = self.backend.processor
        self.counter = TokenizerCounter(self.processor.tokenizer)
        self.limits, self.sampling = limits, sampling
        self.prompt_set, self.parser, self.concurrency = prompt_set, parser, concurrency

    def rollout_batch(self, samples: Sequence[EpisodeSample], seed: int) -> list[Trajectory]:
        """Trajectories of ``samples`` (input order). ``seed`` is the base of every request's own
        seed (``rollout``): a sample's draws depend on its id, turn and ``seed`` only."""
        return rollout(
            self.backend, samples, self.limits, self.sampling, counter=self.counter,
            prompt_set=self.prompt_set, parser=self.parser, max_live=self.concurrency, seed=seed,
        )
