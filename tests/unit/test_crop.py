"""Crop tool: hand-computed cases of the reference arithmetic (Mini-o3 @ 8654dbf, function_tools.py
prepare_grounding_inputs_multi_turn lines 29-74; vllm_async_engine.py process_image lines 189-223;
multimodal_dataset.py process_image lines 79-113), plus fuzzing. Stored upstream cases: test_golden_crop.py."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mini_o3.task import Crop, CropError, GroundingCall, crop, image_tokens, resize_initial, resize_observation
from mini_o3.task.crop import (
    initial_steps, observation_steps, resized_initial_size, resized_observation_size, resolve_source,
)


def gradient(w, h):
    image = Image.new("RGB", (w, h))
    image.putdata([(x % 256, y % 256, (x + y) % 256) for y in range(h) for x in range(w)])
    return image


RAW = Image.new("RGB", (1000, 800), "white")


def call(bbox, source="original_image"):
    return GroundingCall(tuple(bbox), source)


def test_relative_box_maps_onto_the_raw_size_and_truncates():
    result = crop(call([0.1, 0.2, 0.5, 0.6]), [RAW], [(500, 400)])
    assert isinstance(result, Crop)
    assert result.box == (100, 160, 500, 480)
    assert result.image.size == (400, 320)
    assert crop(call([0.1234, 0.2, 0.5678, 0.6]), [RAW], [(500, 400)]).box == (123, 160, 567, 480)


def test_crop_takes_the_raw_pixels():
    raw = gradient(300, 200)
    result = crop(call([0.5, 0.5, 1.0, 1.0]), [raw], [raw.size])
    assert result.box == (150, 100, 299, 199)  # clamped to w-1 / h-1 like the reference
    assert result.image.getpixel((0, 0)) == raw.getpixel((150, 100))


def test_clamping_to_the_image():
    assert crop(call([-0.5, -1, 2, 3]), [RAW], [RAW.size]).box == (0, 0, 999, 799)


def test_absolute_coordinates_rescale_from_the_model_facing_size():
    result = crop(call([50, 50, 100, 100]), [RAW], [(500, 400)], relative=False)
    assert result.box == (100, 100, 200, 200)
    same_size = crop(call([50, 50, 100, 100]), [RAW], [RAW.size], relative=False)
    assert same_size.box == (50, 50, 100, 100)


def test_sources_resolve_to_successful_crops():
    first = crop(call([0.5, 0.5, 0.9, 0.9]), [RAW], [RAW.size])
    images = [RAW, first.image]  # observation_1 is 400 x 320 raw pixels
    second = crop(call([0.0, 0.0, 0.5, 0.5], "observation_1"), images, [RAW.size, (400, 320)])
    assert second.source_index == 1 and second.box == (0, 0, 200, 160)
    assert crop(call([0, 0, 0.5, 0.5], "observation_0"), images, []).source_index == 0


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("observation_2", 'Error in predicting the source observation: "observation_2".'),
        ("observation_", "The 'source' argument \"observation_\" does not match the pattern 'observation_([0-9]*)'."),
        ("the_crop", "The 'source' argument \"the_crop\" does not match the pattern 'observation_([0-9]*)'."),
        ("observation_" + "9" * 5000, "does not match the pattern"),
    ],
)
def test_unknown_sources_are_errors(source, message):
    result = resolve_source(source, 2)
    assert isinstance(result, CropError) and message in result.message


@pytest.mark.parametrize(
    ("bbox", "message"),
    [
        ([0.5, 0.1, 0.2, 0.4], "The bounding box is not valid in width: [500, 80, 200, 320]"),
        ([0.1, 0.5, 0.2, 0.4], "The bounding box is not valid in height: [100, 400, 200, 320]"),
        ([0.1, 0.1, 0.1005, 0.5], "The bounding box is not valid in width: [100, 80, 100, 400]"),
        ([2.0, 2.0, 3.0, 3.0], "The bounding box is not valid in width: [2000, 1600, 999, 799]"),
        ([0, 0, 1, 0.004], "The absolute aspect ratio of the bounding box exceeds 200, which is too large."),
        ([math.nan, 0, 1, 1], "cannot convert float NaN to integer"),
        ([0, 0, math.inf, 1], "cannot convert float infinity to integer"),
        ([0, 0, 1e308, 1], "cannot convert float infinity to integer"),
    ],
)
def test_invalid_boxes_are_errors_with_the_reference_messages(bbox, message):
    result = crop(call(bbox), [RAW], [RAW.size])
    assert result == CropError(message)


def test_smallest_valid_box_is_one_pixel():
    result = crop(call([0.1, 0.1, 0.101, 0.10125]), [RAW], [RAW.size])
    assert result.box == (100, 80, 101, 81) and result.image.size == (1, 1)


def test_huge_integers_clamp_like_python_arithmetic():
    assert crop(call([0, 0, 10**400, 10**400]), [RAW], [RAW.size]).box == (0, 0, 999, 799)


def test_initial_resize_sizes_and_resampling():
    assert resized_initial_size((4000, 3000), 40_000, 2_000_000) == (1632, 1224)
    assert resized_initial_size((100, 100), 40_000, 2_000_000) == (200, 200)
    assert resized_initial_size((1000, 800), 40_000, 2_000_000) == (1000, 800)
    with pytest.raises(ValueError, match="both sides must be >= 28"):
        resized_initial_size((20000, 20), 40_000, 2_000_000)
    raw = gradient(64, 64)
    assert resize_initial(raw, 40_000, 2_000_000).tobytes() == raw.resize((200, 200), Image.Resampling.LANCZOS).tobytes()


def test_observation_resize_sizes_and_resampling():
    assert resized_observation_size((30, 20), 40_000, 2_000_000) == (244, 163)
    assert resized_observation_size((1, 150), 40_000, 2_000_000) == (29, 4286)  # 28-px rule
    assert resized_observation_size((1, 199), 40_000, 2_000_000) == (29, 5643)
    assert resized_observation_size((3000, 1000), 40_000, 2_000_000) == (2449, 816)
    raw = gradient(30, 20)
    assert resize_observation(raw, 40_000, 2_000_000).tobytes() == raw.resize((244, 163), Image.Resampling.NEAREST).tobytes()
    assert resize_observation(Image.new("L", (300, 200)), 40_000, 2_000_000).mode == "RGB"


def test_image_tokens_follow_qwen_smart_resize():
    assert image_tokens((1632, 1224)) == 58 * 44
    assert image_tokens((244, 163)) == 9 * 6
    assert image_tokens((28, 28)) == 4  # lifted to min_pixels 56x56


boxes = st.tuples(*[st.one_of(st.floats(), st.integers(-(10**6), 10**6), st.floats(-2, 3))] * 4)
source_names = st.one_of(st.just("original_image"), st.text(max_size=20), st.integers(-3, 5).map(lambda i: f"observation_{i}"))


@pytest.mark.slow
@settings(max_examples=2000, deadline=None)
@given(boxes, source_names, st.booleans(), st.integers(1, 300), st.integers(1, 300))
def test_crop_never_raises_and_successes_are_valid(bbox, source, relative, w, h):
    raw = Image.new("RGB", (w, h))
    crops = [raw, raw.crop((0, 0, max(1, w // 2), max(1, h // 2)))]
    result = crop(GroundingCall(bbox, source), crops, [c.size for c in crops], relative=relative)
    assert isinstance(result, (Crop, CropError))
    if isinstance(result, Crop):
        x0, y0, x1, y1 = result.box
        sw, sh = crops[result.source_index].size
        assert 0 <= x0 < x1 <= sw - 1 and 0 <= y0 < y1 <= sh - 1
        assert result.image.size == (x1 - x0, y1 - y0)
        assert max(x1 - x0, y1 - y0) / min(x1 - x0, y1 - y0) < 200
        shown = resized_observation_size(result.image.size, 40_000, 2_000_000)
        assert min(shown) >= 28 and max(shown) / min(shown) < 200


# -- reference order and item errors (function_tools.py prepare_grounding_inputs_multi_turn, @8654dbf)
def test_the_source_is_checked_before_the_items():
    assert crop(call(["a", None, 1, 1], "observation_5"), [RAW], [RAW.size]) == CropError(
        'Error in predicting the source observation: "observation_5".')


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([None, 0, 1, 1], "unsupported operand type(s) for *: 'NoneType' and 'int'"),
        ([0, {}, 1, 1], "unsupported operand type(s) for *: 'dict' and 'int'"),
        ([[0.1], 0, 1, 1], "int() argument must be a string, a bytes-like object or a real number, not 'list'"),
        ([1j, 0, 1, 1], "int() argument must be a string, a bytes-like object or a real number, not 'complex'"),
        (["a", 0, 1, 1], "invalid literal for int() with base 10: '" + "a" * 199),  # int()'s %.200R of "a" * 1000
    ],
)
def test_non_number_items_fail_as_python_scales_them(items, message):
    assert crop(call(items), [RAW], [RAW.size]) == CropError(message)


def test_string_items_are_repeated_like_the_reference_does():
    # "0" * 1000 is 0 and "1" * 800 a huge int clamped to h - 1: a whole-image crop, as upstream
    assert crop(call(["0", "0", "1", "1"]), [RAW], [RAW.size]).box == (0, 0, 999, 799)


def test_resolved_names_and_over_long_items_are_refused():
    from mini_o3.task.literal import NAME_REFUSED, Resolved

    assert crop(call([Resolved("min"), 0, 1, 1]), [RAW], [RAW.size]) == CropError(NAME_REFUSED.format(name="min"))
    long = crop(call(["1" * 30_000, 0, 1, 1]), [RAW], [RAW.size])
    assert long == CropError("a bbox_2d item is too long to scale: str of length 30000 times 1000")


def test_absolute_huge_integers_are_an_error_not_a_crash():
    # int * float: OverflowError, caught as the reference's except Exception does
    assert crop(call([10**400, 0, 1, 1]), [RAW], [(500, 400)], relative=False) == CropError(
        "int too large to convert to float")


# -- model-facing resizes: the reference's step-by-step chains (vllm_async_engine.py process_image)
def test_a_thin_crop_takes_two_nearest_steps():
    raw = gradient(1, 150)
    steps = [(16, 2449), (29, 4286)]  # into min_pixels, then the short side to 28 px
    assert observation_steps(raw.size, 40_000, 2_000_000) == steps
    chained = raw.resize(steps[0], Image.Resampling.NEAREST).resize(steps[1], Image.Resampling.NEAREST)
    one_step = raw.resize(steps[1], Image.Resampling.NEAREST)
    assert chained.tobytes() != one_step.tobytes()
    assert resize_observation(raw, 40_000, 2_000_000).tobytes() == chained.tobytes()


def test_the_aspect_rule_keeps_the_long_side():
    # (5, 999) into 3000 px: (3, 774); 28-px rule: (29, 7225); ratio 249 -> short side int(7225 / 190 + 1)
    assert observation_steps((5, 999), 400, 3000) == [(3, 774), (29, 7225), (39, 7225)]
    assert observation_steps((999, 5), 400, 3000) == [(774, 3), (7225, 29), (7225, 39)]


def test_the_first_image_is_rgb_before_lanczos():
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    rgba.putpixel((10, 10), (0, 255, 0, 255))
    shown = resize_initial(rgba, 40_000, 2_000_000)
    assert shown.tobytes() == rgba.convert("RGB").resize((200, 200), Image.Resampling.LANCZOS).tobytes()
    assert shown.tobytes() != rgba.resize((200, 200), Image.Resampling.LANCZOS).convert("RGB").tobytes()
    palette = Image.new("P", (64, 64))
    palette.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    palette.putpixel((5, 5), 1)
    assert resize_initial(palette, 40_000, 2_000_000).tobytes() == (
        palette.convert("RGB").resize((200, 200), Image.Resampling.LANCZOS).tobytes())


def test_both_lanczos_steps_run_when_the_bounds_meet():
    # min_pixels == max_pixels: down to (30, 33) = 990 px, then "up" again to the same size (a copy)
    assert initial_steps((90, 100), 1000, 1000) == [(30, 33), (30, 33)]


def test_crops_of_a_non_rgb_raw_look_the_same_as_of_its_rgb_copy():
    """The verl agent loop keeps its raw original's mode: NEAREST steps and the final RGB conversion
    commute, so the model sees the same pixels."""
    for mode in ("P", "RGBA", "LA", "CMYK", "L"):
        raw = gradient(120, 90).convert(mode)
        for box in ((0, 0, 1, 80), (10, 10, 100, 20), (3, 4, 5, 6)):
            a = resize_observation(raw.crop(box), 40_000, 2_000_000)
            b = resize_observation(raw.convert("RGB").crop(box), 40_000, 2_000_000)
            assert a.tobytes() == b.tobytes(), (mode, box)
