"""The learning profile's tokenizer (``TINY_PROFILES["learn"]``): a reduced BPE plus one token per
fixed protocol string, which still encodes any text exactly."""

from __future__ import annotations

import pytest

from mini_o3.task import get_prompt_set, tool_turn
from mini_o3.tiny import TINY_PROFILES, TinySpec, build_tiny_tokenizer, protocol_phrases, tiny_config

pytestmark = pytest.mark.slow  # trains a BPE on the protocol corpus (~5 s)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer(TINY_PROFILES["learn"])


def test_each_fixed_protocol_string_is_one_token(tokenizer):
    prompts = get_prompt_set()
    assert len(tokenizer.encode(prompts.system)) == 1
    turn = prompts.observation_text(1)  # "After the above Action 1, ... (Observation 2):\n<image>.\nContinue ..."
    pieces = [tokenizer.decode([i]) for i in tokenizer.encode(turn)]
    assert pieces[0] == "After the above Action " and pieces[-1].startswith(".\nContinue your reasoning")
    assert len(pieces) <= 12  # the action / observation numbers and "<image>" are the only BPE pieces
    call = tool_turn("Zoom in on the north-west block.", [0.0, 0.0, 0.5, 0.5])
    pieces = [tokenizer.decode([i]) for i in tokenizer.encode(call)]
    assert pieces[0] == "<think>" and '</think>\n<grounding>{"bbox_2d": [' in pieces and "original_image" in pieces


@pytest.mark.parametrize("text", [
    "", "plain words", "After the above Action 12", "<think>é ✓ 漢字</think>\n<grounding>{\"bbox_2d\": [1, 2]}",
    "observation_7 original_imageX", "\x00\x01 bytes",
])
def test_any_text_round_trips(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_phrases_come_from_the_task_kit_and_the_model_has_a_row_for_every_id(tokenizer):
    phrases = protocol_phrases()
    assert get_prompt_set().system in phrases and "</answer>" in phrases and "" not in phrases
    assert tiny_config(TINY_PROFILES["learn"], tokenizer).text_config.vocab_size >= len(tokenizer)
    assert len(build_tiny_tokenizer(TINY_PROFILES["learn"].model_copy(update={"phrase_tokens": False}))) \
        == len(tokenizer) - len(phrases)


def test_phrase_tokens_need_the_reduced_vocabulary():
    with pytest.raises(ValueError, match="phrase_tokens needs vocab='reduced'"):
        TinySpec(phrase_tokens=True)


def test_the_grid_names_each_quadrant_with_one_token(tokenizer):
    """Naming the crop is then a one-token copy from the question (RESULTS.md, "Learning profile":
    two-token names such as " north" "-west" stalled SFT for 400+ steps)."""
    from mini_o3.data.synthetic.grid import LEVEL_NAMES

    for names, template in LEVEL_NAMES:
        for name in names:
            pieces = [tokenizer.decode([i]) for i in tokenizer.encode(f"What shape is drawn in {template.format(name)}?")]
            assert name in [piece.strip() for piece in pieces], (name, pieces)
