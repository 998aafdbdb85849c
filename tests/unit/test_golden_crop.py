"""Golden crops and first images: the task kit's boxes, model-facing sizes and pixels are upstream's.

The rules (Mini-o3/Mini-o3 @ 8654dbf):
* crops: function_tools.py ``prepare_grounding_inputs_multi_turn`` (lines 29-74) and
  ``crop_image(..., resize=1)`` (lines 8-27); the model-facing copy is
  vllm_async_engine.py ``process_image`` (lines 189-223): NEAREST into [min_pixels, max_pixels]
  (down, then up), short side to 28 px (``int(x * 28 / short + 1)``), an aspect ratio >= 200 cut
  by setting the short side to ``int(long / 190 + 1)``, each step its own resize, then RGB;
* the first image: multimodal_dataset.py ``process_image`` (lines 79-113): ``Image.open(path)
  .convert('RGB')``, then LANCZOS down / up, both sides >= 28 (assert); the raw original is
  vllm_async_engine.py ``load_image`` (lines 427-430): ``Image.open(path).convert("RGB")``.
tests/unit/golden/crop_upstream.json and first_image_upstream.json come from running that code
on seeded noise images (headers; tests/unit/golden/grounding_crop.md).
"""

import hashlib
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from mini_o3.task import CropError, GroundingError, RolloutLimits, crop, parse_grounding, resize_observation
from mini_o3.task.crop import observation_steps
from mini_o3.task.episode import EpisodeSample, _original

GOLDEN = Path(__file__).parent / "golden"
CROPS = json.loads((GOLDEN / "crop_upstream.json").read_text())
FIRST = json.loads((GOLDEN / "first_image_upstream.json").read_text())
ROW_BYTES = {"RGB": 3, "RGBA": 4, "LA": 2, "L": 1, "P": 1, "CMYK": 4, "I;16": 2, "I": 4}


def noise(mode, size, seed):
    """The stored image spec, built as the header says."""
    w, h = size
    row = (w + 7) // 8 if mode == "1" else w * ROW_BYTES[mode]
    image = Image.frombytes(mode, tuple(size), random.Random(seed).randbytes(row * h))
    if mode == "P":
        image.putpalette(random.Random(seed + 1).randbytes(768))
    return image


def digest(image):
    return hashlib.sha256(image.tobytes()).hexdigest()


@pytest.mark.parametrize("scene", CROPS["scenes"], ids=lambda s: s["name"])
def test_crops_and_model_facing_pixels_are_upstreams(scene):
    lo, hi = scene["min_pixels"], scene["max_pixels"]
    raw = noise(scene["raw"]["mode"], scene["raw"]["size"], scene["raw"]["seed"])
    first = crop(parse_grounding(scene["observation_1_call"]), [raw], [], relative=True)
    raws, used = [raw, first.image], [tuple(s) for s in scene["used_sizes"]]
    assert list(resize_observation(first.image, lo, hi).size) == scene["used_sizes"][1]
    wrong = []
    for case in scene["cases"]:
        result = parse_grounding(case["text"])
        if not isinstance(result, GroundingError):
            result = crop(result, raws, used, relative=case["relative"])
        if isinstance(result, (GroundingError, CropError)):
            got = {"error_info": result.message}
        else:
            shown = resize_observation(result.image, lo, hi)
            got = {"box": list(result.box), "source_index": result.source_index, "raw_size": list(result.image.size),
                   "shown_size": list(shown.size), "shown_mode": shown.mode, "shown_sha256": digest(shown)}
        want = {k: v for k, v in case.items() if k not in ("text", "relative")}
        if got != want:
            wrong.append((case["text"], want, got))
    assert not wrong, f"{len(wrong)} of {len(scene['cases'])} differ, e.g. {wrong[:2]}"


def test_the_crop_golden_covers_every_resize_step():
    """Thin crops take two NEAREST steps (bounds, then 28 px); some reach the aspect-ratio step."""
    chains = Counter()
    for scene in CROPS["scenes"]:
        for case in scene["cases"]:
            if "raw_size" in case:
                chains[len(observation_steps(tuple(case["raw_size"]), scene["min_pixels"], scene["max_pixels"]))] += 1
    assert chains[0] > 100 and chains[1] > 500 and chains[2] > 500 and chains[3] > 100
    assert sum(chains.values()) == CROPS["header"]["successes"]


def _open_case(case, folder):
    mode = case["mode"]
    image = noise("P" if mode == "P+transparency" else mode, case["size"], case["seed"])
    if mode == "P+transparency":
        image.info["transparency"] = 7
    path = folder / f"{case['seed']}.{case['format']}"
    image.save(path, **({"compress_level": 1} if case["format"] == "png" else {}))  # lossless: same pixels, faster
    return path


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted({c["mode"] + "/" + c["format"] for c in FIRST["cases"]}))
def test_first_images_are_upstreams(mode, tmp_path):
    cases = [c for c in FIRST["cases"] if c["mode"] + "/" + c["format"] == mode]
    wrong = []
    for case in cases:
        path = _open_case(case, tmp_path)
        limits = RolloutLimits(min_pixels=case["min_pixels"], max_pixels=case["max_pixels"])
        images = [path]
        if case["size"][0] * case["size"][1] < 1_000_000:  # an already-open image gives the same pair
            with Image.open(path) as opened:
                opened.load()
                images.append(opened.copy())
        for image in images:
            try:
                raw, shown = _original(EpisodeSample("<image>\nq", image), limits)
            except ValueError as exc:
                got = {"error": str(exc)}
            else:
                got = {"shown_size": list(shown.size), "shown_mode": shown.mode, "shown_sha256": digest(shown),
                       "raw_size": list(raw.size), "raw_mode": raw.mode, "raw_sha256": digest(raw)}
            if "error" in case:  # upstream's 28-px assert; ours is a ValueError naming the sizes
                ok = "both sides must be >= 28" in got.get("error", "")
            else:
                ok = got == {k: case[k] for k in got}
            if not ok:
                wrong.append((case, got))
    assert not wrong, f"{len(wrong)} of {len(cases)} cases differ, e.g. {wrong[:2]}"
