"""Foundation benchmarks: task-kit hot paths and synthetic data generation on this machine.

Run: ``.venv/bin/python benchmarks/bench_foundation.py [--out benchmarks/results/foundation.json]``.
Not a test: it records figures for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from PIL import Image

from mini_o3.data.schemas import read_meta_jsonl, read_rows
from mini_o3.data.synthetic import STRATEGIES, OraclePolicy, SynthConfig, generate
from mini_o3.task import EVAL_LIMITS, EpisodeSample, crop, parse_grounding, resize_initial, resize_observation, run_episode

CALL = '<think>zoom</think>\n<grounding>{"bbox_2d": [0.412, 0.233, 0.47, 0.301], "source": "original_image"}</grounding>'


def per_call(fn: Callable[[], object], repeat: int) -> dict:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_ms": 1e3 * statistics.median(times), "p90_ms": 1e3 * sorted(times)[int(0.9 * len(times)) - 1], "n": repeat}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/foundation.json"))
    parser.add_argument("--n", type=int, default=12, help="synthetic items per split")
    args = parser.parse_args()

    raw = Image.effect_noise((4000, 3000), 40).convert("RGB")
    call = parse_grounding(CALL)
    results = {
        "machine": f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}".strip(),
        "parse_strict": per_call(lambda: parse_grounding(CALL, "strict"), 2000),
        "parse_lenient": per_call(lambda: parse_grounding(CALL, "lenient"), 2000),
        "crop_4000x3000": per_call(lambda: crop(call, [raw], [raw.size]), 200),
        "resize_initial_4000x3000": per_call(lambda: resize_initial(raw, 40_000, 2_000_000), 10),
        "resize_observation_100x80_upscale": per_call(lambda: resize_observation(raw.crop((0, 0, 100, 80)), 40_000, 2_000_000), 200),
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "synth"
        start = time.perf_counter()
        manifest = generate(SynthConfig(), out, n_train=args.n, n_test=args.n, seed=0, overwrite=True, progress=False)
        elapsed = time.perf_counter() - start
        files = list((out / "data").glob("*.png"))
        results["synth_default_config"] = {
            "items": 2 * args.n,
            "coldstart_rows": manifest.coldstart.rows,
            "seconds_per_item_incl_coldstart": elapsed / (2 * args.n),
            "mean_png_bytes": sum(f.stat().st_size for f in files) / len(files),
            "mean_megapixels": statistics.mean(Image.open(f).size[0] * Image.open(f).size[1] / 1e6 for f in files),
        }
        rows, metas = read_rows(out / "val.json"), read_meta_jsonl(out / "val_meta.jsonl")
        start = time.perf_counter()
        turns = []
        for i, (row, meta) in enumerate(zip(rows, metas)):
            traj = run_episode(OraclePolicy(meta, STRATEGIES[i % len(STRATEGIES)]), EpisodeSample(row.problem, out.parent / row.images[0], row.doc_id), EVAL_LIMITS)
            turns.append(traj.num_turns)
        results["oracle_episode"] = {
            "seconds_per_episode": (time.perf_counter() - start) / len(rows),
            "mean_turns": statistics.mean(turns),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
