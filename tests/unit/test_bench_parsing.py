"""Converter helpers: option parsing, letters, ids, V* shuffles, MME language detection."""

from __future__ import annotations

import pytest

from pathlib import Path

from mini_o3.data.bench.draft import (
    answer_letter, natural_key, safe_id, split_options, strip_choice_prefixes, text_field,
)
from mini_o3.data.bench.images import RowError
from mini_o3.data.bench.mme_realworld import _choices, file_language, language_of
from mini_o3.data.bench.vstar import shuffle_options, stable_hash


def test_split_options_lines_inline_and_trailer():
    text = "What is the color of the cup?\n(A) red\n(B) dark blue\n(C) green\nAnswer with the letter."
    expected = ("What is the color of the cup?", ["red", "dark blue", "green"], "Answer with the letter.")
    assert split_options(text) == expected
    assert split_options("Left or right? (A) left (B) right") == ("Left or right?", ["left", "right"], "")
    # a "(B)" inside the question does not start the run; the run must start at (A)
    assert split_options("Is (B) here?\n(A) yes\n(B) no")[1] == ["yes", "no"]


@pytest.mark.parametrize("text", ["No options here", "(A) only one", "\n(A) x\n(B) y"])
def test_split_options_refuses_malformed_text(text):
    with pytest.raises(RowError):
        split_options(text)


def test_choices_letters_and_fields():
    assert strip_choice_prefixes(["(A) 1", "(B) two words", "(C)3"]) == ["1", "two words", "3"]
    for bad in (["1", "2"], ["(A) 1", "(C) 2"], "(A) 1", ["(A) 1"]):
        with pytest.raises(RowError):
            strip_choice_prefixes(bad)
    assert [answer_letter(v, 4) for v in ("B", "(c)", " d. ")] == ["B", "C", "D"]
    for bad in ("E", "AB", "", "1"):
        with pytest.raises(RowError):
            answer_letter(bad, 4)
    assert text_field({"a": 3}, "a") == "3" and text_field({"a": None}, "a", required=False) == ""
    for row in ({}, {"a": "  "}, {"a": float("nan")}, {"a": ["x"]}):
        with pytest.raises(RowError):
            text_field(row, "a")


def test_safe_ids():
    assert safe_id("mme_realworld", "perception/remote sensing/0001") == "mme_realworld_perception_remote_sensing_0001"
    assert safe_id("vstar", 12) == "vstar_12" and safe_id("../..") == "row"


def test_vstar_shuffle_is_seeded_per_item_and_keeps_the_answer():
    options = ["right", "w1", "w2", "w3"]
    shuffled, permutation, letter = shuffle_options(options, 0, "vstar_direct_attributes_sa_1")
    assert shuffled == [options[i] for i in permutation] and shuffled[ord(letter) - 65] == "right"
    assert shuffle_options(options, 0, "vstar_direct_attributes_sa_1") == (shuffled, permutation, letter)
    letters = {shuffle_options(options, 0, f"id{i}")[2] for i in range(40)}
    assert letters == {"A", "B", "C", "D"}  # the right answer is not always first
    assert stable_hash("x") == 0x2D711642B726B044  # the same in every process


def test_language_detection():
    assert language_of("How many cars?", "(A) 1") == "en"
    assert language_of("图中有几辆车？") == "zh" and language_of("Q", "(A) 一") == "zh"


def test_cn_full_width_choice_brackets():
    """MME-RealWorld-CN writes "（A）…" (lmms-eval's get_correct_answer maps "（" / "）" to "(" / ")")."""
    assert strip_choice_prefixes(["（A）一", "（B） 两", "C．三", "D：四"]) == ["一", "两", "三", "四"]
    with pytest.raises(RowError, match="does not start with"):
        strip_choice_prefixes(["（A）一", "（C）三"])


def test_mme_choice_list_layouts():
    assert _choices(["(A) 1", "(B) 2"]) == ["(A) 1", "(B) 2"]
    assert _choices("['(A) 1', '(B) 2']") == ["(A) 1", "(B) 2"]  # the Lite TSV: a list literal
    assert _choices("The choices are listed below:\n(A) 1\n(B) 2\n") == ["(A) 1", "(B) 2"]  # VLMEvalKit TSV
    assert _choices("选项如下所示:\n（A）一\n（B）两") == ["（A）一", "（B）两"]
    with pytest.raises(RowError, match="not a list literal"):
        _choices("[__import__('os').system('x')]")


def test_cn_files_and_shard_order():
    root = Path("/data/MME-RealWorld-Base64")
    assert file_language(root / "MME-RealWorld-CN" / "MME_RealWorld_CN_base64_0.json", root) == "zh"
    assert file_language(root / "MME_RealWorld_CN.json", root) == "zh"
    assert file_language(root / "MME-RealWorld" / "MME_RealWorld_base64_0.json", root) is None
    assert file_language(root / "scenic" / "MME_RealWorld.json", root) is None  # "cn" inside a word
    shards = [Path(f"MME_RealWorld_base64_{i}.json") for i in (10, 2, 0, 1)]
    assert [p.stem.rsplit("_", 1)[1] for p in sorted(shards, key=natural_key)] == ["0", "1", "2", "10"]
