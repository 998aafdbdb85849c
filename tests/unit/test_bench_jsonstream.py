"""iter_json_array: the items of a JSON array file, streamed (MME-RealWorld's ~4 GB Base64 shards
must never be loaded whole), equal to json.load's, with bounded memory and one-line errors."""

from __future__ import annotations

import base64
import json
import os
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mini_o3.data.bench.jsonstream import iter_json_array

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(items=st.lists(JSON_VALUES, max_size=8), chunk=st.integers(1, 64), indent=st.sampled_from([None, 0, 2]),
       ascii_only=st.booleans())
def test_items_equal_json_load_whatever_the_chunk_size(tmp_path_factory, items, chunk, indent, ascii_only):
    path = tmp_path_factory.mktemp("j") / "a.json"
    path.write_text(json.dumps(items, indent=indent, ensure_ascii=ascii_only), encoding="utf-8")
    assert list(iter_json_array(path, chunk_chars=chunk)) == json.loads(path.read_text(encoding="utf-8"))


def test_bom_whitespace_and_empty_list(tmp_path: Path):
    path = tmp_path / "a.json"
    path.write_bytes(b"\xef\xbb\xbf \n[ \n ]\n ")
    assert list(iter_json_array(path)) == []
    path.write_text('[1 , 2.5e3,"\\u4e2d"\t,\n{"k": [true, false, null]}]')
    assert list(iter_json_array(path, chunk_chars=2)) == [1, 2500.0, "中", {"k": [True, False, None]}]


@pytest.mark.parametrize("text, message", [
    ('{"a": 1}', "expected a JSON list of rows"),
    ("", "expected a JSON list of rows"),
    ("[1, 2", "the list is cut short at character 5"),
    ("[1, 2.", "expected ',' or ']' at character 5, got '.'"),
    ('[{"a": "cut', "not valid JSON at character 7: Unterminated string"),
    ("[1 2]", "expected ',' or ']' at character 3"),
    ("[1, }]", "not valid JSON at character 4: Expecting value"),
    ("[1] x", "unexpected text after the list at character 4"),
])
def test_bad_files_raise_one_line_naming_the_file(tmp_path: Path, text: str, message: str):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        list(iter_json_array(path, chunk_chars=3))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_syntax_error_early_in_a_big_file_fails_without_reading_on(tmp_path: Path):
    path = tmp_path / "bad.json"
    path.write_text('[{"a": 1 "b": 2}, ' + '"x", ' * 200_000 + '"y"]')
    with pytest.raises(ValueError, match="character 9: Expecting ',' delimiter"):
        list(iter_json_array(path, chunk_chars=1024, max_item_chars=4096))


def test_an_item_over_the_limit_is_refused(tmp_path: Path):
    path = tmp_path / "big.json"
    path.write_text(json.dumps([{"image": "A" * 10_000}]))
    with pytest.raises(ValueError, match="larger than 4096 characters"):
        list(iter_json_array(path, chunk_chars=512, max_item_chars=4096))


def test_memory_stays_far_below_the_file_size(tmp_path: Path):
    """A 48 MB shard of 96 items with 0.5 MB base64 images: peak traced memory while streaming
    stays under 1/10 of the file (it is bounded by a few times a chunk plus the largest item;
    json.load needs more than the file's size)."""
    path = tmp_path / "MME_RealWorld_base64_0.json"
    blob = base64.b64encode(os.urandom(375_000)).decode()  # 500,000 characters
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[")
        for i in range(96):
            item = {"index": i, "question": f"Q{i}?", "image": blob[i:] + blob[:i],
                    "multi-choice options": ["(A) a", "(B) b"], "answer": "A"}
            handle.write(("," if i else "") + json.dumps(item))
        handle.write("]")
    size = path.stat().st_size
    assert size > 48_000_000
    tracemalloc.start()
    try:
        count = 0
        for item in iter_json_array(path):
            assert len(item["image"]) == 500_000
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 96 and peak < size / 10, (peak, size)
