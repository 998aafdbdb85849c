"""``prepare_coldstart`` end to end on parquet files built here: attack rows, folder and file
inputs, re-runs, the bad-fraction failure, the synthetic generator's parquet, and LLaMA-Factory
loading the output."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
import shutil
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mini_o3.data.coldstart import (
    DATASET_INFO_ENTRY,
    ColdstartPrepConfig,
    ColdstartPrepError,
    ColdstartPrepSummary,
    prepare_coldstart,
)
from mini_o3.data.schemas import COLDSTART_SCHEMA

SERIAL = ColdstartPrepConfig(workers=1, max_bad_fraction=1.0)
PARALLEL = ColdstartPrepConfig(workers=2, batch_size=2, max_bad_fraction=1.0)


def jpeg(seed: int, size: tuple[int, int] = (48, 32)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def png_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def conversation(n_images: int, tag: str = "") -> str:
    turns = [{"from": "system", "value": "sys"}, {"from": "human", "value": f"<image>\nQuestion {tag}?"}]
    for k in range(1, n_images):
        turns += [{"from": "gpt", "value": f"<think>t{k}</think><grounding>{{}}</grounding>"},
                  {"from": "human", "value": f"Observation {k}:\n<image>."}]
    turns.append({"from": "gpt", "value": f"<think>done</think><answer>{tag}</answer>"})
    return repr(turns)


def row(tag: str, images: list[bytes | None] | None, names: list | None = None, conv: Any = "auto") -> dict:
    if names is None and images is not None:
        names = [f"image_{i}.jpg" for i in range(len(images))]
    return {
        "images": None if images is None else [None if b is None else {"bytes": b, "path": None} for b in images],
        "image_names": names,
        "conversations": conversation(len(images or []), tag) if conv == "auto" else conv,
        "data_source": "test",
        "sample_index": 0,
        "rollout_index": 0,
    }


def write_parquet(path: Path, rows: list[dict], row_group_size: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=COLDSTART_SCHEMA), path, row_group_size=row_group_size)
    return path


def output(out: Path) -> list[dict]:
    return json.loads((out / "Mini-o3-Coldstart.json").read_text(encoding="utf-8"))


def rejections(out: Path) -> dict[int, dict]:
    lines = (out / "rejected.jsonl").read_text(encoding="utf-8").splitlines()
    return {r["idx"]: r for r in map(json.loads, lines)}


def all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- attacks ---------------------------------------------------------------------------------


def test_attack_rows_are_rejected_and_good_rows_kept_byte_identical(tmp_path):
    marker = tmp_path / "pwned"
    good = [jpeg(0), jpeg(1)]
    full = jpeg(2, (200, 150))
    rows = [
        row("good0", good),  # 0
        row("x", [jpeg(3)], conv=f"[{{'from': 'human', 'value': __import__('os').system('touch {marker}')}}]"),
        row("x", [jpeg(4)], names=["../../x.jpg"]),  # 2
        row("x", [jpeg(5)], names=["../../../../../x.jpg"]),
        row("x", [jpeg(6)], names=["/etc/passwd"]),  # 4
        row("x", [jpeg(7)], names=["a/b.jpg"]),
        row("x", [jpeg(8), jpeg(9)], names=["same.jpg", "same.jpg"]),  # 6
        row("x", [full[: len(full) // 2]]),  # truncated JPEG
        row("x", [png_bomb()], names=["bomb.png"]),  # 8
        row("x", [jpeg(10)], conv=None),
        row("x", None),  # 10: null images and names
        row("x", [None]),  # an image without bytes
        row("x", [jpeg(11)], names=["nul\x00.jpg"]),  # 12
        row("x", [jpeg(12)], conv=conversation(1, "NUL").replace("NUL", "\x00")),  # a raw NUL in the string
        row("x", [jpeg(13)], conv=conversation(2, "two placeholders")),  # 14
        row("good15", [full]),
    ]
    source = write_parquet(tmp_path / "in" / "attack.parquet", rows)
    out = tmp_path / "deep" / "er" / "out"
    before = all_files(tmp_path)
    passwd = os.stat("/etc/passwd") if os.path.exists("/etc/passwd") else None

    summary = prepare_coldstart(str(source), out, PARALLEL, progress=False)

    assert not marker.exists()
    assert not [p for p in all_files(tmp_path) - before if out not in p.parents], "a file was written outside DIR"
    assert not list(tmp_path.rglob("x.jpg")) and not list(tmp_path.rglob("passwd"))
    if passwd is not None:
        assert os.stat("/etc/passwd").st_mtime_ns == passwd.st_mtime_ns
    assert (summary.rows_in, summary.rows_out, summary.rows_rejected) == (16, 2, 14)
    bad = rejections(out)
    assert sorted(bad) == list(range(1, 15))
    expected = {
        1: ("bad_conversations", "not a Python literal"),
        2: ("bad_image_name", "'../../x.jpg'"),
        3: ("bad_image_name", "starts with '.'"),
        4: ("bad_image_name", "'/etc/passwd'"),
        5: ("bad_image_name", "'a/b.jpg'"),
        6: ("bad_image_name", "repeats"),
        7: ("bad_image", "EOI"),
        8: ("image_too_large", "decompression-bomb"),
        9: ("missing_field", "conversations is null"),
        10: ("missing_field", "images is null"),
        11: ("missing_field", "images[0] has no bytes"),
        12: ("bad_image_name", "control character"),
        13: ("bad_conversations", "null bytes"),
        14: ("bad_conversations", "2 '<image>' placeholders for 1 images"),
    }
    for idx, (code, fragment) in expected.items():
        assert bad[idx]["code"] == code and fragment in bad[idx]["reason"], bad[idx]
        assert (bad[idx]["file"], bad[idx]["row"]) == ("attack.parquet", idx)
    assert summary.rejected_by_code == {"bad_conversations": 3, "bad_image": 1, "bad_image_name": 6,
                                        "image_too_large": 1, "missing_field": 3}

    records = output(out)
    assert [r["conversations"][-1]["value"] for r in records] == ["<think>done</think><answer>good0</answer>",
                                                                  "<think>done</think><answer>good15</answer>"]
    assert records[0]["images"] == [str(out / f"images/minio3_coldstart_0/image_{i}.jpg") for i in range(2)]
    assert [Path(p).read_bytes() for r in records for p in r["images"]] == good + [full]
    assert sorted(p.name for p in (out / "images").iterdir()) == ["minio3_coldstart_0", "minio3_coldstart_15"]
    assert json.loads((out / "dataset_info.json").read_text())["minio3_coldstart"] == DATASET_INFO_ENTRY
    assert ColdstartPrepSummary.model_validate_json((out / "summary.json").read_text()) == summary
    assert summary.images_out == 3 and summary.image_bytes_out == sum(map(len, good + [full]))


# -- inputs ----------------------------------------------------------------------------------


def test_folder_of_files_counts_rows_over_sorted_files_and_single_file_works(tmp_path):
    first = write_parquet(tmp_path / "src" / "data" / "train-00000-of-00002.parquet",
                          [row(f"a{i}", [jpeg(i)] * (i + 1)) for i in range(4)], row_group_size=2)
    second = write_parquet(tmp_path / "src" / "data" / "train-00001-of-00002.parquet",
                           [row(f"b{i}", [jpeg(10 + i)]) for i in range(3)], row_group_size=2)
    (tmp_path / "src" / "README.md").write_text("not parquet")

    summary = prepare_coldstart(str(tmp_path / "src"), tmp_path / "out", PARALLEL, progress=False)
    assert (summary.files, summary.rows_in, summary.rows_out, summary.images_out) == (2, 7, 7, 13)
    records = output(tmp_path / "out")
    assert [r["conversations"][-1]["value"][-12:] for r in records] == [
        f"<answer>{t}</answer>"[-12:] for t in ["a0", "a1", "a2", "a3", "b0", "b1", "b2"]]
    assert records[4]["images"] == [str(tmp_path / "out" / "images/minio3_coldstart_4/image_0.jpg")]
    assert Path(records[4]["images"][0]).read_bytes() == jpeg(10)

    summary = prepare_coldstart(str(second), tmp_path / "single", SERIAL, progress=False)
    assert (summary.files, summary.rows_out) == (1, 3)
    assert output(tmp_path / "single")[0]["images"] == [str(tmp_path / "single/images/minio3_coldstart_0/image_0.jpg")]
    assert first.exists()


def test_bad_inputs_give_clear_errors(tmp_path, monkeypatch):
    table = pa.Table.from_pylist([row("a", [jpeg(0)])], schema=COLDSTART_SCHEMA).drop_columns(["image_names"])
    (tmp_path / "in").mkdir()
    pq.write_table(table, tmp_path / "in" / "x.parquet")
    with pytest.raises(ValueError, match=r"x\.parquet: missing column\(s\) \['image_names'\]"):
        prepare_coldstart(str(tmp_path / "in"), tmp_path / "out", SERIAL, progress=False)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="junk.parquet: not a readable parquet file"):
        prepare_coldstart(str(tmp_path / "junk.parquet"), tmp_path / "out", SERIAL, progress=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(RuntimeError, match="could not download hub dataset 'Mini-o3/no-such-set'"):
        prepare_coldstart("Mini-o3/no-such-set", tmp_path / "out", SERIAL, progress=False)


# -- re-runs and failure ---------------------------------------------------------------------


def test_rerun_reuses_finished_rows_and_recovers_from_interruption(tmp_path):
    big = jpeg(99, (120, 100))
    source = write_parquet(tmp_path / "in.parquet", [row(f"r{i}", [jpeg(i), big]) for i in range(5)], 2)
    out = tmp_path / "out"
    first = prepare_coldstart(str(source), out, PARALLEL, progress=False)
    assert (first.rows_out, first.rows_reused, first.images_written) == (5, 0, 10)
    text = (out / "Mini-o3-Coldstart.json").read_text()
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*.jpg")}

    second = prepare_coldstart(str(source), out, PARALLEL, progress=False)
    assert (second.rows_out, second.rows_reused, second.images_written, second.bytes_written) == (5, 5, 0, 0)
    assert second.image_bytes_out == first.image_bytes_out
    assert (out / "Mini-o3-Coldstart.json").read_text() == text

    # Interrupted before the unit checkpoints were written: rows are checked again, files reused.
    for marker in (out / ".coldstart_parts").rglob("*.json"):
        marker.unlink()
    (out / "images" / ".tmp-minio3_coldstart_3-12345").mkdir()
    third = prepare_coldstart(str(source), out, SERIAL, progress=False)
    assert (third.rows_out, third.rows_reused, third.images_written) == (5, 5, 0)
    assert {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*.jpg")} == mtimes
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"minio3_coldstart_{i}" for i in range(5)]
    assert (out / "Mini-o3-Coldstart.json").read_text() == text

    # Stricter checks re-check every row: the big image now fails and its rows' folders go.
    config = ColdstartPrepConfig(workers=1, max_pixels=100 * 100, max_bad_fraction=1.0)
    fourth = prepare_coldstart(str(source), out, config, progress=False)
    assert (fourth.rows_out, fourth.rows_rejected) == (0, 5)
    assert not list((out / "images").iterdir()) and output(out) == []


def test_too_many_bad_rows_fail_after_writing_the_report(tmp_path):
    rows = [row(f"r{i}", [jpeg(i)]) for i in range(3)] + [row("bad", [jpeg(9)], names=["../x.jpg"])]
    source = write_parquet(tmp_path / "in.parquet", rows)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"other": {"file_name": "o.json"}}))
    expected = r"1 of 4 rows \(25\.00%\) were rejected, above max_bad_fraction=0\.01"
    with pytest.raises(ColdstartPrepError, match=expected):
        prepare_coldstart(str(source), out, ColdstartPrepConfig(workers=1), progress=False)
    assert list(rejections(out)) == [3]
    assert json.loads((out / "summary.json").read_text())["error"].startswith("1 of 4 rows")
    assert not (out / "Mini-o3-Coldstart.json").exists()

    summary = prepare_coldstart(str(source), out, ColdstartPrepConfig(workers=1, max_bad_fraction=0.25), progress=False)
    assert (summary.rows_out, summary.error) == (3, None)
    info = json.loads((out / "dataset_info.json").read_text())
    assert info == {"other": {"file_name": "o.json"}, "minio3_coldstart": DATASET_INFO_ENTRY}
    with pytest.raises(ColdstartPrepError, match="no Mini-o3-Coldstart.json written"):
        prepare_coldstart(str(source), out, ColdstartPrepConfig(workers=1), progress=False)
    assert not (out / "Mini-o3-Coldstart.json").exists()  # the earlier run's file is not left behind


# -- synthetic generator input, relative paths -----------------------------------------------


@pytest.mark.slow
def test_synthetic_generator_parquet_prepares_identically_serial_and_parallel(tmp_path):
    from mini_o3.data.synthetic import COLDSTART_FILE, SynthConfig, generate

    manifest = generate(SynthConfig(width_range=(512, 768), height_range=(512, 768)), tmp_path / "synth", 3, 0, 0,
                        progress=False)
    source = tmp_path / "synth" / COLDSTART_FILE
    table = pq.read_table(source).to_pylist()
    serial = prepare_coldstart(str(source.parent.parent), tmp_path / "a", ColdstartPrepConfig(workers=1,
                               image_paths="relative"), progress=False)
    parallel = prepare_coldstart(str(source), tmp_path / "b", ColdstartPrepConfig(workers=2, batch_size=1,
                                 image_paths="relative"), progress=False)
    assert serial.rows_out == parallel.rows_out == manifest.coldstart.rows == len(table) > 0
    assert (tmp_path / "a/Mini-o3-Coldstart.json").read_bytes() == (tmp_path / "b/Mini-o3-Coldstart.json").read_bytes()
    for source_row, record in zip(table, output(tmp_path / "a"), strict=True):
        assert record["conversations"] == ast.literal_eval(source_row["conversations"])
        assert [sha((tmp_path / "a" / p).read_bytes()) for p in record["images"]] == [
            sha(i["bytes"]) for i in source_row["images"]]
        assert [p.rsplit("/", 1)[1] for p in record["images"]] == source_row["image_names"]


def test_relative_image_paths_make_the_folder_relocatable(tmp_path):
    source = write_parquet(tmp_path / "in.parquet", [row("r", [jpeg(1), jpeg(2)])])
    prepare_coldstart(str(source), tmp_path / "out", ColdstartPrepConfig(workers=1, image_paths="relative"),
                      progress=False)
    shutil.move(tmp_path / "out", tmp_path / "moved")
    [record] = output(tmp_path / "moved")
    assert record["images"] == ["images/minio3_coldstart_0/image_0.jpg", "images/minio3_coldstart_0/image_1.jpg"]
    assert [(tmp_path / "moved" / p).read_bytes() for p in record["images"]] == [jpeg(1), jpeg(2)]


# -- LLaMA-Factory ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("image_paths", ["absolute", "relative"])
def test_llamafactory_loads_the_output(tiny_dir, tmp_path, image_paths, monkeypatch):
    pytest.importorskip("llamafactory")
    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import DataArguments, ModelArguments
    from llamafactory.model import load_tokenizer
    from transformers import Seq2SeqTrainingArguments

    from mini_o3.data.synthetic import SynthConfig, generate

    generate(SynthConfig(width_range=(512, 768), height_range=(512, 768)), tmp_path / "synth", 2, 0, 1, progress=False)
    out = tmp_path / "out"
    summary = prepare_coldstart(str(tmp_path / "synth" / "coldstart"), out,
                                ColdstartPrepConfig(workers=1, image_paths=image_paths), progress=False)
    records = output(out)
    monkeypatch.chdir(tmp_path)  # relative paths must resolve through dataset_dir, not the cwd

    model_args = ModelArguments(model_name_or_path=str(tiny_dir), cache_dir=str(tmp_path / "cache"),
                                image_max_pixels=2_000_000)
    data_args = DataArguments(dataset="minio3_coldstart", dataset_dir=str(out), template="qwen2_vl",
                              cutoff_len=32768)
    training_args = Seq2SeqTrainingArguments(output_dir=str(tmp_path / "train"), report_to=[])
    tokenizer_module = load_tokenizer(model_args)
    processor = tokenizer_module["processor"]
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    dataset = get_dataset(template, model_args, data_args, training_args, "sft", **tokenizer_module)["train_dataset"]

    assert len(dataset) == summary.rows_out == len(records) > 0
    pad_id = tokenizer_module["tokenizer"].convert_tokens_to_ids("<|image_pad|>")
    merge = processor.image_processor.merge_size ** 2
    for example, record in zip(dataset, records, strict=True):
        images = [Image.open(out / p) for p in record["images"]]
        grids = processor.image_processor(images=images, return_tensors="pt")["image_grid_thw"]
        assert example["input_ids"].count(pad_id) == int(grids.prod(dim=1).sum()) // merge
        assert any(label != -100 for label in example["labels"])
