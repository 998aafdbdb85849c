"""Synthetic benchmark: config and schema validation, item drawing, questions, oracle turns."""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pytest
from pydantic import ValidationError

from mini_o3.data.schemas import (
    COLDSTART_SCHEMA,
    MiniO3Row,
    SampleMeta,
    parse_coldstart_conversations,
    read_meta_jsonl,
    read_rows,
    write_meta_jsonl,
    write_rows,
)
from mini_o3.data.synthetic import STRATEGIES, OraclePolicy, SynthConfig, make_item, png_bytes, score_item
from mini_o3.data.synthetic.vocab import COLOURS, random_code, similar_codes
from mini_o3.task import EpisodeSample, format_reward, parse_grounding, run_episode
from mini_o3.task.grounding import GroundingCall

SMALL = SynthConfig(width_range=(640, 900), height_range=(520, 800))
ROW = {
    "images": ["bench/data/a.png"],
    "doc_id": "a",
    "problem": "<image>\nWhat is it?",
    "solution": "B",
    "data_source": "synthetic_hard",
}


def item(seed: int, config: SynthConfig = SMALL, **overrides):
    cfg = config.model_copy(update=overrides) if overrides else config
    return make_item(cfg, seed, f"doc_{seed}", f"bench/data/doc_{seed}.png")


def items_by(key, wanted, config=SMALL, limit=400):
    """The first item (by seed) whose meta has ``key`` == ``wanted``."""
    for seed in range(limit):
        it = item(seed, config)
        if getattr(it.meta, key) == wanted:
            return it
    raise AssertionError(f"no item with {key}={wanted}")


# -- config ----------------------------------------------------------------------------------


def test_default_config_is_valid_and_round_trips():
    cfg = SynthConfig()
    assert SynthConfig.model_validate_json(cfg.model_dump_json()) == cfg


@pytest.mark.parametrize(
    "field, value",
    [
        ("mc_fraction", 1.5),
        ("width_range", (4000, 2000)),
        ("height_range", (100, 200)),
        ("difficulty_mix", {"easy": -1.0}),
        ("category_mix", {"colour": 0.0}),
        ("category_mix", {"smell": 1.0}),
        ("png_compress_level", 12),
        ("image_format", "jpeg"),
        ("code_length", 1),
        ("coldstart_strategies", ("direct", "teleport")),
        ("not_a_field", 1),
    ],
)
def test_bad_config_values_name_the_field(field, value):
    with pytest.raises(ValidationError) as exc:
        SynthConfig.model_validate({field: value})
    assert field in str(exc.value)


def test_bad_difficulty_spec_names_the_field():
    hard = {"target_frac": (0.5, 0.1), "distractors": (1, 2), "lookalikes": (0, 0)}
    with pytest.raises(ValidationError, match="target_frac"):
        SynthConfig.model_validate({"difficulties": {"hard": hard}})
    with pytest.raises(ValidationError, match="coldstart_rollouts"):
        SynthConfig(coldstart_rollouts=3, coldstart_strategies=("direct",))


# -- schemas ---------------------------------------------------------------------------------


def test_row_accepts_a_mini_o3_row_and_coerces_int_doc_ids():
    assert MiniO3Row.model_validate(ROW).question == "What is it?"
    assert MiniO3Row.model_validate({**ROW, "doc_id": 7}).doc_id == "7"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"problem": "What is it?"}, "must start with '<image>\\\\n'"),
        ({"problem": "<image>\n<image>\nWhat?"}, "exactly one '<image>'"),
        ({"problem": "<image>\n  "}, "no question"),
        ({"images": ["a.png", "b.png"]}, "exactly one image"),
        ({"images": ["/abs/a.png"]}, "must be relative"),
        ({"images": ["../a.png"]}, "'..'"),
        ({"solution": " "}, "solution must not be empty"),
        ({"data_source": "Synthetic-Hard"}, "data_source must match"),
        ({"doc_id": "a/b"}, "doc_id"),
        ({"extra": 1}, "extra"),
    ],
)
def test_row_validators_give_clear_errors(change, message):
    with pytest.raises(ValidationError, match=message):
        MiniO3Row.model_validate({**ROW, **change})


def test_rows_round_trip_and_errors_name_the_row(tmp_path):
    path = tmp_path / "val.json"
    write_rows(path, [ROW, {**ROW, "doc_id": "b"}])
    assert [r.doc_id for r in read_rows(path)] == ["a", "b"]
    assert json.loads(path.read_text())[0] == ROW  # a plain JSON list, indent=2
    assert path.read_text().startswith('[\n  {\n    "images"')
    assert [p.name for p in tmp_path.iterdir()] == ["val.json"]  # no temporary files left
    with pytest.raises(ValueError, match="row 1 repeats doc_id 'a'"):
        write_rows(path, [ROW, ROW])
    path.write_text(json.dumps([ROW, {**ROW, "doc_id": "c", "problem": "no image"}]))
    with pytest.raises(ValueError, match=r"val.json: row 1 is invalid"):
        read_rows(path)
    path.write_text(json.dumps(ROW))
    with pytest.raises(ValueError, match="expected a JSON list"):
        read_rows(path)


def test_sample_meta_checks_options_and_boxes(tmp_path):
    meta = item(0).meta
    write_meta_jsonl(tmp_path / "m.jsonl", [meta])
    assert read_meta_jsonl(tmp_path / "m.jsonl") == [meta]
    data = meta.model_dump()
    with pytest.raises(ValidationError, match="not a box inside"):
        SampleMeta.model_validate({**data, "target_bbox": (0, 0, meta.width + 5, 10), "target_bbox_rel": (0, 0, 1.0, 0.01)})
    mc = items_by("answer_type", "mc").meta.model_dump()
    with pytest.raises(ValidationError, match="mc solution must be one of"):
        SampleMeta.model_validate({**mc, "solution": "Z"})
    with pytest.raises(ValidationError, match="free-form questions have no options"):
        SampleMeta.model_validate({**mc, "answer_type": "free"})


def test_coldstart_schema_is_the_hf_layout():
    assert COLDSTART_SCHEMA.names == ["images", "image_names", "conversations", "data_source", "sample_index", "rollout_index"]
    image = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
    assert COLDSTART_SCHEMA.field("images").type == pa.list_(image)
    assert COLDSTART_SCHEMA.field("image_names").type == pa.list_(pa.string())
    assert COLDSTART_SCHEMA.field("conversations").type == pa.string()
    assert COLDSTART_SCHEMA.field("sample_index").type == pa.int64()
    features = json.loads(COLDSTART_SCHEMA.metadata[b"huggingface"])["info"]["features"]
    assert features["images"]["feature"] == {"_type": "Image"}


def test_coldstart_conversations_are_parsed_safely():
    good = [{"from": "system", "value": "s"}, {"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]
    assert [t.from_ for t in parse_coldstart_conversations(repr(good), n_images=1)] == ["system", "human", "gpt"]
    with pytest.raises(ValueError, match="not a Python literal"):
        parse_coldstart_conversations("__import__('os').system('true')")
    with pytest.raises(ValueError, match="alternating"):
        parse_coldstart_conversations(repr(good[:2]))
    with pytest.raises(ValueError, match="placeholders"):
        parse_coldstart_conversations(repr(good), n_images=2)
    with pytest.raises(ValueError, match="bad conversation turn"):
        parse_coldstart_conversations(repr([{"from": "robot", "value": "x"}]))


# -- items -----------------------------------------------------------------------------------


def test_same_seed_same_item_and_different_seed_different_item():
    a, b, c = item(11), item(11), item(12)
    assert png_bytes(a.image) == png_bytes(b.image)
    assert a.meta == b.meta and a.row == b.row
    assert png_bytes(a.image) != png_bytes(c.image)


@pytest.mark.slow
def test_rows_are_valid_and_mc_solutions_are_listed_letters():
    seen = set()
    for seed in range(40):
        it = item(seed)
        row, meta = it.row, it.meta
        assert row.problem.startswith("<image>\n") and row.data_source == f"synthetic_{meta.difficulty}"
        assert row.solution == meta.solution and row.images == [meta.image]
        if meta.answer_type == "mc":
            listed = re.findall(r"^\(([A-Z])\) (.+)$", row.problem, re.MULTILINE)
            assert [text for _, text in listed] == meta.options
            assert [letter for letter, _ in listed] == list("ABCD"[: len(meta.options)])
            assert row.solution in [letter for letter, _ in listed]
            assert len(meta.options) == (2 if meta.category == "position" else 4)
        else:
            assert meta.options == [] and row.solution == meta.answer
        seen.add((meta.category, meta.answer_type))
    assert len(seen) == 8  # every category, both answer types


def _matches(obj, meta, colour, shape):
    return obj.kind == "shape" and (colour is None or obj.colour == colour) and (shape is None or obj.what == shape)


@pytest.mark.parametrize("seed", range(24))
def test_question_names_exactly_one_object(seed):
    it = item(seed, SMALL.model_copy(update={"difficulty_mix": {"hard": 1.0}}))
    meta, target = it.meta, it.objects[0]
    assert target.role == "target" and target.box == meta.target_bbox
    objects = it.objects
    if meta.category == "colour":
        assert sum(_matches(o, meta, None, target.what) for o in objects) == 1
        assert target.colour == meta.answer
        if target.what == "square":
            assert not any(o.kind == "box" for o in objects)
    elif meta.category == "shape":
        assert [o for o in objects if o.colour == target.colour] == [target]
        assert target.what == meta.answer
        if target.colour == "black":  # code boxes are inked in black
            assert not any(o.kind == "box" for o in objects)
    elif meta.category == "text":
        assert [o for o in objects if o.kind == "box" and o.colour == target.colour] == [target]
        assert target.what == meta.answer and f"thick {target.colour} border" in meta.question
    else:
        reference = objects[1]
        for obj in (target, reference):
            assert sum(_matches(o, meta, obj.colour, obj.what) for o in objects) == 1
        assert f"{target.colour} {target.what}" in meta.question
        assert f"{reference.colour} {reference.what}" in meta.question


@pytest.mark.parametrize("category", ["colour", "shape", "position"])
def test_target_pixels_have_the_named_colour(category):
    it = items_by("category", category)
    x0, y0, x1, y1 = it.meta.target_bbox
    centre = it.image.getpixel(((x0 + x1) // 2, (y0 + y1) // 2))
    assert centre == COLOURS[it.objects[0].colour]


def test_text_target_has_the_named_border_colour():
    it = items_by("category", "text")
    x0, y0, _, _ = it.meta.target_bbox
    assert it.image.getpixel((x0, y0)) == COLOURS[it.objects[0].colour]


def test_objects_do_not_overlap():
    boxes = [o.box for o in item(3).objects]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_codes_avoid_number_words_and_options_differ():
    import numpy as np

    rng = np.random.default_rng(0)
    codes = [random_code(rng, 3) for _ in range(300)]
    assert "TEN" not in codes and all(len(c) == 3 for c in codes)
    wrong = similar_codes(rng, "K7X", 3)
    assert len(set(wrong)) == 3 and "K7X" not in wrong


# -- oracle ----------------------------------------------------------------------------------

_TOOL_TURN = re.compile(
    r'^<think>[^<]+</think>\n<grounding>\{"bbox_2d": \[[0-9.]+(, [0-9.]+){3}\], '
    r'"source": "(original_image|observation_\d+)"\}</grounding>$'
)
_ANSWER_TURN = re.compile(r"^<think>[^<]+</think>\n<answer>[^<]+</answer>$")
_SOURCES = {
    "direct": ["original_image"],
    "coarse_to_fine": ["original_image", "observation_1"],
    "recovery": ["original_image", "original_image"],
    "recovery_coarse_to_fine": ["original_image", "original_image", "observation_2"],
}


def _run(it, strategy, seed=0):
    return run_episode(OraclePolicy(it.meta, strategy, seed), EpisodeSample(it.row.problem, it.image, it.meta.doc_id))


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("seed", [1, 2, 5, 9])
def test_oracle_answers_correctly_in_the_mini_o3_format(strategy, seed):
    it = item(seed)
    traj = _run(it, strategy)
    assert traj.termination == "answer"
    assert score_item(it.meta, traj.answer) == 1.0
    assert traj.answer == it.meta.solution
    assert traj.num_turns == len(_SOURCES[strategy]) + 1
    *tools, last = traj.model_outputs
    for output in tools:
        assert _TOOL_TURN.match(output), output
        assert isinstance(parse_grounding(output), GroundingCall)
    assert _ANSWER_TURN.match(last), last
    assert [t.tool_call.source for t in traj.turns[:-1]] == _SOURCES[strategy]
    assert all(t.error is None for t in traj.turns)
    assert format_reward(traj.model_outputs) == 1.0


def test_recovery_looks_at_a_wrong_region_first():
    it = items_by("difficulty", "hard")
    traj = _run(it, "recovery")
    first = traj.turns[0].crop.box
    tx0, ty0, tx1, ty1 = it.meta.target_bbox
    assert first[2] <= tx0 or tx1 <= first[0] or first[3] <= ty0 or ty1 <= first[1]
    assert "not" in traj.turns[1].output.split("</think>")[0]


def test_fine_zoom_on_an_observation_covers_the_target():
    it = item(4)
    traj = _run(it, "coarse_to_fine")
    coarse, fine = traj.turns[0].crop, traj.turns[1].crop
    assert coarse.source_index == 0 and fine.source_index == 1
    ox, oy = coarse.box[:2]
    x0, y0, x1, y1 = it.meta.target_bbox
    fx0, fy0, fx1, fy1 = fine.box
    assert fx0 + ox <= x0 and fy0 + oy <= y0 and fx1 + ox >= x1 and fy1 + oy >= y1


def test_think_texts_vary_with_the_seed():
    it = item(6)
    texts = {_run(it, "direct", seed).model_outputs[0].split("</think>")[0] for seed in range(8)}
    assert len(texts) > 1


def test_oracle_rejects_an_unknown_strategy():
    with pytest.raises(ValueError, match="unknown oracle strategy"):
        OraclePolicy(item(0).meta, "guess")  # type: ignore[arg-type]
