"""The crop tool and the model-facing image resizes (reference semantics, Mini-o3 @ 8654dbf).

Crops are always taken from full-resolution ("raw") RGB images: index 0 is the original (converted
to RGB on load, ``vllm_async_engine.py`` ``load_image``), index k the raw crop of the k-th
*successful* tool call (``function_tools.py`` ``prepare_grounding_inputs_multi_turn`` and
``crop_image(resize=1)``). The model sees resized copies, made step by step exactly as the
reference makes them: the original converted to RGB, then LANCZOS into [min_pixels, max_pixels]
(``multimodal_dataset.py`` ``process_image``); every crop with the rollout's chain of NEAREST
resizes (into the pixel bounds, short side to 28 px, aspect ratio under 200 keeping the long side;
``vllm_async_engine.py`` ``process_image``). Error messages reproduce the reference exception
texts, because they are shown to the model in the error observation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional, Sequence, Union

from PIL import Image

from .grounding import GroundingCall
from .literal import Refused

#: Qwen2.5-VL sees one visual token per 28×28 pixels.
PATCH = 28
#: Reference maximum aspect ratio of a crop box (and of a model-facing image).
MAX_ASPECT = 200
#: A too-thin model-facing image gets a short side of ``int(long / FORCED_ASPECT + 1)``.
FORCED_ASPECT = 190
#: Longest string / sequence a bbox item may be repeated into (``"1" * width``); the reference
#: has no bound, we refuse beyond it rather than allocate.
MAX_REPEAT = 1 << 24
TOO_LONG = "a bbox_2d item is too long to scale: {kind} of length {length} times {factor}"
#: ``source`` of a crop of the original image (``observation_i``: of the i-th crop).
ORIGINAL_IMAGE = "original_image"
_OBSERVATION_RE = re.compile(r"observation_([0-9]*)", re.DOTALL)


@dataclass(frozen=True)
class Crop:
    """A successful crop: which raw image it came from, the pixel box on it, the raw pixels."""

    source_index: int
    box: tuple[int, int, int, int]
    image: Image.Image


@dataclass(frozen=True)
class CropError:
    """A failed crop; ``message`` goes into the error observation."""

    message: str


CropResult = Union[Crop, CropError]


def resolve_source(source: str, n_images: int) -> int | CropError:
    """Map ``original_image`` / ``observation_i`` to an index into the raw-image list."""
    if source == ORIGINAL_IMAGE:
        index = 0
    else:
        match = _OBSERVATION_RE.match(source)
        try:
            index = int(match.group(1)) if match else int("")
        except ValueError:
            return CropError(
                f"The 'source' argument \"{source}\" does not match the pattern 'observation_([0-9]*)'."
            )
    if index >= n_images:
        return CropError(f'Error in predicting the source observation: "{source}".')
    return index


def crop(
    call: GroundingCall,
    raw_images: Sequence[Image.Image],
    used_sizes: Sequence[tuple[int, int]],
    relative: bool = True,
) -> CropResult:
    """Run one tool call: resolve the source, convert and clamp the box, validate, crop.

    ``relative``: coordinates are fractions of the source's raw size (Mini-o3's convention);
    otherwise absolute pixels on the model-facing image ``used_sizes[i]``, rescaled to raw.
    """
    index = resolve_source(call.source, len(raw_images))
    if isinstance(index, CropError):
        return index
    image = raw_images[index]
    try:
        box = pixel_box(call.bbox, image.size, used_sizes[index] if not relative else image.size, relative)
    except (TypeError, ValueError, OverflowError, Refused) as exc:  # NaN, infinity, non-numbers
        return CropError(str(exc))
    if not box[0] <= box[2] - 1:
        return CropError(f"The bounding box is not valid in width: {box}")
    if not box[1] <= box[3] - 1:
        return CropError(f"The bounding box is not valid in height: {box}")
    bw, bh = box[2] - box[0], box[3] - box[1]
    if bw / bh >= MAX_ASPECT or bh / bw >= MAX_ASPECT:
        return CropError("The absolute aspect ratio of the bounding box exceeds 200, which is too large.")
    return Crop(source_index=index, box=(box[0], box[1], box[2], box[3]), image=image.crop(tuple(box)))


def pixel_box(bbox: Sequence[object], size: tuple[int, int], used: tuple[int, int], relative: bool) -> list[int]:
    """The reference's pixel box on a raw image of ``size``: scale (relative: by the raw size;
    absolute: by raw / model-facing ``used`` when they differ), ``int()``, clamp to the image.
    Items are scaled with Python's ``*`` as the reference does (``"1" * w`` is a string), so any
    item raises the reference's exception; ``Refused`` for a resolved name or an over-long item."""
    w, h = size
    if relative:
        factors: Optional[tuple[float, float]] = (w, h)
    elif (w, h) != tuple(used):
        factors = (w / used[0], h / used[1])
    else:
        factors = None
    scaled = bbox if factors is None else [_times(v, factors[i % 2]) for i, v in enumerate(bbox)]
    x0, y0, x1, y1 = (int(v) for v in scaled)  # type: ignore[call-overload]
    return [max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)]


def _times(value: object, factor: float) -> object:
    if isinstance(value, (str, bytes, list, tuple)) and isinstance(factor, int) and len(value) * factor > MAX_REPEAT:
        raise Refused(TOO_LONG.format(kind=type(value).__name__, length=len(value), factor=factor))
    return value * factor  # type: ignore[operator]


# -- model-facing resizes ----------------------------------------------------------------------


def _into_bounds(size: tuple[int, int], min_pixels: int, max_pixels: int) -> list[tuple[int, int]]:
    """The reference's resize steps into [min_pixels, max_pixels]: down, then up (each truncated)."""
    w, h = size
    steps = []
    if w * h > max_pixels:
        f = math.sqrt(max_pixels / (w * h))
        w, h = int(w * f), int(h * f)
        steps.append((w, h))
    if 0 < w * h < min_pixels:
        f = math.sqrt(min_pixels / (w * h))
        w, h = int(w * f), int(h * f)
        steps.append((w, h))
    return steps


def initial_steps(size: tuple[int, int], min_pixels: int, max_pixels: int) -> list[tuple[int, int]]:
    """The LANCZOS resizes of the original, in order (dataset rule); both sides must end >= 28."""
    steps = _into_bounds(size, min_pixels, max_pixels)
    w, h = steps[-1] if steps else size
    if w < PATCH or h < PATCH:
        raise ValueError(
            f"image of size {size[0]}x{size[1]} resizes to {w}x{h}; both sides must be >= {PATCH} px"
        )
    return steps


def resized_initial_size(size: tuple[int, int], min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Model-facing size of the original image (dataset rule)."""
    steps = initial_steps(size, min_pixels, max_pixels)
    return steps[-1] if steps else size


def resize_initial(image: Image.Image, min_pixels: int, max_pixels: int) -> Image.Image:
    """The original as the model sees it: converted to RGB first (the reference opens it with
    ``.convert('RGB')``), then each LANCZOS step into [min_pixels, max_pixels]."""
    steps = initial_steps(image.size, min_pixels, max_pixels)
    image = as_rgb(image)
    for size in steps:
        image = image.resize(size, resample=Image.Resampling.LANCZOS)
    return image


def observation_steps(size: tuple[int, int], min_pixels: int, max_pixels: int) -> list[tuple[int, int]]:
    """The NEAREST resizes of a crop, in order (rollout rule): into the pixel bounds, the short
    side up to 28 px (``int(x * 28 / short + 1)``), then an aspect ratio of 200 or more cut by
    setting the short side to ``int(long / 190 + 1)`` (width checked before height)."""
    steps = _into_bounds(size, min_pixels, max_pixels)
    w, h = steps[-1] if steps else size
    if min(w, h) < 1:
        raise ValueError(f"crop of size {size[0]}x{size[1]} resizes to {w}x{h}; a side of 0 px cannot be shown")
    if w < PATCH or h < PATCH:
        f = PATCH / min(w, h)
        w, h = int(w * f + 1), int(h * f + 1)
        steps.append((w, h))
    if w / h >= MAX_ASPECT:
        h = int(w / FORCED_ASPECT + 1)
        steps.append((w, h))
    if h / w >= MAX_ASPECT:
        w = int(h / FORCED_ASPECT + 1)
        steps.append((w, h))
    return steps


def resized_observation_size(size: tuple[int, int], min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Model-facing size of a crop (rollout rule)."""
    steps = observation_steps(size, min_pixels, max_pixels)
    return steps[-1] if steps else size


def resize_observation(image: Image.Image, min_pixels: int, max_pixels: int) -> Image.Image:
    """A raw crop as the model sees it: each NEAREST step in turn, then RGB."""
    for size in observation_steps(image.size, min_pixels, max_pixels):
        image = image.resize(size, resample=Image.Resampling.NEAREST)
    return as_rgb(image)


def as_rgb(image: Image.Image) -> Image.Image:
    """``image`` in RGB (itself when it already is)."""
    return image if image.mode == "RGB" else image.convert("RGB")


def image_tokens(size: tuple[int, int], min_pixels: int = 56 * 56, max_pixels: int = 28 * 28 * 16384) -> int:
    """Visual tokens Qwen2.5-VL spends on a model-facing image (its processor's ``smart_resize``)."""
    w, h = size
    hb = max(PATCH, round(h / PATCH) * PATCH)
    wb = max(PATCH, round(w / PATCH) * PATCH)
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb = max(PATCH, math.floor(h / beta / PATCH) * PATCH)
        wb = max(PATCH, math.floor(w / beta / PATCH) * PATCH)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb = math.ceil(h * beta / PATCH) * PATCH
        wb = math.ceil(w * beta / PATCH) * PATCH
    return (hb // PATCH) * (wb // PATCH)
