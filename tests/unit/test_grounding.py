"""The <grounding> parser: strict = the reference regex's accept/reject set and eval()'s messages
(Mini-o3 @ 8654dbf, vllm_async_engine.py process_tool_call lines 520-531), never running code;
lenient = any JSON. The stored upstream cases are in test_golden_grounding.py."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mini_o3.task import GroundingCall, GroundingError, has_tool_call, parse_grounding
from mini_o3.task.grounding import STRICT_NO_MATCH
from mini_o3.task.literal import CODE_REFUSED, NAME_REFUSED, TOO_DEEP, evaluate

CANONICAL = '<think>look</think> <grounding>{"bbox_2d": [0.1, 0.2, 0.3, 0.4], "source": "original_image"}</grounding>'


def test_strict_accepts_the_system_prompt_format():
    assert parse_grounding(CANONICAL) == GroundingCall((0.1, 0.2, 0.3, 0.4), "original_image")
    no_inner_spaces = '<grounding>{"bbox_2d": [1,2,3,4], "source": "observation_2"}</grounding>'
    assert parse_grounding(no_inner_spaces) == GroundingCall((1, 2, 3, 4), "observation_2")


@pytest.mark.parametrize(
    "text",
    [
        '<grounding>{"bbox_2d":[0.1, 0.2, 0.3, 0.4], "source": "original_image"}</grounding>',  # no space after colon
        '<grounding>{"source": "original_image", "bbox_2d": [0.1, 0.2, 0.3, 0.4]}</grounding>',  # key order
        '<grounding>{"bbox_2d": [0.1, 0.2, 0.3, 0.4], "source": "original_image"} </grounding>',  # space before close
        '<grounding> {"bbox_2d": [0.1, 0.2, 0.3, 0.4], "source": "original_image"}</grounding>',  # space after open
        '<grounding>\n{"bbox_2d": [0.1, 0.2, 0.3, 0.4], "source": "original_image"}\n</grounding>',
    ],
)
def test_strict_rejects_what_the_reference_rejects_and_lenient_accepts_it(text):
    assert parse_grounding(text, "strict") == GroundingError(STRICT_NO_MATCH)
    assert parse_grounding(text, "lenient") == GroundingCall((0.1, 0.2, 0.3, 0.4), "original_image")


def test_strict_quote_class_admits_single_quote_and_comma():
    # The reference class is [',"]: a single-quoted source value also matches.
    text = "<grounding>{\"bbox_2d\": [0.1, 0.2, 0.3, 0.4], \"source\": 'observation_1'}</grounding>"
    assert parse_grounding(text) == GroundingCall((0.1, 0.2, 0.3, 0.4), "observation_1")


def test_strict_bbox_errors_carry_the_reference_messages():
    three = '<grounding>{"bbox_2d": [0.1, 0.2, 0.3], "source": "original_image"}</grounding>'
    assert parse_grounding(three) == GroundingError("")  # bare assert in the reference
    tuple_ = '<grounding>{"bbox_2d": (0.1, 0.2, 0.3, 0.4), "source": "original_image"}</grounding>'
    assert parse_grounding(tuple_) == GroundingError("")
    names = '<grounding>{"bbox_2d": [x0, y0, x1, y1], "source": "original_image"}</grounding>'
    assert parse_grounding(names) == GroundingError("name 'x0' is not defined")
    percent = '<grounding>{"bbox_2d": [10%, 20%, 30%, 40%], "source": "original_image"}</grounding>'
    assert parse_grounding(percent) == GroundingError("invalid syntax (<string>, line 1)")
    comma = '<grounding>{"bbox_2d": [0.1 0.2 0.3 0.4], "source": "original_image"}</grounding>'
    assert parse_grounding(comma) == GroundingError("invalid syntax. Perhaps you forgot a comma? (<string>, line 1)")
    # eval() strips leading spaces and tabs; so does the kit (compile() alone would not)
    spaced = '<grounding>{"bbox_2d":   [0.1, 0.2, 0.3, 0.4], "source": "original_image"}</grounding>'
    assert parse_grounding(spaced) == GroundingCall((0.1, 0.2, 0.3, 0.4), "original_image")


def test_strict_keeps_non_number_items_for_the_crop_to_judge():
    """function_tools.py prepare_grounding_inputs_multi_turn checks the source before it scales the
    items, so an item's error is the crop's (see test_crop)."""
    words = '<grounding>{"bbox_2d": ["a", None, 1, 1], "source": "original_image"}</grounding>'
    assert parse_grounding(words) == GroundingCall(("a", None, 1, 1), "original_image")


def test_code_is_refused_never_run(tmp_path):
    marker = tmp_path / "ran"
    code = f'<grounding>{{"bbox_2d": __import__("os").mkdir({str(marker)!r}), "source": "original_image"}}</grounding>'
    # refused at the first operation the reference would run: the call of __import__
    assert parse_grounding(code) == GroundingError(CODE_REFUSED.format(code='__import__("os")'))
    assert not marker.exists()
    arithmetic = '<grounding>{"bbox_2d": [0.1+0.2, 0, 1, 1], "source": "original_image"}</grounding>'
    assert parse_grounding(arithmetic) == GroundingError(CODE_REFUSED.format(code="0.1+0.2"))
    # an operand that fails first still gives the reference's text
    undefined_first = '<grounding>{"bbox_2d": [x0*2, 0, 1, 1], "source": "original_image"}</grounding>'
    assert parse_grounding(undefined_first) == GroundingError("name 'x0' is not defined")


def test_names_upstream_resolves_are_refused_where_used():
    builtin = parse_grounding('<grounding>{"bbox_2d": [min, 0, 1, 1], "source": "original_image"}</grounding>')
    assert isinstance(builtin, GroundingCall)  # the reference also gets this far
    assert parse_grounding('<grounding>{"bbox_2d": bbox, "source": "original_image"}</grounding>') == GroundingError(
        NAME_REFUSED.format(name="bbox"))
    assert parse_grounding('<grounding>{"bbox_2d": {min}, "source": "o"}</grounding>') == GroundingError(
        NAME_REFUSED.format(name="min"))


def test_nesting_too_deep_for_the_reader_is_refused_and_for_the_compiler_is_its_error():
    def nested(n):
        return '<grounding>{"bbox_2d": [' + "-" * n + '1], "source": "original_image"}</grounding>'

    assert parse_grounding(nested(1500)) == GroundingError(TOO_DEEP)  # the reference would read [1]
    assert parse_grounding(nested(5000)) == GroundingError("maximum recursion depth exceeded during compilation")


def test_evaluate_builds_literals_with_evals_errors():
    assert evaluate("[1, -2.5, 'a', b'b', None, True, ..., (1,), {1}, {'k': [2]}]") == [
        1, -2.5, "a", b"b", None, True, ..., (1,), {1}, {"k": [2]}]
    for text, message in [("{[1]: x0}", "name 'x0' is not defined"), ("{[1], 2}", "unhashable type: 'list'"),
                          ("[-'a']", "bad operand type for unary -: 'str'"), ("'abc", None), ("", None)]:
        with pytest.raises(Exception) as info:
            evaluate(text)
        if message:
            assert str(info.value) == message


def test_lenient_validation_messages_name_the_problem():
    assert "no <grounding>" in parse_grounding("just text", "lenient").message
    missing = parse_grounding('<grounding>{"bbox_2d": [0, 0, 1, 1]}</grounding>', "lenient")
    assert "'source'" in missing.message
    nan = parse_grounding('<grounding>{"bbox_2d": [NaN, 0, 1, 1], "source": "original_image"}</grounding>', "lenient")
    assert "finite" in nan.message
    assert "JSON object" in parse_grounding("<grounding>[1, 2]</grounding>", "lenient").message
    assert "not a JSON object" in parse_grounding("<grounding>{oops</grounding>", "lenient").message
    # no memory address (ast.literal_eval's "<ast.Name object at 0x...>"), no crash on a huge int
    named = parse_grounding('<grounding>{"bbox_2d": [x0, 0, 1, 1], "source": "original_image"}</grounding>', "lenient")
    assert named.message == "the grounding argument is not a JSON object: name 'x0' is not defined"
    huge = parse_grounding('<grounding>{"bbox_2d": [' + "9" * 400 + ', 0, 1, 1], "source": "o"}</grounding>', "lenient")
    assert isinstance(huge, GroundingCall)


def test_lenient_takes_the_last_block_like_the_greedy_reference_regex():
    text = (
        '<grounding>{"bbox_2d": [0, 0, 1, 1], "source": "original_image"}</grounding> then '
        '<grounding>{"bbox_2d": [0.5, 0.5, 1, 1], "source": "observation_1"}</grounding>'
    )
    assert parse_grounding(text, "strict").source == "observation_1"
    assert parse_grounding(text, "lenient") == GroundingCall((0.5, 0.5, 1, 1), "observation_1")


def test_tool_call_detection():
    assert has_tool_call(CANONICAL)
    assert has_tool_call("<grounding>garbage</grounding>")
    assert not has_tool_call("<think>x</think><answer>A</answer>")
    assert not has_tool_call("<grounding>{unclosed")


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown parser mode 'fuzzy'"):
        parse_grounding(CANONICAL, "fuzzy")


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
sources = st.one_of(st.just("original_image"), st.integers(0, 50).map(lambda i: f"observation_{i}"))


@pytest.mark.slow
@settings(max_examples=2000, deadline=None)
@given(st.tuples(finite, finite, finite, finite), sources, st.text(max_size=40).filter(lambda s: "<grounding>" not in s))
def test_canonical_calls_round_trip_in_both_modes(bbox, source, prefix):
    text = f'{prefix}<grounding>{{"bbox_2d": {json.dumps(list(bbox))}, "source": "{source}"}}</grounding>'
    for mode in ("strict", "lenient"):
        call = parse_grounding(text, mode)
        assert call == GroundingCall(tuple(bbox), source)


@pytest.mark.slow
@settings(max_examples=2000, deadline=None)
@given(
    st.tuples(finite, finite, finite, finite),
    sources,
    st.booleans(),
    st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t")]),
    st.sampled_from(["", " ", "\n  "]),
)
def test_lenient_accepts_any_whitespace_and_key_order(bbox, source, source_first, separators, pad):
    obj = {"source": source, "bbox_2d": list(bbox)} if source_first else {"bbox_2d": list(bbox), "source": source}
    text = f"<think>t</think><grounding>{pad}{json.dumps(obj, separators=separators)}{pad}</grounding>"
    assert parse_grounding(text, "lenient") == GroundingCall(tuple(bbox), source)


grounding_like = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda a, b, c: f"{a}<grounding>{b}</grounding>{c}",
        st.text(max_size=20),
        st.one_of(
            st.text(max_size=120),
            st.builds(lambda v, s: f'{{"bbox_2d": {v}, "source": {s}}}', st.text(max_size=60), st.text(max_size=30)),
            st.builds(
                lambda v, s: f'{{"bbox_2d": [{v}], "source": "{s}"}}',
                st.lists(st.one_of(st.floats(), st.integers(), st.text(max_size=5)).map(str), max_size=6).map(", ".join),
                st.text(max_size=20),
            ),
        ),
        st.text(max_size=20),
    ),
)


@pytest.mark.slow
@settings(max_examples=3000, deadline=None)
@given(grounding_like, st.sampled_from(["strict", "lenient"]))
def test_parser_never_raises(text, mode):
    result = parse_grounding(text, mode)
    assert isinstance(result, (GroundingCall, GroundingError))
    if isinstance(result, GroundingCall):
        assert len(result.bbox) == 4 and isinstance(result.source, str)
        if mode == "lenient":
            assert all(math.isfinite(v) for v in result.bbox)
