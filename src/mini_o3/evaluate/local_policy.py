"""``LocalHFPolicy``: a transformers model evaluated in batches: many episodes (a question's k
samples and more) run concurrently through ``batched_rollout.rollout`` on one ``HFBackend``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mini_o3.task import EpisodeSample, Trajectory

from .batched_rollout import rollout
from .config import EvalConfig
from .hf_backend import HFBackend, SamplingParams, TokenizerCounter
from .model_identity import model_identity


class LocalHFPolicy:
    """Loads ``model_dir`` (an ``AutoModelForImageTextToText`` checkpoint) once; ``rollout_batch``
    rolls out a batch of episodes under the config's limits, prompts, parser and sampling."""

    def __init__(self, model_dir: str | Path, config: EvalConfig, *, device: str = "cpu") -> None:
        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ValueError(f"local policy: {model_dir} is not a model folder (no config.json)")
        self.spec = f"local:{model_identity(model_dir)}"  # names the model: resume never mixes models
        self.backend = HFBackend.from_pretrained(model_dir, device=device, max_batch_size=config.concurrency)
        self.processor = self.backend.processor
        self.counter = TokenizerCounter(self.processor.tokenizer)
        self.config = config
        self.limits = config.limits()
        self.sampling = SamplingParams(
            do_sample=config.do_sample, temperature=config.temperature, top_p=config.top_p, top_k=config.top_k,
        )

    def rollout_batch(self, samples: Sequence[EpisodeSample], seed: int) -> list[Trajectory]:
        """Trajectories of ``samples`` (input order); ``seed`` seeds torch for the whole batch."""
        import torch

        torch.manual_seed(seed)
        return rollout(
            self.backend, samples, self.limits, self.sampling, counter=self.counter,
            prompt_set=self.config.prompt_set, parser=self.config.parser, max_live=self.config.concurrency,
        )
