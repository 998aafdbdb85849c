"""The ``grid`` task family: a learning profile where zooming is necessary and cheap to learn.

The canvas is a 2^L x 2^L grid; every cell holds one small dark glyph (one of ``GridSpec.shapes``).
The question names a cell by one quadrant per level ("cell 3 of the southeast block"; cells are
numbered in reading order inside their block)
and asks which shape it holds, as a multiple-choice question over all shapes (chance =
1 / len(shapes)). The glyph is a few pixels wide on the model-facing first view (unreadable) and
readable after zooming coarse to fine, one quadrant per turn, so the policy must zoom, and every
crop target is one of four quadrant boxes the oracle knows exactly.

``GridOracle`` answers in the Mini-o3 turn format with one of three strategies:

* ``zoom``: crop the named block, then its named cell (one turn per level), then answer;
* ``recover``: a malformed tool call first (the error observation follows), then as ``zoom``;
* ``no_zoom``: answer directly from the first view (the no-zoom baseline's training data).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...task import PolicyRequest, answer_turn, observation_source, tool_turn
from ...task.crop import ORIGINAL_IMAGE
from ..schemas import BBox, SampleMeta, option_letter_at, problem_text, relative_box
from .canvas import shape_mask

GridStrategy = Literal["zoom", "recover", "no_zoom"]
#: Oracle strategies of the grid family.
GRID_STRATEGIES: tuple[GridStrategy, ...] = ("zoom", "recover", "no_zoom")
#: Fill ratio of each glyph in its square box: glyphs are scaled to equal ink, so the first view's
#: blobs do not give the shape away by darkness.
_FILL = {"circle": 0.785, "square": 1.0, "triangle": 0.5, "diamond": 0.5, "cross": 5 / 9, "star": 0.36}


#: How the question names the quadrant at each zoom level, in QUADRANT_BOXES order: one word per
#: quadrant (a single token of the learning profile's vocabulary, so naming the crop is a one-token
#: copy from the question) and distinct words per level, so the question says which crop comes first.
LEVEL_NAMES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("northwest", "northeast", "southwest", "southeast"), "the {} block"),
    (("1", "2", "3", "4"), "cell {}"),
)


class GridSpec(BaseModel):
    """Knobs of the grid family (used when ``SynthConfig.family == "grid"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    levels: int = Field(2, ge=1, le=len(LEVEL_NAMES),
                        description="zoom levels: the grid is 2**levels cells per side; a cell is named by one "
                                    "quadrant per level ('cell 3 of the southeast block')")
    shapes: tuple[str, ...] = Field(("circle", "square", "triangle", "cross"),
                                    description="glyph classes = the options, in letter order")
    glyph_frac: tuple[float, float] = Field((0.3, 0.36), description="glyph side / cell side, (low, high)")
    jitter: float = Field(0.05, ge=0, le=0.3, description="glyph centre offset from the cell centre / cell side")
    shuffle_options: bool = Field(False, description="shuffle the option order per question (False: chance is "
                                                      "still 1/len(shapes), and the letter of a shape is fixed)")

    @field_validator("shapes")
    @classmethod
    def _shapes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in value if s not in _FILL]
        if unknown or len(value) < 2 or len(set(value)) != len(value):
            raise ValueError(f"shapes must be 2+ distinct names from {sorted(_FILL)}, got {list(value)}")
        return value

    @property
    def size(self) -> int:
        return 2 ** self.levels


def cell_box(row: int, col: int, width: int, height: int, size: int) -> BBox:
    """Absolute pixel box of cell (``row``, ``col``), 0-based."""
    return (col * width // size, row * height // size, (col + 1) * width // size, (row + 1) * height // size)


#: The tool's 0–1 box of each quadrant, in LEVEL_NAMES order.
QUADRANT_BOXES: tuple[list[float], ...] = ([0.0, 0.0, 0.5, 0.5], [0.5, 0.0, 1.0, 0.5], [0.0, 0.5, 0.5, 1.0],
                                           [0.5, 0.5, 1.0, 1.0])


def quadrants(row: int, col: int, levels: int) -> list[int]:
    """Quadrant index (0–3) of cell (``row``, ``col``) at each level, coarse first."""
    out = []
    for level in range(levels):
        shift = levels - 1 - level
        out.append(((row >> shift) & 1) * 2 + ((col >> shift) & 1))
    return out


def cell_name(row: int, col: int, levels: int) -> str:
    """``cell 3 of the southeast block`` (fine first, as said)."""
    parts = [LEVEL_NAMES[level][1].format(LEVEL_NAMES[level][0][q]) for level, q in
             enumerate(quadrants(row, col, levels))]
    return " of ".join(reversed(parts))


def make_grid_item(spec: GridSpec, rng: np.random.Generator, width: int, height: int, doc_id: str, image_path: str,
                   seed: int, generator_version: str):
    """Draw one grid item; returns ``(image, meta, problem, data_source)``."""
    canvas = Image.new("RGB", (width, height), tuple(int(v) for v in rng.integers(200, 236, size=3)))
    draw = ImageDraw.Draw(canvas)
    n = spec.size
    for i in range(1, n):
        line = (120, 120, 120) if i == n // 2 else (170, 170, 170)  # block borders darker than cell borders
        draw.line([(i * width // n, 0), (i * width // n, height)], fill=line, width=2)
        draw.line([(0, i * height // n), (width, i * height // n)], fill=line, width=2)
    glyphs = [spec.shapes[int(rng.integers(len(spec.shapes)))] for _ in range(n * n)]
    boxes: list[BBox] = []
    for index, shape in enumerate(glyphs):
        cx0, cy0, cx1, cy1 = cell_box(index // n, index % n, width, height, n)
        cell = min(cx1 - cx0, cy1 - cy0)
        side = max(6, round(cell * float(rng.uniform(*spec.glyph_frac)) / _FILL[shape] ** 0.5))
        side = min(side, cell - 4)
        dx, dy = (float(v) * spec.jitter * cell for v in rng.uniform(-1, 1, size=2))
        x0 = int(round((cx0 + cx1 - side) / 2 + dx))
        y0 = int(round((cy0 + cy1 - side) / 2 + dy))
        x0, y0 = min(max(cx0 + 2, x0), cx1 - side - 2), min(max(cy0 + 2, y0), cy1 - side - 2)
        ink = tuple(int(v) for v in rng.integers(15, 60, size=3))
        canvas.paste(Image.new("RGB", (side, side), ink), (x0, y0), shape_mask(shape, side))
        boxes.append((x0, y0, x0 + side, y0 + side))
    target = int(rng.integers(n * n))
    row, col = divmod(target, n)
    options = list(spec.shapes)
    if spec.shuffle_options:
        options = [options[i] for i in rng.permutation(len(options))]
    answer = glyphs[target]
    letter = option_letter_at(options.index(answer))
    where = cell_name(row, col, spec.levels)
    question = f"What shape is drawn in {where}?"
    meta = SampleMeta(
        doc_id=doc_id, image=image_path, question=question, answer_type="mc", options=options, solution=letter,
        answer=answer, category="shape", difficulty="medium", target_description=f"the shape in {where}",
        target_bbox=boxes[target], target_bbox_rel=relative_box(boxes[target], width, height),
        reference_bbox=cell_box(row, col, width, height, n), reference_description=where,
        distractors=n * n - 1, width=width, height=height, seed=seed, generator_version=generator_version,
    )
    return canvas, meta, problem_text(question, options), "synthetic_grid"


def grid_cell(meta: SampleMeta, size: int) -> tuple[int, int]:
    """(row, col) of the asked cell, from the item's reference box."""
    assert meta.reference_bbox is not None
    x0, y0, _, _ = meta.reference_bbox
    return round(y0 * size / meta.height), round(x0 * size / meta.width)


class GridOracle:
    """A scripted policy for one grid item, following ``strategy`` (see the module doc): one crop
    per level, each a quadrant of the previous view (coarse to fine)."""

    def __init__(self, meta: SampleMeta, spec: GridSpec, strategy: GridStrategy = "zoom") -> None:
        if strategy not in GRID_STRATEGIES:
            raise ValueError(f"unknown grid oracle strategy {strategy!r}; expected one of {GRID_STRATEGIES}")
        self.meta, self.strategy, self.levels = meta, strategy, spec.levels
        row, col = grid_cell(meta, spec.size)
        self.path = quadrants(row, col, spec.levels)
        self.where = cell_name(row, col, spec.levels)

    def _zoom(self, level: int, think: str) -> str:
        names, template = LEVEL_NAMES[level]
        source = ORIGINAL_IMAGE if level == 0 else observation_source(level)
        return tool_turn(think.format(what=template.format(names[self.path[level]])), QUADRANT_BOXES[self.path[level]],
                         source)

    def __call__(self, request: PolicyRequest) -> str:
        meta, turn = self.meta, request.turn
        answer = answer_turn(f"It is a {meta.answer}, option ({meta.solution}).", meta.solution)
        if self.strategy == "no_zoom":
            return answer
        level = turn - 1 if self.strategy == "recover" else turn
        if self.strategy == "recover" and turn == 0:
            return tool_turn(f"Zoom in on {self.where}.", QUADRANT_BOXES[self.path[0]][:3])  # malformed: 3 numbers
        if level >= self.levels:
            return answer
        if level == 0:
            return self._zoom(0, "Zoom in on {what}.")
        return self._zoom(level, "Zoom in on {what} of it.")
