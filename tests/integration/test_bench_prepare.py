"""prepare_bench end to end on small fixtures built here in every source format (nothing is
downloaded): VisualProbe / DeepEyes (Mini-o3 layout), V* (jsonl and raw per-image JSONs),
HR-Bench (TSV and parquet, base64), MME-RealWorld (JSON + images, lmms-eval parquet), synthetic.
Hostile rows are rejected one by one, good rows kept, nothing written outside the output folder,
outputs byte-identical across runs and worker counts."""

from __future__ import annotations

import base64
import csv
import io
import json
import struct
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pydantic import ValidationError

from mini_o3.data.bench import (
    BENCH_SCHEMA, BENCHMARKS, BenchPrepConfig, prepare_bench, read_records, sample_meta, to_row,
)
from mini_o3.data.bench.vstar import shuffle_options
from mini_o3.data.schemas import read_meta_jsonl, read_rows
from mini_o3.data.synthetic import SynthConfig, generate
from mini_o3.task import score_answer, score_mme_realworld

MC_TAIL = "Answer with the option's letter from the given choices directly."
QUIET = BenchPrepConfig(workers=2)


# -- fixture builders ------------------------------------------------------------------------


def image_bytes(seed: int, fmt: str = "PNG", size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (seed * 37 % 256, seed * 91 % 256, 120)).save(buffer, format=fmt)
    return buffer.getvalue()


def huge_png_header(width: int = 50_000, height: int = 50_000) -> bytes:
    """A PNG whose IHDR claims width x height; no pixel data at all."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """tmp_path with a secret file next to the sources (must never be copied)."""
    write(tmp_path / "secret.png", image_bytes(99))
    return tmp_path


def visualprobe_source(world: Path, name="VisualProbe_Hard", split="val", ds="visual_probe_hard") -> Path:
    src = world / "src" / name
    for i in range(2):
        write(src / "data" / f"vp_{i}.jpg", image_bytes(i, "JPEG", (64, 48)))
    write(src / "data" / "huge.png", huge_png_header())
    write(src / "data" / "corrupt.jpg", b"\xff\xd8\xff\xe0 this is not a jpeg")
    (src / "data" / "escape.png").symlink_to(world / "secret.png")

    def row(doc_id, image, **extra):
        return {"images": [image], "doc_id": doc_id, "problem": f"<image>\nWhat is written on sign {doc_id}?",
                "solution": f"answer {doc_id}", "data_source": ds, **extra}

    rows = [
        row("vp_0", f"{name}/data/vp_0.jpg"),  # BASE_IMAGE_DIR-relative, as released
        row("vp_1", "data/vp_1.jpg"),  # dataset-relative
        row("up", "../../secret.png"),
        row("abs", "/etc/passwd"),
        {k: v for k, v in row("nosol", "data/vp_0.jpg").items() if k != "solution"},
        row("huge", "data/huge.png"),
        row("corrupt", "data/corrupt.jpg"),
        row("vp_0", "data/vp_1.jpg"),  # duplicate id
        row("gone", "data/missing.jpg"),
        row("link", "data/escape.png"),
        "not a row",
    ]
    write(src / f"{split}.json", rows)
    return src


def check_output(out: Path, split: str = "val") -> list:
    """Invariants of every prepared folder; returns the records."""
    assert pq.read_schema(out / f"{split}.parquet").equals(BENCH_SCHEMA, check_metadata=True)
    records = read_records(out / f"{split}.parquet")
    raw_rows = json.loads((out / f"{split}.json").read_text())
    assert all(sorted(r) == ["data_source", "doc_id", "images", "problem", "solution"] for r in raw_rows)
    assert read_rows(out / f"{split}.json") == [to_row(r) for r in records]
    referenced = set()
    for record in records:
        (image,) = record.images
        assert image.startswith(f"{out.name}/data/")
        assert (out.parent / image).is_file()
        referenced.add(image.split("/")[-1])
        assert record.problem.startswith("<image>\n")
        if record.answer_type == "mc":
            assert record.problem.endswith(MC_TAIL)
            assert score_answer(record.answer, record.answer, "mc", record.options) == 1.0
    assert {p.name for p in (out / "data").iterdir()} == referenced  # no orphan images
    summary = json.loads((out / "summary.json").read_text())
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert summary["rows_out"] == len(records) and summary["rejected"] == len(rejected)
    assert summary["rows_in"] == summary["rows_out"] + summary["rejected"] + summary["skipped"]
    assert summary["images"] == len(referenced)
    return records


def rejected_codes(out: Path) -> dict[str, str]:
    lines = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    return {line["where"]: line["code"] for line in lines}


# -- VisualProbe / DeepEyes ------------------------------------------------------------------


def test_visualprobe_keeps_good_rows_rejects_hostile_ones_and_writes_nothing_outside(world: Path):
    src = visualprobe_source(world)
    before = tree(world)
    out = world / "base" / "VisualProbe_Hard"
    summary = prepare_bench("visualprobe_hard", str(src), out, QUIET, progress=False)
    assert tree(world) == {**before, **{f"base/VisualProbe_Hard/{k}": v for k, v in tree(out).items()}}

    records = check_output(out)
    assert [r.id for r in records] == ["vp_0", "vp_1"]
    assert all(r.data_source == "visual_probe_hard" and r.answer_type == "free" and r.options == [] for r in records)
    assert records[0].problem == "<image>\nWhat is written on sign vp_0?" and records[0].answer == "answer vp_0"
    assert (out.parent / records[1].images[0]).read_bytes() == (src / "data" / "vp_1.jpg").read_bytes()
    assert records[0].meta["source_image"] == "VisualProbe_Hard/data/vp_0.jpg"
    assert rejected_codes(out) == {
        "val.json[2]": "unsafe_path", "val.json[3]": "unsafe_path", "val.json[4]": "missing_field",
        "val.json[5]": "image_too_large", "val.json[6]": "bad_image", "val.json[7]": "duplicate_id",
        "val.json[8]": "missing_image", "val.json[9]": "unsafe_path", "val.json[10]": "bad_field",
    }
    assert summary.rows_in == 11 and summary.rows_out == 2 and summary.by_data_source == {"visual_probe_hard": 2}
    assert summary.rejected_by_code["unsafe_path"] == 3
    assert (world / "secret.png").read_bytes() not in [p.read_bytes() for p in (out / "data").iterdir()]


def test_mini_o3_rows_with_extra_keys_are_kept_like_upstreams_pandas_loader(world: Path, caplog):
    """Upstream reads row files with ``pd.DataFrame(json.load(f))`` (Mini-o3/Mini-o3 @8654dbf,
    verl/utils/dataset/multimodal_dataset.py lines 190-196): extra keys are just more columns.
    They are kept in metadata["extra"], with one warning for the file, not rejected row by row."""
    src = world / "src" / "VisualProbe_Easy"
    write(src / "data" / "a.jpg", image_bytes(1, "JPEG"))
    base = {"images": ["VisualProbe_Easy/data/a.jpg"], "problem": "<image>\nWhat is on the sign?",
            "solution": "stop", "data_source": "visual_probe_easy"}
    rows = [{**base, "doc_id": "e0", "bbox": [1, 2, 3, 4], "difficulty": "easy"},
            {**base, "doc_id": "e1", "reward_model": {"style": "rule"}},
            {**base, "doc_id": "e2"}]
    write(src / "val.json", rows)
    out = world / "base" / "VisualProbe_Easy"
    with caplog.at_level("WARNING", logger="mini_o3.data.bench.visualprobe"):
        summary = prepare_bench("visualprobe_easy", str(src), out, QUIET, progress=False)
    records = check_output(out)
    assert summary.rejected == 0 and [r.id for r in records] == ["e0", "e1", "e2"]
    assert records[0].meta["extra"] == {"bbox": [1, 2, 3, 4], "difficulty": "easy"}
    assert records[1].meta["extra"] == {"reward_model": {"style": "rule"}} and "extra" not in records[2].meta
    warnings = [r.getMessage() for r in caplog.records if r.name == "mini_o3.data.bench.visualprobe"]
    assert len(warnings) == 1 and warnings[0].endswith("metadata['extra']: bbox, difficulty, reward_model")
    assert records[0].problem == base["problem"] and records[0].answer == "stop"


def test_deepeyes_train_uses_the_train_split(world: Path):
    src = visualprobe_source(world, "DeepEyes_train_4K", "train", "deepeyes_train")
    out = world / "base" / "DeepEyes_train_4K"
    summary = prepare_bench("deepeyes_train_4k", str(src), out, QUIET, progress=False)
    assert summary.split == "train" and not (out / "val.json").exists()
    records = check_output(out, "train")
    assert {r.data_source for r in records} == {"deepeyes_train"} and len(records) == 2


def test_same_inputs_give_identical_bytes_whatever_the_workers(world: Path):
    src = visualprobe_source(world)
    outs = []
    for i, workers in enumerate((1, 3)):
        out = world / f"run{i}" / "VisualProbe_Hard"
        prepare_bench("visualprobe_hard", str(src), out, BenchPrepConfig(workers=workers), progress=False)
        outs.append(out)
    first, second = (tree(o) for o in outs)
    summaries = [json.loads(f.pop("summary.json")) for f in (first, second)]
    assert first == second
    for s in summaries:
        s.pop("seconds"), s["config"].pop("workers")
    assert summaries[0] == summaries[1]


def test_out_dir_rules(world: Path):
    src = visualprobe_source(world)
    out = world / "base" / "VisualProbe_Hard"
    write(out / "keep.txt", "mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        prepare_bench("visualprobe_hard", str(src), out, QUIET, progress=False)
    write(out / "data" / "stale.jpg", b"old")
    prepare_bench("visualprobe_hard", str(src), out, BenchPrepConfig(overwrite=True), progress=False)
    assert (out / "keep.txt").read_text() == "mine" and not (out / "data" / "stale.jpg").exists()
    check_output(out)
    with pytest.raises(ValueError, match="overlaps the source"):
        prepare_bench("visualprobe_hard", str(src), src / "out", QUIET, progress=False)
    with pytest.raises(ValueError, match="unknown benchmark 'visualprobe'; expected one of visualprobe_train"):
        prepare_bench("visualprobe", str(src), world / "o", QUIET, progress=False)
    with pytest.raises(FileNotFoundError, match="neither an existing path nor a hub dataset id"):
        prepare_bench("visualprobe_hard", str(world / "nope" / "x" / "y"), world / "o", QUIET, progress=False)
    with pytest.raises(FileNotFoundError, match="no val.json"):
        prepare_bench("visualprobe_hard", str(src / "data"), world / "o", QUIET, progress=False)


def test_limit_keeps_the_first_good_rows_and_stores_only_their_images(world: Path):
    src = visualprobe_source(world)
    out = world / "base" / "VP"
    summary = prepare_bench("visualprobe_hard", str(src), out, BenchPrepConfig(limit=1), progress=False)
    assert [r.id for r in check_output(out)] == ["vp_0"] and summary.rows_in == 1


# -- V* --------------------------------------------------------------------------------------


def vstar_jsonl_source(world: Path) -> Path:
    src = world / "src" / "vstar"
    write(src / "direct_attributes" / "sa_1.jpg", image_bytes(1, "JPEG"))
    write(src / "relative_position" / "sa_2.jpg", image_bytes(2, "JPEG"))
    lines = [
        {"image": "direct_attributes/sa_1.jpg", "question_id": 0, "category": "direct_attributes", "label": "B",
         "text": "What is the color of the cup?\n(A) red\n(B) blue\n(C) green\n(D) white\n" + MC_TAIL},
        {"image": "relative_position/sa_2.jpg", "question_id": 1, "category": "relative_position", "label": "A",
         "text": "Is the dog on the left or right side of the cat? (A) left (B) right"},
        {"image": "direct_attributes/sa_1.jpg", "question_id": 2, "label": "E",
         "text": "What is it?\n(A) x\n(B) y"},
        {"image": "direct_attributes/sa_1.jpg", "question_id": 3, "label": "A"},
        {"image": "../../secret.png", "question_id": 4, "label": "A", "text": "Q?\n(A) x\n(B) y"},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\n{not json\n"
    write(src / "test_questions.jsonl", text)
    return src


def test_vstar_from_test_questions_jsonl(world: Path):
    out = world / "base" / "Vstar_Bench"
    summary = prepare_bench("vstar", str(vstar_jsonl_source(world)), out, QUIET, progress=False)
    records = check_output(out)
    assert [r.id for r in records] == ["vstar_0", "vstar_1"]
    attr, rel = records
    assert attr.data_source == "vstar_bench" and attr.category == "direct_attributes"
    assert attr.options == ["red", "blue", "green", "white"] and attr.answer == "B"
    assert attr.problem == (
        "<image>\nWhat is the color of the cup?\n(A) red\n(B) blue\n(C) green\n(D) white\n" + MC_TAIL
    )
    assert rel.options == ["left", "right"] and rel.answer == "A" and rel.category == "relative_position"
    assert rel.question == "Is the dog on the left or right side of the cat?"
    assert rejected_codes(out) == {
        "test_questions.jsonl:3": "bad_field", "test_questions.jsonl:4": "missing_field",
        "test_questions.jsonl:5": "unsafe_path", "test_questions.jsonl:6": "bad_field",
    }
    assert summary.by_category == {"direct_attributes": 1, "relative_position": 1}


def vstar_raw_source(world: Path, n: int = 6) -> Path:
    src = world / "src" / "vstar_raw"
    for i in range(n):
        folder = src / ("direct_attributes" if i % 2 == 0 else "relative_position")
        write(folder / f"sa_{i}.jpg", image_bytes(i, "JPEG"))
        options = [f"right{i}", f"wrong{i}a", f"wrong{i}b", f"wrong{i}c"] if i % 2 == 0 else ["left", "right"]
        write(folder / f"sa_{i}.json", {"target_object": [f"obj{i}"], "bbox": [[1, 2, 3, 4]],
                                        "question": f"Question {i}?", "options": options})
    write(src / "direct_attributes" / "orphan.json", {"question": "Q?", "options": ["a", "b"]})
    write(src / "direct_attributes" / "blank.json", {"question": "", "options": ["a", "b"]})
    write(src / "direct_attributes" / "blank.jpg", image_bytes(7, "JPEG"))
    write(src / "OCR" / "sa_9.json", {"question": "ignored folder", "options": ["a", "b"]})
    return src


def test_vstar_raw_folders_shuffle_deterministically_and_record_the_permutation(world: Path):
    src = vstar_raw_source(world)
    out = world / "base" / "Vstar_Bench"
    prepare_bench("vstar", str(src), out, BenchPrepConfig(seed=3), progress=False)
    records = check_output(out)
    assert len(records) == 6 and rejected_codes(out) == {
        "direct_attributes/blank.json": "missing_field", "direct_attributes/orphan.json": "missing_image",
    }
    for record in records:
        raw = json.loads((src / record.category / f"{record.id.split('_', 3)[-1]}.json").read_text())
        meta = record.meta
        assert meta["raw_options"] == raw["options"] and meta["bbox"] == raw["bbox"] and meta["seed"] == 3
        assert record.options == [raw["options"][i] for i in meta["permutation"]]
        assert record.options[ord(record.answer) - 65] == raw["options"][0]  # the right one stays right
        assert (record.options, meta["permutation"], record.answer) == tuple(
            shuffle_options(raw["options"], 3, record.id)
        )
    assert {r.answer for r in records if r.category == "direct_attributes"} != {"A"}  # not always first
    other = world / "base2" / "Vstar_Bench"
    prepare_bench("vstar", str(src), other, BenchPrepConfig(seed=4), progress=False)
    assert [r.options for r in read_records(other / "val.parquet")] != [r.options for r in records]


def test_vstar_source_without_questions_or_folders_is_refused(world: Path):
    write(world / "src" / "empty" / "readme.txt", "nothing here")
    with pytest.raises(FileNotFoundError, match="neither test_questions.jsonl nor the folders"):
        prepare_bench("vstar", str(world / "src" / "empty"), world / "o", QUIET, progress=False)


# -- HR-Bench --------------------------------------------------------------------------------

HR_COLUMNS = ["index", "question", "answer", "category", "A", "B", "C", "D", "cycle_category", "image"]


def hrbench_rows(refs: bool) -> list[dict]:
    """2 questions x 4 rotations (cycle-major), then hostile rows."""
    images = [b64(image_bytes(10, "JPEG", (80, 60))), b64(image_bytes(11, "PNG", (80, 60)))]
    questions = [("What is the number on the bus?", ["12", "15", "17", "21"], "single"),
                 ("Which shop is closer to the tower?", ["bakery", "bank", "cafe", "pharmacy"], "cross")]
    rows = []
    for cycle in range(4):
        for q, (text, options, category) in enumerate(questions):
            rotated = options[cycle:] + options[:cycle]
            index = cycle * 2 + q
            image = str(q) if refs and cycle > 0 else images[q]
            rows.append({"index": index, "question": text, "answer": "ABCD"[rotated.index(options[0])],
                         "category": category, **dict(zip("ABCD", rotated, strict=True)),
                         "cycle_category": f"cycle{cycle}", "image": image})
    base = {"question": "Q?", "category": "single", "A": "a", "B": "b", "C": "c", "D": "d", "cycle_category": "x"}
    rows += [
        {**base, "index": 100, "answer": "A", "image": "!!!" + "not base64 " * 10},  # corrupt base64
        {**base, "index": 101, "answer": "", "image": images[0]},  # missing answer
        {**base, "index": 102, "answer": "B", "image": "77"},  # refers to no row
        {**base, "index": 103, "answer": "C", "image": b64(huge_png_header())},  # over the pixel limit
        {**base, "index": 104, "question": "Other?", "answer": "D",  # shares row 103's image
         "image": "103" if refs else b64(huge_png_header())},
    ]
    return rows


def write_tsv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=HR_COLUMNS, delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


HR_REJECTS = {
    "[8]": "bad_image", "[9]": "missing_field", "[10]": "bad_image", "[11]": "image_too_large", "[12]": "image_too_large",
}


@pytest.mark.parametrize("fmt", ["tsv", "parquet"])
def test_hrbench_keeps_all_cycles_with_cycle_and_group(world: Path, fmt: str):
    src = world / "src" / "HR-Bench"
    if fmt == "tsv":
        write_tsv(src / "hr_bench_4k.tsv", hrbench_rows(refs=True))
        write_tsv(src / "hr_bench_8k.tsv", hrbench_rows(refs=True)[:1])
    else:
        write_parquet(src / "hr_bench_4k.parquet", hrbench_rows(refs=False))
    out = world / "base" / "HR-Bench_4K"
    summary = prepare_bench("hrbench_4k", str(src), out, QUIET, progress=False)
    records = check_output(out)
    assert len(records) == 8 and summary.images == 2
    assert rejected_codes(out) == {f"hr_bench_4k.{fmt}{k}": v for k, v in HR_REJECTS.items()}
    for i, record in enumerate(records):
        cycle, q = divmod(i, 2)
        assert record.id == f"hrbench_4k_{i}" and record.data_source == "hrbench_4k"
        assert record.meta["cycle_category"] == f"cycle{cycle}" and record.meta["group"] == q
        assert record.options[ord(record.answer) - 65] == ("12" if q == 0 else "bakery")
        assert record.images == records[q].images  # the 4 rotations share one stored image
    assert summary.by_category == {"cross": 4, "single": 4}


def test_hrbench_unique_keeps_the_first_cycle(world: Path):
    src = write_tsv(world / "src" / "hr_bench_8k.tsv", hrbench_rows(refs=True))
    out = world / "base" / "HR-Bench_8K"
    summary = prepare_bench("hrbench_8k", str(src), out, BenchPrepConfig(hrbench_rows="unique"), progress=False)
    records = check_output(out)
    assert [r.meta["cycle_category"] for r in records] == ["cycle0", "cycle0"]
    assert summary.skipped == 6 and summary.rejected == 5 and records[0].data_source == "hrbench_8k"


def test_hrbench_file_without_the_columns_is_refused(world: Path):
    src = write_parquet(world / "src" / "hr_bench_4k.parquet", [{"index": 0, "question": "q"}])
    with pytest.raises(ValueError, match=r"missing HR-Bench columns \['answer', 'A', 'B', 'image'\]"):
        prepare_bench("hrbench_4k", str(src), world / "o", QUIET, progress=False)


# -- MME-RealWorld ---------------------------------------------------------------------------


def mme_item(qid, image="remote_sensing/r1.png", text="How many planes are on the runway?", truth="C", **extra):
    return {"Question_id": qid, "Image": image, "Text": text, "Ground truth": truth,
            "Answer choices": ["(A) 1", "(B) 2", "(C) 3", "(D) 4", "(E) The image does not feature the planes."],
            "Task": "Perception", "Subtask": "Remote Sensing", "Category": "count", "Question Type": "Multiple Choice",
            **extra}


def mme_source(world: Path) -> Path:
    src = world / "src" / "MME-RealWorld"
    write(src / "remote_sensing" / "r1.png", image_bytes(20, "PNG", (120, 90)))
    write(src / "remote_sensing" / "huge.png", huge_png_header(20_000, 20_000))
    items = [
        mme_item("perception/remote_sensing/count/0001"),
        mme_item("zh_1", text="跑道上有几架飞机？"),
        mme_item("up", image="../../secret.png"),
        mme_item("abs", image="/etc/passwd"),
        {k: v for k, v in mme_item("nogt").items() if k != "Ground truth"},
        mme_item("noprefix", **{"Answer choices": ["1", "2", "3"]}),
        mme_item("badletter", truth="F"),
        mme_item("huge", image="remote_sensing/huge.png"),
    ]
    write(src / "MME_RealWorld.json", items)
    write(src / "MME_RealWorld_Lite.json", [mme_item("lite_1")])
    return src


def test_mme_realworld_json_english_by_default(world: Path):
    out = world / "base" / "MME-RealWorld"
    summary = prepare_bench("mme_realworld", str(mme_source(world)), out, QUIET, progress=False)
    (record,) = check_output(out)
    assert record.id == "mme_realworld_perception_remote_sensing_count_0001"
    assert record.data_source == "mme_realworld" and record.category == "Remote Sensing/count"
    assert record.options[:2] == ["1", "2"] and record.answer == "C"
    meta = record.meta
    assert meta["task"] == "Perception" and meta["question_type"] == "Multiple Choice" and meta["language"] == "en"
    assert score_mme_realworld("The best answer is (C)", record.answer, meta["choices"]) == 1.0
    assert score_mme_realworld("B", record.answer, meta["choices"]) == 0.0
    assert rejected_codes(out) == {
        "MME_RealWorld.json[2]": "unsafe_path", "MME_RealWorld.json[3]": "unsafe_path",
        "MME_RealWorld.json[4]": "missing_field", "MME_RealWorld.json[5]": "bad_field",
        "MME_RealWorld.json[6]": "bad_field", "MME_RealWorld.json[7]": "image_too_large",
    }
    assert summary.skipped == 1 and list(summary.skipped_by_reason) == ["language zh not in ['en']"]
    ids = [json.loads(line)["id"] for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert ids == [f"mme_realworld_{q}" for q in ("up", "abs", "nogt", "noprefix", "badletter", "huge")]


def test_mme_realworld_languages_and_lite_variant(world: Path):
    src = mme_source(world)
    out = world / "base" / "MME-RealWorld"
    prepare_bench("mme_realworld", str(src), out, BenchPrepConfig(languages=("en", "zh")), progress=False)
    records = check_output(out)
    assert [r.meta["language"] for r in records] == ["en", "zh"] and records[0].images == records[1].images
    lite = world / "base" / "MME-RealWorld-Lite"
    prepare_bench("mme_realworld", str(src), lite, BenchPrepConfig(mme_realworld_variant="lite"), progress=False)
    (record,) = check_output(lite)
    assert record.data_source == "mme_realworld_lite" and record.id == "mme_realworld_lite_lite_1"


def test_mme_realworld_lmms_eval_parquet(world: Path):
    good = {"index": 7, "question": "What is the speed limit?", "answer": "B",
            "category": "Perception/Autonomous_Driving", "l2-category": "traffic_sign",
            "bytes": b64(image_bytes(30, "JPEG")),
            "multi-choice options": ["(A) 30", "(B) 50", "(C) 70", "(D) 90", "(E) none"]}
    rows = [{**good, "index": 7 + i} for i in range(18)] + [{**good, "index": 99, "bytes": "%%%" * 40}]
    src = write_parquet(world / "src" / "lite" / "data" / "train-00000-of-00001.parquet", rows)
    out = world / "base" / "MME-RealWorld-Lite"
    prepare_bench("mme_realworld", str(src.parent.parent), out, BenchPrepConfig(mme_realworld_variant="lite"),
                  progress=False)
    records = check_output(out)
    assert len(records) == 18 and len({r.images[0] for r in records}) == 1
    record = records[0]
    assert record.id == "mme_realworld_lite_7" and record.data_source == "mme_realworld_lite"
    assert record.category == "Autonomous_Driving/traffic_sign" and record.options[1] == "50"
    assert record.meta["task"] == "Perception" and record.meta["choices"][1] == "(B) 50"
    assert rejected_codes(out) == {"train-00000-of-00001.parquet[18]": "bad_image"}  # row numbers span batches


def base64_item(index, image: str, question="How many planes are on the runway?", answer="C",
                category="Perception/Remote Sensing", options=None, **extra):
    """One item of the Base64 release's JSON shards (the fields the official
    evaluation/download_and_prepare_prompt.py and VLMEvalKit's MMERealWorld.load_data read)."""
    return {"index": index, "image": image, "question": question, "answer": answer, "category": category,
            "l2-category": "count", "multi-choice options": options or ["(A) 1", "(B) 2", "(C) 3", "(D) 4", "(E) none"],
            **extra}


CN_OPTIONS = ["（A）一", "（B）两", "（C）三", "（D）四", "（E）图中没有飞机"]


def base64_source(world: Path) -> Path:
    """The layout of HF yifanzhang114/MME-RealWorld-Base64: EN shards, CN shards, the Lite TSV."""
    src = world / "src" / "MME-RealWorld-Base64"
    images = [b64(image_bytes(40 + i, "PNG", (60, 40))) for i in range(4)]
    for shard, start in ((0, 0), (1, 2), (10, 4)):  # natural order: 0, 1, 10
        write(src / "MME-RealWorld" / f"MME_RealWorld_base64_{shard}.json",
              [base64_item(start + j, images[(start + j) % 4]) for j in range(2)])
    write(src / "MME-RealWorld-CN" / "MME_RealWorld_CN_base64_0.json", [
        base64_item(0, images[0], question="跑道上有几架飞机？", options=CN_OPTIONS),
        base64_item(1, images[1], question="图中的车是什么颜色？", answer="A", category="Reasoning/Monitoring",
                    options=["（A）红", "（B）蓝", "（C）绿", "（D）白", "（E）无"]),
    ])
    write(src / "dataset_info.json", {"not": "an item file"})
    lite_rows = [
        {"index": 100, "image": images[0], "question": "Lite Q1?", "answer": "B", "category": "Perception/Monitoring",
         "l2-category": "Vehicle/counting", "multi-choice options": str(["(A) 1", "(B) 2", "(C) 3", "(D) 4", "(E) 5"])},
        {"index": 101, "image": "100", "question": "Lite Q2 (same image)?", "answer": "A",
         "category": "Reasoning/Diagram and Table", "l2-category": "diagram",
         "multi-choice options": "The choices are listed below:\n(A) x\n(B) y\n(C) z\n(D) w\n(E) v"},
        {"index": 102, "image": images[1], "question": "Broken?", "answer": "A", "category": "Perception/Monitoring",
         "l2-category": "x", "multi-choice options": "[unclosed"},
    ]
    path = src / "mme_realworld_lite.tsv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(lite_rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(lite_rows)
    return src


def test_mme_realworld_base64_shards_stream_in_natural_order_and_skip_cn(world: Path):
    src = base64_source(world)
    out = world / "base" / "MME-RealWorld"
    summary = prepare_bench("mme_realworld", str(src), out, QUIET, progress=False)
    records = check_output(out)
    assert [r.id for r in records] == [f"mme_realworld_{i}" for i in range(6)]
    assert summary.rejected == 0 and summary.skipped_by_reason == {"language zh not in ['en']": 2}
    assert summary.rows_in == 8 and summary.images == 4
    record = records[0]
    assert record.category == "Remote Sensing/count" and record.options == ["1", "2", "3", "4", "none"]
    assert record.meta["task"] == "Perception" and record.meta["subtask"] == "Remote Sensing"
    assert (out.parent / record.images[0]).read_bytes() == image_bytes(40, "PNG", (60, 40))
    assert score_mme_realworld("The best answer is (C)", record.answer, record.meta["choices"]) == 1.0


def test_mme_realworld_cn_full_width_options_are_kept_when_asked(world: Path):
    src = base64_source(world)
    out = world / "base" / "MME-RealWorld-All"
    summary = prepare_bench("mme_realworld", str(src), out, BenchPrepConfig(languages=("en", "zh")), progress=False)
    records = check_output(out)
    assert summary.rejected == 0 and summary.skipped == 0 and len(records) == 8
    zh = [r for r in records if r.meta["language"] == "zh"]
    assert [r.id for r in zh] == ["mme_realworld_zh_0", "mme_realworld_zh_1"]  # no clash with EN index 0, 1
    assert zh[0].options == ["一", "两", "三", "四", "图中没有飞机"] and zh[0].meta["choices"] == CN_OPTIONS
    assert zh[1].meta["task"] == "Reasoning" and zh[1].answer == "A"
    assert score_mme_realworld("C", zh[0].answer, zh[0].meta["choices"]) == 1.0
    only_zh = world / "base" / "MME-RealWorld-CN"
    summary = prepare_bench("mme_realworld", str(src / "MME-RealWorld-CN"), only_zh,
                            BenchPrepConfig(languages=("zh",)), progress=False)
    assert summary.rows_out == 2 and summary.rejected == 0


def test_mme_realworld_lite_tsv(world: Path):
    src = base64_source(world)
    out = world / "base" / "MME-RealWorld-Lite"
    summary = prepare_bench("mme_realworld", str(src), out, BenchPrepConfig(mme_realworld_variant="lite"),
                            progress=False)
    records = check_output(out)
    assert [r.id for r in records] == ["mme_realworld_lite_100", "mme_realworld_lite_101"]
    first, second = records
    assert first.data_source == "mme_realworld_lite" and first.category == "Monitoring/Vehicle/counting"
    assert first.options == ["1", "2", "3", "4", "5"] and first.answer == "B"
    assert second.options == ["x", "y", "z", "w", "v"] and second.meta["task"] == "Reasoning"
    assert second.images == first.images  # "100": VLMEvalKit's reference to row 100's image
    assert rejected_codes(out) == {"mme_realworld_lite.tsv[2]": "bad_field"} and summary.images == 1


def test_mme_realworld_bad_shard_is_refused_naming_it(world: Path):
    src = world / "src" / "MME-RealWorld"
    write(src / "MME_RealWorld_base64_0.json", '{"index": 0}')
    with pytest.raises(ValueError, match=r"MME_RealWorld_base64_0.json: expected a JSON list of rows"):
        prepare_bench("mme_realworld", str(src), world / "o", QUIET, progress=False)


@pytest.mark.slow
def test_mme_realworld_shard_converts_with_memory_far_below_its_size(world: Path):
    """A 26 MB Base64 shard (1,000 items, 26 KB base64 images): prepare_bench's traced peak (after
    a warm-up run, so lazy imports are not counted) stays under a third of the file: the shard is
    streamed and images are decoded a chunk of rows at a time; what grows with the item count is
    only the records (~2 KB each), held until the parquet is written. (Real items carry ~1 MB
    images, so the ratio there is far smaller; test_bench_jsonstream bounds the reader itself.)"""
    import random
    import tracemalloc

    rng = random.Random(0)
    noise = Image.frombytes("RGB", (80, 80), rng.randbytes(80 * 80 * 3))
    src = world / "src" / "MME-RealWorld"
    path = src / "MME-RealWorld" / "MME_RealWorld_base64_0.json"
    path.parent.mkdir(parents=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("[")
        for i in range(1000):
            noise.putpixel((i % 80, i // 80), (i % 256, 0, 0))
            buffer = io.BytesIO()
            noise.save(buffer, format="BMP")
            handle.write(("," if i else "") + json.dumps(base64_item(i, b64(buffer.getvalue()))))
        handle.write("]")
    size = path.stat().st_size
    assert size > 25_000_000, size
    warm = write(world / "src" / "warm" / "MME_RealWorld_base64_0.json", [base64_item(0, b64(image_bytes(1)))])
    prepare_bench("mme_realworld", str(warm.parent), world / "base" / "warm", QUIET, progress=False)  # lazy imports
    tracemalloc.start()
    try:
        summary = prepare_bench("mme_realworld", str(src), world / "base" / "MME", QUIET, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.rows_out == 1000 and summary.images == 1000
    assert peak < size / 3, (peak, size)


# -- synthetic -------------------------------------------------------------------------------


def test_synthetic_set_is_re_emitted_through_the_same_writer(world: Path):
    gen = world / "gen" / "Synth"
    config = SynthConfig(width_range=(400, 500), height_range=(300, 400), coldstart_rollouts=0)
    generate(config, gen, n_train=2, n_test=3, seed=2, progress=False)
    for split in ("val", "train"):
        out = world / "base" / f"Synth_{split}"
        prepare_bench("synthetic", str(gen), out, BenchPrepConfig(split=split), progress=False)
        records = check_output(out, split)
        originals = read_records(gen / f"{split}.parquet")
        assert [r.model_copy(update={"images": o.images}) for r, o in zip(records, originals, strict=True)] == originals
        metas = read_meta_jsonl(gen / f"{split}_meta.jsonl")
        rebuilt = [sample_meta(r).model_copy(update={"image": m.image}) for r, m in zip(records, metas, strict=True)]
        assert rebuilt == metas
        for record, meta in zip(records, metas, strict=True):
            assert (out.parent / record.images[0]).read_bytes() == (gen.parent / meta.image).read_bytes()


def test_synthetic_folder_without_a_split_is_re_emitted_whole(world: Path):
    """`prepare bench --name synthetic` (no split set) writes train and val, so the result is an RL
    train set and a benchmark at once (README: `rl --train data/Synth --val data/Synth`)."""
    gen = world / "gen" / "SynthWhole"
    generate(SynthConfig(width_range=(300, 320), height_range=(300, 320), coldstart_rollouts=0), gen,
             n_train=2, n_test=3, seed=4, progress=False)
    out = world / "base" / "SynthWhole"
    summary = prepare_bench("synthetic", str(gen), out, progress=False)
    assert summary.split == "train,val" and summary.rows_out == 5 and summary.rejected == 0
    referenced = set()
    for split, n in (("train", 2), ("val", 3)):
        records = read_records(out / f"{split}.parquet")
        assert [r.id for r in records] == [o.id for o in read_records(gen / f"{split}.parquet")] and len(records) == n
        assert read_rows(out / f"{split}.json") == [to_row(r) for r in records]
        assert all((out.parent / r.images[0]).is_file() for r in records)
        referenced |= {r.images[0].split("/")[-1] for r in records}
    assert {p.name for p in (out / "data").iterdir()} == referenced  # no orphan images
    assert {"train.parquet", "train.json", "val.parquet", "val.json"} <= set(summary.files)
    only_val = world / "base" / "SynthVal"
    prepare_bench("synthetic", str(gen), only_val, BenchPrepConfig(split="val"), progress=False)
    assert (only_val / "val.parquet").is_file() and not (only_val / "train.parquet").exists()


def test_registry_and_config_validation():
    assert set(BENCHMARKS) == {
        "visualprobe_train", "visualprobe_easy", "visualprobe_medium", "visualprobe_hard", "deepeyes_train_4k",
        "vstar", "hrbench_4k", "hrbench_8k", "mme_realworld", "synthetic",
    }
    assert {n: s.split for n, s in BENCHMARKS.items() if s.split == "train"} == {
        "visualprobe_train": "train", "deepeyes_train_4k": "train"
    }
    assert BENCHMARKS["vstar"].data_sources == ("vstar_bench",)
    assert BENCHMARKS["mme_realworld"].data_sources == ("mme_realworld", "mme_realworld_lite")
    for field, value in [("workers", 0), ("hrbench_rows", "some"), ("languages", ("fr",)), ("limit", 0), ("nope", 1)]:
        with pytest.raises(ValidationError, match=field):
            BenchPrepConfig.model_validate({field: value})
