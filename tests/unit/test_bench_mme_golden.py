"""The MME-RealWorld converter reads the Base64 JSON shards the way upstream loaders do.

Golden facts (tests/data/golden_mme_realworld/convert.json, 150 items, EN and CN shards):
VLMEvalKit's ``MMERealWorld.load_data.generate_tsv`` (open-compass/VLMEvalKit @e8e78f0,
vlmeval/dataset/image_mcq.py) run on the shards gives the option texts (``choice[4:]``), answer,
question and category columns; lmms-eval's ``mme_realworld_process_results`` and
``get_correct_answer`` (EvolvingLMMs-Lab/lmms-eval @75571cf, lmms_eval/tasks/mme_realworld/utils.py)
give Task (Perception | Reasoning), subtask, category and the answer's text. Two deliberate
differences from lmms-eval's answer text (used only by its exact-match variant): it maps every
full-width bracket of the option to ASCII and its ``option.split(") ")[1]`` cuts a text that itself
holds ") " ("(B) blue (dark) car" → "blue (dark"); we keep the text as written, as VLMEvalKit does."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from PIL import Image

from mini_o3.data.bench import BenchPrepConfig, prepare_bench, read_records

GOLDEN = json.loads((Path(__file__).parents[1] / "data" / "golden_mme_realworld" / "convert.json").read_text())


def image_b64(seed: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (seed % 256, 3 * seed % 256, 7)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def snapshot(root: Path) -> Path:
    for name, items in GOLDEN["shards"].items():
        path = root / "MME-RealWorld-Base64" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        rows = [{k: v for k, v in item.items() if k != "image_seed"} | {"image": image_b64(item["image_seed"])}
                for item in items]
        path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return root / "MME-RealWorld-Base64"


def test_records_match_vlmevalkit_and_lmms_eval_readings(tmp_path: Path):
    src = snapshot(tmp_path / "src")
    out = tmp_path / "base" / "MME"
    summary = prepare_bench("mme_realworld", str(src), out, BenchPrepConfig(languages=("en", "zh")), progress=False)
    assert summary.rejected == 0 and summary.rows_out == len(GOLDEN["cases"]) == 150
    records = {r.id: r for r in read_records(out / "val.parquet")}
    cut = 0
    for case in GOLDEN["cases"]:
        zh = "-CN/" in case["file"]
        record = records[f"mme_realworld_{'zh_' if zh else ''}{case['index']}"]
        tsv, lmms = case["vlmevalkit_tsv"], case["lmms_eval"]
        assert record.options == [tsv[letter] for letter in "ABCDE"]
        assert record.answer == tsv["answer"] and record.question == tsv["question"]
        meta = record.meta
        assert (meta["task"], meta["subtask"], meta["category"]) == (
            lmms["category"], lmms["sub_category"], lmms["task_category"])
        assert meta["language"] == ("zh" if zh else "en")
        answer_text = record.options[ord(record.answer) - 65].replace("（", "(").replace("）", ")")
        if ") " in answer_text:  # lmms-eval's split(") ")[1] cuts such a text; we keep it whole
            assert answer_text.startswith(lmms["correct_answer"]) and answer_text != lmms["correct_answer"]
            cut += 1
        else:
            assert answer_text == lmms["correct_answer"]
    assert cut > 0 and sum("-CN/" in c["file"] for c in GOLDEN["cases"]) == 50


def test_default_languages_skip_the_cn_shard_and_reject_nothing(tmp_path: Path):
    src = snapshot(tmp_path / "src")
    summary = prepare_bench("mme_realworld", str(src), tmp_path / "base" / "MME", BenchPrepConfig(), progress=False)
    assert summary.rows_out == 100 and summary.rejected == 0
    assert summary.skipped_by_reason == {"language zh not in ['en']": 50}
