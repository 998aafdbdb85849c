"""Synthetic benchmark end to end: generate() files, determinism, oracle scores, cold-start
parquet, target sizes at model-facing resolution, bad inputs, speed."""

from __future__ import annotations

import ast
import io
import json
import re
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image
from pydantic import ValidationError

from mini_o3.data import synthetic
from mini_o3.data.bench import read_records, sample_meta, to_row
from mini_o3.data.schemas import COLDSTART_SCHEMA, SYNTHETIC_DATA_SOURCES, read_meta_jsonl, read_rows
from mini_o3.data.synthetic import STRATEGIES, OraclePolicy, SynthConfig, generate, make_item, score_item
from mini_o3.task import TRAIN_LIMITS, EpisodeSample, resize_initial, run_episode

pytestmark = pytest.mark.slow  # generates and rolls out synthetic benchmarks

CONFIG = SynthConfig(width_range=(700, 1100), height_range=(600, 900), coldstart_rollouts=2)
N_TRAIN, N_TEST, SEED = 8, 12, 5


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "synth_bench"
    generate(CONFIG, out, N_TRAIN, N_TEST, SEED, progress=False)
    return out


def _all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- layout and rows -------------------------------------------------------------------------


def test_layout_rows_and_sidecars(bench: Path):
    base = bench.parent  # BASE_IMAGE_DIR
    assert {p.name for p in bench.iterdir()} == {
        "train.json", "val.json", "train.parquet", "val.parquet", "train_meta.jsonl", "val_meta.jsonl", "data",
        "coldstart", "manifest.json",
    }
    assert not [p for p in base.iterdir() if p.name.startswith(".")]  # no staging leftovers
    for split, n in (("train", N_TRAIN), ("val", N_TEST)):
        rows = read_rows(bench / f"{split}.json")
        metas = read_meta_jsonl(bench / f"{split}_meta.jsonl")
        assert len(rows) == len(metas) == n
        for row, meta in zip(rows, metas, strict=True):
            assert row.images[0] == f"synth_bench/data/{row.doc_id}.png" == meta.image
            assert row.image_path(base).is_file()
            assert row.problem.startswith("<image>\n") and row.data_source in SYNTHETIC_DATA_SOURCES
            assert row.doc_id == meta.doc_id and row.solution == meta.solution
            with Image.open(row.image_path(base)) as image:
                assert image.format == "PNG" and image.size == (meta.width, meta.height)
        records = read_records(bench / f"{split}.parquet")  # the unified bench view of the same items
        assert [to_row(r) for r in records] == rows
        assert [sample_meta(r) for r in records] == metas


def test_manifest_counts_and_files(bench: Path):
    manifest = json.loads((bench / "manifest.json").read_text())
    assert manifest["seed"] == SEED and manifest["generator_version"] == synthetic.GENERATOR_VERSION
    assert SynthConfig.model_validate(manifest["config"]) == CONFIG
    for split, n in (("train", N_TRAIN), ("val", N_TEST)):
        summary = manifest["splits"][split]
        assert summary["count"] == n
        for key in ("by_difficulty", "by_category", "by_answer_type"):
            assert sum(summary[key].values()) == n
    listed = {f["path"]: f["bytes"] for f in manifest["files"]}
    on_disk = {k: len(v) for k, v in _all_files(bench).items() if k != "manifest.json"}
    assert listed == on_disk
    assert manifest["coldstart"]["rows"] == 2 * N_TRAIN and manifest["coldstart"]["dropped"] == 0


# -- determinism -----------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_and_another_seed_differs(bench: Path, tmp_path: Path):
    again = tmp_path / "a" / "synth_bench"
    generate(CONFIG, again, N_TRAIN, N_TEST, SEED, progress=False, workers=1)
    assert _all_files(again) == _all_files(bench)
    other = tmp_path / "b" / "synth_bench"
    generate(CONFIG, other, N_TRAIN, N_TEST, SEED + 1, progress=False)
    first, second = _all_files(bench), _all_files(other)
    assert first["val.json"] != second["val.json"]
    assert first["data/synthetic_val_00000.png"] != second["data/synthetic_val_00000.png"]


# -- oracle ----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_oracle_scores_one_on_every_test_item(bench: Path, strategy):
    base = bench.parent
    for row, meta in zip(read_rows(bench / "val.json"), read_meta_jsonl(bench / "val_meta.jsonl"), strict=True):
        sample = EpisodeSample(row.problem, row.image_path(base), row.doc_id)
        traj = run_episode(OraclePolicy(meta, strategy, rng_seed=1), sample, TRAIN_LIMITS)
        assert traj.termination == "answer", row.doc_id
        assert score_item(meta, traj.answer) == 1.0, (row.doc_id, traj.answer)
        assert 2 <= traj.num_turns <= 4
        sources = [t.tool_call.source for t in traj.turns[:-1]]
        if strategy == "coarse_to_fine":
            assert sources == ["original_image", "observation_1"]
        if strategy == "recovery_coarse_to_fine":
            assert sources[-1] == "observation_2"


# -- cold-start parquet ----------------------------------------------------------------------

_TOOL_TURN = re.compile(r'^<think>.+</think>.*<grounding>\{"bbox_2d": \[.+\], "source": "[a-z_0-9]+"\}</grounding>$', re.DOTALL)
_ANSWER_TURN = re.compile(r"^<think>.+</think>.*<answer>.+</answer>$", re.DOTALL)


def test_coldstart_parquet(bench: Path):
    path = bench / synthetic.COLDSTART_FILE
    assert path.as_posix().endswith("coldstart/data/train-00000-of-00001.parquet")
    assert pq.read_schema(path).equals(COLDSTART_SCHEMA, check_metadata=True)
    table = pq.read_table(path)
    assert table.schema.equals(COLDSTART_SCHEMA)
    rows = table.to_pylist()
    assert len(rows) == 2 * N_TRAIN
    train = {m.doc_id: m for m in read_meta_jsonl(bench / "train_meta.jsonl")}
    metas = list(train.values())
    for row in rows:
        conv = ast.literal_eval(row["conversations"])
        roles = [turn["from"] for turn in conv]
        assert roles[0] == "system" and roles[1:] == ["human", "gpt"] * ((len(roles) - 1) // 2)
        n_images = sum(turn["value"].count("<image>") for turn in conv)
        assert n_images == len(row["images"]) == len(row["image_names"])
        assert row["image_names"] == ["original_image.png"] + [f"observation_{i}.png" for i in range(1, n_images)]
        assert [im["path"] for im in row["images"]] == row["image_names"]
        gpt = [turn["value"] for turn in conv if turn["from"] == "gpt"]
        assert all(_TOOL_TURN.match(text) for text in gpt[:-1])
        assert _ANSWER_TURN.match(gpt[-1]) and "<grounding>" not in gpt[-1]
        meta = metas[row["sample_index"]]
        assert row["data_source"] == f"synthetic_{meta.difficulty}"
        answer = re.search(r"<answer>(.*)</answer>", gpt[-1]).group(1)
        assert score_item(meta, answer) == 1.0
        sizes = [Image.open(io.BytesIO(im["bytes"])).size for im in row["images"]]
        first = resize_initial(Image.new("RGB", (meta.width, meta.height)), 40_000, 2_000_000).size
        assert sizes[0] == first  # model-facing copies, not the raw images
        assert all(w * h <= 2_000_000 for w, h in sizes)
    pairs = sorted((r["sample_index"], r["rollout_index"]) for r in rows)
    assert pairs == [(i, k) for i in range(N_TRAIN) for k in range(2)]


# -- target size at the model's resolution ---------------------------------------------------


def _origin(traj, index):
    if index == 0:
        return (0, 0)
    turn = next(t for t in traj.turns if t.observation == index)
    ox, oy = _origin(traj, turn.crop.source_index)
    return ox + turn.crop.box[0], oy + turn.crop.box[1]


def test_hard_targets_are_tiny_for_the_model_and_large_after_zooming():
    config = SynthConfig(width_range=(4096, 4096), height_range=(3840, 4096), difficulty_mix={"hard": 1.0})
    seen = {}
    for seed in range(40):
        it = make_item(config, seed, f"h{seed}", f"b/data/h{seed}.png")
        seen.setdefault(it.meta.category, it)
        if len(seen) == 4:
            break
    assert set(seen) == {"colour", "shape", "text", "position"}
    for category, it in seen.items():
        meta = it.meta
        x0, y0, x1, y1 = meta.target_bbox
        scale = resize_initial(it.image, 40_000, 2_000_000).width / meta.width
        assert min(x1 - x0, y1 - y0) * scale < 5.0, (category, meta.target_bbox, scale)
        for strategy in STRATEGIES:
            traj = run_episode(OraclePolicy(meta, strategy), EpisodeSample(it.row.problem, it.image, meta.doc_id))
            assert score_item(meta, traj.answer) == 1.0
            last = len(traj.raw_images) - 1
            ox, oy = _origin(traj, last)
            crop_box = (ox, oy, ox + traj.raw_images[last].width, oy + traj.raw_images[last].height)
            assert crop_box[0] <= x0 and crop_box[1] <= y0 and x1 <= crop_box[2] and y1 <= crop_box[3]
            zoom = traj.images[-1].width / traj.raw_images[-1].width
            assert min(x1 - x0, y1 - y0) * zoom >= 40, (category, strategy, zoom)


# -- bad inputs ------------------------------------------------------------------------------


def test_non_empty_out_dir_needs_overwrite(tmp_path: Path):
    out = tmp_path / "bench"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate(CONFIG, out, 1, 1, 0, progress=False)
    assert (out / "keep.txt").read_text() == "mine"
    generate(CONFIG, out, 1, 1, 0, progress=False, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "val.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]


def test_empty_out_dir_is_fine_and_bad_arguments_are_refused(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    generate({"width_range": (512, 600), "height_range": (512, 600)}, tmp_path / "empty", 1, 0, 0, progress=False)
    with pytest.raises(ValidationError, match="mc_fraction"):
        generate({"mc_fraction": -0.1}, tmp_path / "x", 1, 1, 0, progress=False)
    with pytest.raises(ValueError, match="n_test must be a non-negative int"):
        generate(CONFIG, tmp_path / "y", 1, -1, 0, progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_a_crash_leaves_no_partial_output(tmp_path: Path, monkeypatch):
    calls = {"n": 0}
    real = synthetic.writers.make_item

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic.writers, "make_item", flaky)
    with pytest.raises(RuntimeError, match="boom"):
        generate(CONFIG, tmp_path / "bench", 2, 2, 0, progress=False, workers=1)
    assert list(tmp_path.iterdir()) == []


# -- speed -----------------------------------------------------------------------------------


def test_generation_speed_20_plus_20_at_2048px(tmp_path: Path):
    config = SynthConfig(width_range=(2048, 2048), height_range=(2048, 2048))
    start = time.perf_counter()
    manifest = generate(config, tmp_path / "bench", 20, 20, 0, progress=False)
    elapsed = time.perf_counter() - start
    assert manifest.coldstart.rows == 40 and manifest.coldstart.dropped == 0
    assert elapsed < 20, f"took {elapsed:.1f}s"
