"""One benchmark item: a high-resolution canvas with one small target, many distractors and a
question that names the target uniquely.

Uniqueness rules per category (what no distractor may share with the target):

* ``colour``: the target is the only object of its shape (no code boxes when it is a square);
  look-alikes share its colour.
* ``shape``: the target is the only thing drawn in its colour; look-alikes share its shape.
* ``text``: the target is the only code box with its border colour (and no square has that
  colour); look-alikes are code boxes with other border colours.
* ``position``: target and reference are the only objects with their (colour, shape) pairs;
  look-alikes share a colour or a shape with one of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Literal, Optional

import numpy as np
from PIL import Image

from ..schemas import BBox, LabeledBox, MiniO3Row, SampleMeta, relative_box
from .canvas import Layout, background, code_box_size, draw_code_box, draw_shape, draw_text, font_for_box_height, text_size
from .config import GENERATOR_VERSION, SynthConfig
from .grid import make_grid_item
from .questions import Ask, colour_ask, finish, position_ask, shape_ask, text_ask
from .vocab import COLOUR_NAMES, COLOURS, SHAPES, WORDS, random_code, similar_codes

#: Share of distractor kinds: filled shapes, plain words, bordered code boxes.
_KIND_WEIGHTS = {"shape": 0.6, "word": 0.25, "box": 0.15}


@dataclass(frozen=True)
class Drawn:
    """One drawn object (kept for checks; not written out)."""

    role: Literal["target", "reference", "lookalike", "distractor"]
    kind: Literal["shape", "word", "box"]
    colour: str  # fill colour (shape, word) or border colour (box)
    what: str  # shape name, word or code
    box: BBox


@dataclass(frozen=True)
class SynthItem:
    """A generated item: the full-resolution image, its sidecar record, its row, and every
    object drawn (target first)."""

    image: Image.Image
    meta: SampleMeta
    row: MiniO3Row
    objects: list[Drawn]


@dataclass
class _Ctx:
    rng: np.random.Generator
    config: SynthConfig
    canvas: Image.Image
    layout: Layout
    target_px: int
    n_lookalikes: int
    lookalikes: list[LabeledBox] = field(default_factory=list)
    objects: list[Drawn] = field(default_factory=list)

    def shape(self, role: str, shape: str, colour: str, box: BBox) -> BBox:
        draw_shape(self.canvas, shape, COLOURS[colour], box)
        self.objects.append(Drawn(role, "shape", colour, shape, box))  # type: ignore[arg-type]
        return box

    def code_box(self, role: str, code: str, colour: str, xy: tuple[int, int], font_size: int) -> BBox:
        box = draw_code_box(self.canvas, code, COLOURS[colour], xy, font_size)
        self.objects.append(Drawn(role, "box", colour, code, box))  # type: ignore[arg-type]
        return box

    def word(self, word: str, colour: str, xy: tuple[int, int], font_size: int) -> BBox:
        box = draw_text(self.canvas, word, COLOURS[colour], xy, font_size)
        self.objects.append(Drawn("distractor", "word", colour, word, box))
        return box


@dataclass
class _Target:
    """What a category scene drew and the rules the random distractors must follow."""

    box: BBox
    description: str
    ask: Ask
    allow_shape: Callable[[str, str], bool]  # (colour, shape) of a filled shape
    allow_word: Callable[[str], bool] = lambda colour: True
    allow_box: Callable[[str], bool] = lambda border: True
    reference: Optional[BBox] = None
    reference_description: Optional[str] = None


def make_item(config: SynthConfig, seed: int, doc_id: str, image_path: str) -> SynthItem:
    """Draw item ``seed`` (same config and seed → identical pixels and question)."""
    rng = np.random.default_rng(seed)
    width = int(rng.integers(config.width_range[0], config.width_range[1] + 1))
    height = int(rng.integers(config.height_range[0], config.height_range[1] + 1))
    if config.family == "grid":
        image, meta, problem, source = make_grid_item(config.grid, rng, width, height, doc_id, image_path, seed,
                                                      GENERATOR_VERSION)
        row = MiniO3Row(images=[image_path], doc_id=doc_id, problem=problem, solution=meta.solution, data_source=source)
        return SynthItem(image, meta, row, [])
    difficulty = _weighted(rng, config.difficulty_mix)
    category = _weighted(rng, config.category_mix)
    answer_type = "mc" if rng.random() < config.mc_fraction else "free"
    spec = config.difficulties[difficulty]  # type: ignore[index]
    scale = math.sqrt(width * height)
    target_px = max(config.min_target_px, round(float(rng.uniform(*spec.target_frac)) * scale))

    canvas = background(rng, width, height)
    n_lookalikes = int(rng.integers(spec.lookalikes[0], spec.lookalikes[1] + 1))
    ctx = _Ctx(rng, config, canvas, Layout(width, height), target_px, n_lookalikes)
    target = _SCENES[category](ctx)
    n_distractors = _draw_distractors(ctx, target, int(rng.integers(spec.distractors[0], spec.distractors[1] + 1)), scale)
    qa = finish(rng, target.ask, answer_type)  # type: ignore[arg-type]

    meta = SampleMeta(
        doc_id=doc_id,
        image=image_path,
        question=qa.question,
        answer_type=qa.answer_type,
        options=qa.options,
        solution=qa.solution,
        answer=qa.answer,
        category=category,  # type: ignore[arg-type]
        difficulty=difficulty,  # type: ignore[arg-type]
        target_description=target.description,
        target_bbox=target.box,
        target_bbox_rel=relative_box(target.box, width, height),
        reference_bbox=target.reference,
        reference_description=target.reference_description,
        lookalikes=ctx.lookalikes,
        distractors=n_distractors,
        width=width,
        height=height,
        seed=seed,
        generator_version=GENERATOR_VERSION,
    )
    row = MiniO3Row(
        images=[image_path], doc_id=doc_id, problem=qa.problem, solution=qa.solution, data_source=f"synthetic_{difficulty}"
    )
    return SynthItem(canvas, meta, row, ctx.objects)


def _weighted(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.asarray([weights[n] for n in names], np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _choice(rng: np.random.Generator, pool: list[str] | tuple[str, ...]) -> str:
    return pool[int(rng.integers(len(pool)))]


# -- target scenes ---------------------------------------------------------------------------


def _reserve(ctx: _Ctx, w: int, h: int) -> BBox:
    """Place a ``w`` x ``h`` target away from the edges with a clear ring around it."""
    clear = max(3, round(0.3 * min(w, h)))
    margin = max(4, min(w, h))
    outer = ctx.layout.place(ctx.rng, w + 2 * clear, h + 2 * clear, gap=0, margin=margin, tries=1000)
    if outer is None:
        raise ValueError(f"canvas {ctx.layout.width}x{ctx.layout.height} is too small for a {w}x{h} target")
    return (outer[0] + clear, outer[1] + clear, outer[0] + clear + w, outer[1] + clear + h)


def _lookalike_size(ctx: _Ctx) -> int:
    return max(ctx.config.min_target_px, round(ctx.target_px * float(ctx.rng.uniform(0.8, 1.25))))


def _add_shape_lookalike(ctx: _Ctx, colour: str, shape: str) -> None:
    size = _lookalike_size(ctx)
    box = ctx.layout.place(ctx.rng, size, size, gap=max(2, size // 3))
    if box is not None:
        ctx.shape("lookalike", shape, colour, box)
        article = "an" if colour[0] in "aeiou" else "a"
        ctx.lookalikes.append(LabeledBox(label=f"{article} {colour} {shape}", bbox=box))


def _colour_scene(ctx: _Ctx) -> _Target:
    shape, colour = _choice(ctx.rng, SHAPES), _choice(ctx.rng, COLOUR_NAMES)
    box = ctx.shape("target", shape, colour, _reserve(ctx, ctx.target_px, ctx.target_px))
    for _ in range(ctx.n_lookalikes):
        _add_shape_lookalike(ctx, colour, _choice(ctx.rng, [s for s in SHAPES if s != shape]))
    return _Target(
        box=box,
        description=f"the {shape}",
        ask=colour_ask(ctx.rng, shape, colour),
        allow_shape=lambda c, s: s != shape,
        allow_box=lambda border: shape != "square",
    )


def _shape_scene(ctx: _Ctx) -> _Target:
    shape, colour = _choice(ctx.rng, SHAPES), _choice(ctx.rng, COLOUR_NAMES)
    box = ctx.shape("target", shape, colour, _reserve(ctx, ctx.target_px, ctx.target_px))
    for _ in range(ctx.n_lookalikes):
        _add_shape_lookalike(ctx, _choice(ctx.rng, [c for c in COLOUR_NAMES if c != colour]), shape)
    return _Target(
        box=box,
        description=f"the {colour} object",
        ask=shape_ask(ctx.rng, colour, shape),
        allow_shape=lambda c, s: c != colour,
        allow_word=lambda c: c != colour,
        allow_box=lambda border: border != colour and colour != "black",  # code ink is black
    )


def _text_scene(ctx: _Ctx) -> _Target:
    cfg = ctx.config
    border, code = _choice(ctx.rng, COLOUR_NAMES), random_code(ctx.rng, cfg.code_length)
    font_size = font_for_box_height(code, ctx.target_px, cfg.min_font_px)
    w, h = code_box_size(code, font_size)
    x0, y0, _, _ = _reserve(ctx, w, h)
    box = ctx.code_box("target", code, border, (x0, y0), font_size)
    others = [c for c in COLOUR_NAMES if c != border]
    for _ in range(ctx.n_lookalikes):
        colour, other_code = _choice(ctx.rng, others), random_code(ctx.rng, cfg.code_length)
        size = max(cfg.min_font_px, round(font_size * float(ctx.rng.uniform(0.85, 1.2))))
        bw, bh = code_box_size(other_code, size)
        spot = ctx.layout.place(ctx.rng, bw, bh, gap=max(2, bh // 3))
        if spot is not None:
            drawn = ctx.code_box("lookalike", other_code, colour, (spot[0], spot[1]), size)
            ctx.lookalikes.append(LabeledBox(label=f"a box with a thick {colour} border", bbox=drawn))
    return _Target(
        box=box,
        description=f"the box with a thick {border} border",
        ask=text_ask(border, code, similar_codes(ctx.rng, code, 3)),
        allow_shape=lambda c, s: not (c == border and s == "square"),
        allow_box=lambda b: b != border,
    )


def _position_scene(ctx: _Ctx) -> _Target:
    rng = ctx.rng
    t_colour, r_colour = (COLOUR_NAMES[i] for i in rng.choice(len(COLOUR_NAMES), 2, replace=False))
    t_shape, r_shape = (SHAPES[i] for i in rng.choice(len(SHAPES), 2, replace=False))
    t = ctx.target_px
    r = max(ctx.config.min_target_px, round(t * float(rng.uniform(0.9, 1.2))))
    gap = max(3, round(t * float(rng.uniform(0.5, 1.1))))
    shift = round(t * float(rng.uniform(-0.4, 0.4)))
    relation = _choice(rng, ("left", "right", "above", "below"))
    # Offsets of target and reference inside their union box.
    if relation in ("left", "right"):
        tx, rx = (0, t + gap) if relation == "left" else (r + gap, 0)
        ty, ry = max(0, shift), max(0, -shift)
    else:
        ty, ry = (0, t + gap) if relation == "above" else (r + gap, 0)
        tx, rx = max(0, shift), max(0, -shift)
    union_w, union_h = max(tx + t, rx + r), max(ty + t, ry + r)
    ux, uy, _, _ = _reserve(ctx, union_w, union_h)
    box = (ux + tx, uy + ty, ux + tx + t, uy + ty + t)
    reference = (ux + rx, uy + ry, ux + rx + r, uy + ry + r)
    ctx.shape("target", t_shape, t_colour, box)
    ctx.shape("reference", r_shape, r_colour, reference)
    pairs = {(t_colour, t_shape), (r_colour, r_shape)}
    for _ in range(ctx.n_lookalikes):
        colour, shape = (t_colour, t_shape) if rng.random() < 0.5 else (r_colour, r_shape)
        if rng.random() < 0.5:
            colour = _choice(rng, COLOUR_NAMES)
        else:
            shape = _choice(rng, SHAPES)
        if (colour, shape) not in pairs:
            _add_shape_lookalike(ctx, colour, shape)
    target_name, reference_name = f"{t_colour} {t_shape}", f"{r_colour} {r_shape}"
    return _Target(
        box=box,
        description=f"the {target_name}",
        ask=position_ask(target_name, reference_name, relation),
        allow_shape=lambda c, s: (c, s) not in pairs,
        reference=reference,
        reference_description=f"the {reference_name}",
    )


_SCENES: dict[str, Callable[[_Ctx], _Target]] = {
    "colour": _colour_scene,
    "shape": _shape_scene,
    "text": _text_scene,
    "position": _position_scene,
}


# -- distractors -----------------------------------------------------------------------------


def _draw_distractors(ctx: _Ctx, target: _Target, count: int, scale: float) -> int:
    """Draw up to ``count`` random distractors that obey the target's rules; returns how many."""
    rng, cfg = ctx.rng, ctx.config
    kinds = list(_KIND_WEIGHTS)
    p = np.asarray(list(_KIND_WEIGHTS.values()))
    low, high = (math.log(f * scale) for f in cfg.distractor_frac)
    drawn = 0
    for _ in range(count):
        kind = kinds[int(rng.choice(len(kinds), p=p))]
        size = max(cfg.min_target_px, round(math.exp(float(rng.uniform(low, high)))))
        colour = _choice(rng, COLOUR_NAMES)
        if kind == "shape":
            shape = _choice(rng, SHAPES)
            if not target.allow_shape(colour, shape):
                continue
            box = ctx.layout.place(rng, size, size, gap=max(2, size // 4), tries=8)
            if box is not None:
                ctx.shape("distractor", shape, colour, box)
        elif kind == "word":
            if not target.allow_word(colour):
                continue
            word, font_size = _choice(rng, WORDS), max(cfg.min_font_px, size)
            w, h = text_size(word, font_size)
            box = ctx.layout.place(rng, w, h, gap=max(2, h // 4), tries=8)
            if box is not None:
                ctx.word(word, colour, (box[0], box[1]), font_size)
        else:
            if not target.allow_box(colour):
                continue
            code, font_size = random_code(rng, cfg.code_length), max(cfg.min_font_px, round(size * 0.7))
            w, h = code_box_size(code, font_size)
            box = ctx.layout.place(rng, w, h, gap=max(2, h // 4), tries=8)
            if box is not None:
                ctx.code_box("distractor", code, colour, (box[0], box[1]), font_size)
        drawn += box is not None
    return drawn
