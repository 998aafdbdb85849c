"""Generation backends: ``generate(batch of requests) -> list[PolicyOutput]``. The RL engine and
the local evaluation policy batch every live episode through one.

``HFBackend`` runs ONE left-padded ``model.generate`` (KV cache) over every request of a batch with
all their images. A vLLM backend would implement the same ``RolloutBackend`` protocol.

Requests that carry a ``seed`` are sampled like vLLM's seeded requests: from their own generator
(Gumbel-max over the temperature / top-k / top-p warped logits, an exact draw from the same
distribution), so a request's tokens depend on no other row of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from mini_o3.task import PolicyOutput, image_tokens

from .settings import SamplingConfig

#: Largest valid Qwen2.5 token id; larger ids (padded vocabulary) are dropped, as in the reference.
MAX_VALID_TOKEN_ID = 151664


@dataclass(frozen=True)
class GenerationRequest:
    """One turn to generate: the raw token stream (one ``<|image_pad|>`` per image), the
    model-facing images in order, the turn's token budget, its stop strings and, optionally, its
    own sampling seed."""

    prompt: str
    images: tuple[Image.Image, ...]
    max_tokens: int
    stop: tuple[str, ...] = ()
    seed: int | None = None


class TokenizerCounter:
    """Exact context accounting with a Hugging Face tokenizer."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def text(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def image(self, size: tuple[int, int]) -> int:
        return image_tokens(size)


class RolloutBackend(Protocol):
    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[PolicyOutput]: ...


class HFBackend:
    """Batched generation with a Hugging Face ``AutoModelForImageTextToText`` (shared with the
    trainer: rollouts always use the current weights). ``max_batch_size`` chunks large batches."""

    def __init__(self, model: Any, processor: Any, *, device: str = "cpu", max_batch_size: int = 64) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.model, self.processor, self.device = model, processor, device
        self.max_batch_size = max_batch_size
        tokenizer = processor.tokenizer
        self.eos_ids = set(_as_list(model.generation_config.eos_token_id)) or {tokenizer.eos_token_id}
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.generated_tokens = 0  # running count, for tokens/s

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, *, device: str = "cpu", max_batch_size: int = 64) -> HFBackend:
        """Load an ``AutoModelForImageTextToText`` checkpoint and its processor for inference: in
        float32 on CPU (bf16 matmuls are ~10x slower there; the RL engine trains in float32 on CPU
        too), in the checkpoint's dtype elsewhere."""
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        processor = AutoProcessor.from_pretrained(str(model_dir))
        dtype = torch.float32 if str(device).startswith("cpu") else "auto"
        model = AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype=dtype).to(device).eval()
        return cls(model, processor, device=device, max_batch_size=max_batch_size)

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[PolicyOutput]:
        # One generate call per stop-string set (in practice all requests share ("</grounding>",)).
        order = sorted(range(len(requests)), key=lambda i: requests[i].stop)
        by_index: dict[int, PolicyOutput] = {}
        start = 0
        while start < len(order):
            stop = requests[order[start]].stop
            end = start
            while end < len(order) and requests[order[end]].stop == stop and end - start < self.max_batch_size:
                end += 1
            chunk = order[start:end]
            for i, out in zip(chunk, self._generate_chunk([requests[i] for i in chunk], sampling)):
                by_index[i] = out
            start = end
        return [by_index[i] for i in range(len(requests))]

    def _generate_chunk(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[PolicyOutput]:
        import torch

        tokenizer = self.processor.tokenizer
        images = [image for request in requests for image in request.images]
        inputs = self.processor(
            text=[request.prompt for request in requests],
            images=images or None,
            padding=True,
            padding_side="left",
            return_tensors="pt",
        ).to(self.device)
        budgets = [max(1, request.max_tokens) for request in requests]
        kwargs: dict[str, Any] = dict(max_new_tokens=max(budgets), pad_token_id=self.pad_id)
        stop = list(requests[0].stop)
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=tokenizer)
        seeds = [request.seed for request in requests]
        samples = sampling.do_sample and sampling.temperature > 0  # temperature 0 is greedy, as in vLLM
        if samples and None not in seeds:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None,
                          logits_processor=seeded_sampler(seeds, sampling))  # type: ignore[arg-type]
        elif samples:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p,
                          top_k=max(0, sampling.top_k))
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                out = self.model.generate(**inputs, **kwargs)
        finally:
            self.model.train(was_training)
        prompt_len = inputs["input_ids"].shape[1]
        results = []
        for row, budget, request in zip(out[:, prompt_len:].tolist(), budgets, requests):
            results.append(self._finish(row, budget, request.stop))
        return results

    def _finish(self, row: list[int], budget: int, stop: tuple[str, ...]) -> PolicyOutput:
        """Cut one generated row where its sequence ended (EOS, stop string or budget)."""
        tokenizer = self.processor.tokenizer
        ids, stopped = [], False
        for token in row[:budget]:
            if token in self.eos_ids:
                # A row stopped by a stop string is followed by padding (= an EOS id here).
                if not (stop and tokenizer.decode(ids, skip_special_tokens=False).endswith(tuple(stop))):
                    ids.append(token)
                stopped = True
                break
            ids.append(token)
        if not stopped and stop and tokenizer.decode(ids, skip_special_tokens=False).endswith(tuple(stop)):
            stopped = True
        kept = [i for i in ids if i <= MAX_VALID_TOKEN_ID]
        self.generated_tokens += len(kept)
        text = tokenizer.decode(kept, skip_special_tokens=True)
        finish = "stop" if stopped or len(ids) < budget else "length"
        return PolicyOutput(text=text, finish_reason=finish, num_tokens=len(kept), token_ids=tuple(kept))


def seeded_sampler(seeds: Sequence[int], sampling: SamplingConfig) -> Any:
    """Logits processors that turn greedy decoding into sampling with one generator per row: the
    temperature / top-k / top-p warpers, then Gumbel noise drawn from the row's generator (the
    argmax of logits + Gumbel noise is a draw from their softmax). A row's t-th token uses its
    generator's t-th draw, whatever else is in the batch."""
    import torch
    from transformers import (
        LogitsProcessor,
        LogitsProcessorList,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    class GumbelNoise(LogitsProcessor):
        def __init__(self) -> None:
            self.generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            u = torch.stack([torch.rand(scores.shape[-1], generator=g, dtype=torch.float64) for g in self.generators])
            gumbel = -torch.log(-torch.log(u.clamp(min=1e-300)))
            return scores + gumbel.to(scores.device, scores.dtype)

    warpers: list[Any] = [TemperatureLogitsWarper(sampling.temperature)]
    if sampling.top_k > 0:
        warpers.append(TopKLogitsWarper(sampling.top_k))
    if sampling.top_p < 1.0:
        warpers.append(TopPLogitsWarper(sampling.top_p))
    return LogitsProcessorList([*warpers, GumbelNoise()])


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [int(value)]
