"""An oracle policy that knows where the target is and answers in the Mini-o3 turn format.

Strategies (1–3 tool turns, then the answer turn):

* ``direct``: zoom on a margin box around the target;
* ``coarse_to_fine``: a large region from ``original_image``, then the margin box on
  ``observation_1`` (coordinates relative to that crop);
* ``recovery``: a look-alike's region first ("not here"), then the margin box on the original;
* ``recovery_coarse_to_fine``: the wrong region, a large region, then the margin box on
  ``observation_2``.

Use it with ``run_episode(OraclePolicy(meta, "coarse_to_fine"), sample)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ...task import PolicyRequest, Trajectory, answer_turn, observation_source, tool_turn
from ...task.crop import ORIGINAL_IMAGE
from ..schemas import BBox, SampleMeta
from .config import STRATEGIES, Strategy


class OracleError(RuntimeError):
    """The episode diverged from the oracle's plan (a crop failed or the image is not the item's)."""


@dataclass(frozen=True)
class _Zoom:
    region: BBox  # absolute pixels on the original image
    on_observation: bool  # False: source original_image; True: the previous turn's crop
    think: str


# -- think templates -------------------------------------------------------------------------

_LOOK = (
    "The question asks about {target}. Objects in this image are tiny and I cannot make out {target} at this "
    "resolution. It should be in the {where} part of the image, so I will zoom in there.",
    "I need to find {target}. Everything is very small here; I'll zoom into the {where} region where it seems to be.",
    "To answer, I have to look closely at {target}. Let me zoom in on the {where} area of the image.",
)
_COARSE = (
    "There are many small objects in this image. I will first zoom into the {where} part to narrow down where "
    "{target} is.",
    "{Target} is too small to see in the full image. Let me zoom into the {where} region first.",
    "I can't identify {target} at this scale. Let me first look at the {where} part of the image more closely.",
)
_FINE = (
    "In this zoomed view I can see a small object in the {where} of the view that could be {target}. I will zoom "
    "in further on {source}.",
    "This region is clearer. {Target} seems to be in the {where} of this view; let me zoom in more on it.",
    "Now I can see something that may be {target} in the {where} of this observation. Zooming in on it.",
)
_WRONG = (
    "I am looking for {target}. Something in the {where} part of the image might be it; let me zoom in there.",
    "Let me check the {where} region first; {target} may be there.",
    "There is a small object in the {where} area that could be {target}. Let me zoom in on it.",
)
_NOT_HERE = (
    "This shows {seen}, not {target}. It is not here. Let me look in the {where} part of the image instead.",
    "No, this is {seen}, which is not what the question asks about. I'll zoom into the {where} area of the "
    "original image.",
    "{Seen_cap} is here, but not {target}. I need to search elsewhere: the {where} region looks promising.",
)
_ANSWER = {
    "colour": (
        "Now I can clearly see {target}: it is {answer}.",
        "{Target} is clearly visible now, and its color is {answer}.",
    ),
    "shape": ("Now {target} is clearly visible: it is a {answer}.", "Zoomed in, I can see that {target} is a {answer}."),
    "text": (
        "The zoomed view shows {target} clearly; the code inside reads {answer}.",
        "Now I can read the code inside {target}: it is {answer}.",
    ),
    "position": (
        "Both objects are visible now: {target} is {relation} {reference}.",
        "In this view I can see {target} and {reference}; {target} is {relation} {reference}.",
    ),
}
_RELATION = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}


def _where(box: BBox, width: int, height: int) -> str:
    """A coarse location name of ``box`` inside a ``width`` x ``height`` image."""
    cx = (box[0] + box[2]) / 2 / width
    cy = (box[1] + box[3]) / 2 / height
    col, row = min(2, int(cx * 3)), min(2, int(cy * 3))
    return (
        ("upper-left", "top", "upper-right"),
        ("left", "centre", "right"),
        ("lower-left", "bottom", "lower-right"),
    )[row][col]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


# -- geometry --------------------------------------------------------------------------------


def _clamp(box: tuple[float, float, float, float], width: int, height: int) -> BBox:
    x0, y0, x1, y1 = box
    return (max(0, int(x0)), max(0, int(y0)), min(width, int(math.ceil(x1))), min(height, int(math.ceil(y1))))


def _union(a: BBox, b: Optional[BBox]) -> BBox:
    if b is None:
        return a
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def _intersects(a: BBox, b: BBox) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _margin_box(rng: np.random.Generator, box: BBox, core: BBox, width: int, height: int) -> BBox:
    """``box`` grown on every side by 0.45–0.8 of ``core``'s short side (+2 px)."""
    m = float(rng.uniform(0.45, 0.8)) * min(core[2] - core[0], core[3] - core[1]) + 2
    return _clamp((box[0] - m, box[1] - m, box[2] + m, box[3] + m), width, height)


def _coarse_box(rng: np.random.Generator, inner: BBox, width: int, height: int) -> BBox:
    """A large region (20–40% of each side, at least 3x ``inner``) holding ``inner`` off-centre."""
    iw, ih = inner[2] - inner[0], inner[3] - inner[1]
    cw = min(width, max(round(width * float(rng.uniform(0.2, 0.4))), 3 * iw))
    ch = min(height, max(round(height * float(rng.uniform(0.2, 0.4))), 3 * ih))
    x_lo, x_hi = max(0, inner[2] - cw), min(width - cw, inner[0])
    y_lo, y_hi = max(0, inner[3] - ch), min(height - ch, inner[1])
    x0 = int(rng.integers(x_lo, x_hi + 1)) if x_hi >= x_lo else max(0, min(width - cw, inner[0]))
    y0 = int(rng.integers(y_lo, y_hi + 1)) if y_hi >= y_lo else max(0, min(height - ch, inner[1]))
    return (x0, y0, x0 + cw, y0 + ch)


def _relative(region: BBox, origin: tuple[int, int], size: tuple[int, int]) -> list[float]:
    """``region`` (original pixels) in 0–1 coordinates of a source at ``origin`` of ``size``,
    rounded outward to 3 decimals so the crop still covers the whole region."""
    (ox, oy), (w, h) = origin, size
    x0, y0, x1, y1 = (region[0] - ox) / w, (region[1] - oy) / h, (region[2] - ox) / w, (region[3] - oy) / h
    out = [math.floor(x0 * 1000), math.floor(y0 * 1000), math.ceil(x1 * 1000), math.ceil(y1 * 1000)]
    return [round(min(1.0, max(0.0, v / 1000)), 3) for v in out]


def _origin(traj: Trajectory, index: int) -> tuple[int, int]:
    """Top-left of raw image ``index`` on the original (crops of crops add up)."""
    if index == 0:
        return (0, 0)
    turn = next(t for t in traj.turns if t.observation == index)
    assert turn.crop is not None
    ox, oy = _origin(traj, turn.crop.source_index)
    return (ox + turn.crop.box[0], oy + turn.crop.box[1])


# -- the policy ------------------------------------------------------------------------------


class OraclePolicy:
    """A scripted policy for one item: zooms per ``strategy``, then answers correctly.

    Think texts and margins vary with ``rng_seed``; the answer is the letter (mc) or the text.
    """

    def __init__(self, meta: SampleMeta, strategy: Strategy = "direct", rng_seed: int = 0) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown oracle strategy {strategy!r}; expected one of {STRATEGIES}")
        self.meta, self.strategy = meta, strategy
        rng = np.random.default_rng([rng_seed, STRATEGIES.index(strategy), meta.seed])
        w, h = meta.width, meta.height
        names = {"target": meta.target_description, "Target": _cap(meta.target_description)}
        core = _union(meta.target_bbox, meta.reference_bbox)
        final = _margin_box(rng, core, meta.target_bbox, w, h)

        def pick(templates: tuple[str, ...], **slots: str) -> str:
            return templates[int(rng.integers(len(templates)))].format(**names, **slots)

        steps: list[_Zoom] = []
        if strategy.startswith("recovery"):
            wrong, seen = self._wrong_region(rng, final)
            steps.append(_Zoom(wrong, False, pick(_WRONG, where=_where(wrong, w, h))))
            next_region = _coarse_box(rng, final, w, h) if strategy == "recovery_coarse_to_fine" else final
            seen = seen or "something else"
            think = pick(_NOT_HERE, seen=seen, Seen_cap=_cap(seen), where=_where(next_region, w, h))
            steps.append(_Zoom(next_region, False, think))
            if strategy == "recovery_coarse_to_fine":
                steps.append(self._fine(pick, next_region, final, len(steps)))
        elif strategy == "coarse_to_fine":
            coarse = _coarse_box(rng, final, w, h)
            steps.append(_Zoom(coarse, False, pick(_COARSE, where=_where(coarse, w, h))))
            steps.append(self._fine(pick, coarse, final, 1))
        else:
            steps.append(_Zoom(final, False, pick(_LOOK, where=_where(final, w, h))))
        self.steps = steps
        self.answer_think = self._answer_think(pick)

    @staticmethod
    def _fine(pick, coarse: BBox, final: BBox, observation: int) -> _Zoom:
        local = (final[0] - coarse[0], final[1] - coarse[1], final[2] - coarse[0], final[3] - coarse[1])
        where = _where(local, coarse[2] - coarse[0], coarse[3] - coarse[1])
        return _Zoom(final, True, pick(_FINE, where=where, source=observation_source(observation)))

    def _wrong_region(self, rng: np.random.Generator, final: BBox) -> tuple[BBox, Optional[str]]:
        """A region around a look-alike (else a random one) that does not touch the target."""
        w, h = self.meta.width, self.meta.height
        keep_out = _margin_box(rng, final, final, w, h)
        order = rng.permutation(len(self.meta.lookalikes)) if self.meta.lookalikes else []
        for i in order:
            look = self.meta.lookalikes[int(i)]
            region = _margin_box(rng, look.bbox, look.bbox, w, h)
            if not _intersects(region, keep_out):
                return region, look.label
        fw, fh = final[2] - final[0], final[3] - final[1]
        for _ in range(200):
            x0, y0 = int(rng.integers(0, max(1, w - fw))), int(rng.integers(0, max(1, h - fh)))
            region = (x0, y0, x0 + fw, y0 + fh)
            if not _intersects(region, keep_out):
                return region, None
        raise OracleError(f"{self.meta.doc_id}: no region away from the target for the recovery strategy")

    def _answer_think(self, pick) -> str:
        meta = self.meta
        if meta.category == "position":
            reference = meta.reference_description or "the other object"
            think = pick(_ANSWER["position"], relation=_RELATION[meta.answer], reference=reference)
        else:
            think = pick(_ANSWER[meta.category], answer=meta.answer)
        if meta.answer_type == "mc":
            think += f" That is option ({meta.solution})."
        return think

    def __call__(self, request: PolicyRequest) -> str:
        traj, turn = request.trajectory, request.turn
        if traj.raw_images[0].size != (self.meta.width, self.meta.height):
            raise OracleError(f"{self.meta.doc_id}: image size {traj.raw_images[0].size} is not the item's")
        failed = [t.index for t in traj.turns if t.crop is None]
        if failed:
            raise OracleError(f"{self.meta.doc_id}: tool call of turn {failed[0]} failed: {traj.turns[failed[0]].error}")
        if turn >= len(self.steps):
            return answer_turn(self.answer_think, self.meta.solution)
        step = self.steps[turn]
        if step.on_observation:
            index = len(traj.raw_images) - 1
            source, origin, size = observation_source(index), _origin(traj, index), traj.raw_images[index].size
        else:
            source, origin, size = ORIGINAL_IMAGE, (0, 0), (self.meta.width, self.meta.height)
        return tool_turn(step.think, _relative(step.region, origin, size), source)
