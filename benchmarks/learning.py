"""Does the recipe learn? The learning profile end to end for several seeds, with the no-zoom baseline.

Per seed: ``mini-o3 run --seed S`` (what ``make demo`` runs: synthetic grid data → cold-start SFT →
GRPO → Avg@k of base, SFT and RL on the same held-out questions → report), timed, with the peak
resident memory of the whole process tree sampled; then the **no-zoom baseline**: the same
questions' cold-start rows written by the ``no_zoom`` oracle (answer from the first view), the same
tiny model, SFT settings and budget, evaluated with the same settings on the same held-out split.
Then the learning block (``evaluate.learning.learning_summary``) of base / SFT / RL / no-zoom with
paired bootstrap CIs over questions, and RSS per RL step (``perf/host_rss_gb``: growth over the run).

``--rl-steps N`` runs GRPO longer (the memory-growth check of issue 17 wants ≥ 50 steps).
``--reuse-demo`` keeps a seed's finished demo (``demo.json``) and redoes only the baseline and summary.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/learning.py --seeds 0 1 2
[--out-json benchmarks/results/learning.json]``. Not a test: it records figures for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).parent))
from bench_embedded_run import tree_rss  # noqa: E402


def run_with_peak(cmd: list[str], env: dict[str, str], log: Path, interval: float = 0.5) -> tuple[float, float]:
    """Run ``cmd`` (output to ``log``); (wall seconds, peak process-tree RSS in GB)."""
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
        watched, peak = psutil.Process(proc.pid), 0
        while proc.poll() is None:
            try:
                peak = max(peak, tree_rss(watched))
            except psutil.NoSuchProcess:
                break
            time.sleep(interval)
    if proc.wait() != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - start, peak / 1e9


def run_root(out: Path) -> Path:
    roots = [p for p in (out / "artifacts").iterdir() if p.is_dir()]
    if len(roots) != 1:
        raise SystemExit(f"expected one run under {out / 'artifacts'}, found {roots}")
    return roots[0]


def no_zoom_baseline(seed: int, root: Path, work: Path) -> tuple[Path, float]:
    """Cold-start rows of the same questions by the no-zoom oracle → SFT (same settings) → eval on
    the run's held-out split (same settings); returns (eval folder, seconds)."""
    from mini_o3.kfp.local_run import EmbeddedConfig, embedded_params
    from mini_o3.stages import eval_stage, prepare_coldstart_stage, sft_stage
    from mini_o3.stages.requests import EvalRequest, SFTRequest

    start = time.perf_counter()
    params = embedded_params(EmbeddedConfig(out=work, seed=seed), root.parent.parent / "tiny-model-learn")
    synthetic = [s for s in params["p1_data_synthetic"] if not s.startswith("config.coldstart_strategies=")]
    synthetic.append("config.coldstart_strategies=[no_zoom]")
    data = prepare_coldstart_stage("synthetic", str(work / "coldstart"), synthetic=synthetic,
                                   overrides=params["p1_data_coldstart_overrides"], progress=False)
    sft = sft_stage(SFTRequest(data_uri=data.out_uri, model=params["p2_sft_base_model"], out_uri=str(work / "sft"),
                               overrides=params["p2_sft_overrides"]), progress=False)
    ev = eval_stage(EvalRequest(model_uri=sft.outputs["model"], bench_uris=[str(root / "data" / "eval_data")],
                                out_uri=str(work / "eval"), k=params["p4_eval_k"], backend="local",
                                overrides=params["p4_eval_overrides"], judge=False), progress=False)
    return Path(ev.out_uri), time.perf_counter() - start


def rl_step_rows(rl_dir: Path) -> list[dict[str, Any]]:
    """The training-step rows (those with ``perf/host_rss_gb``) of an RL stage folder's ``run/metrics.jsonl``."""
    rows = [json.loads(line) for line in (rl_dir / "run" / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if "perf/host_rss_gb" in r]


def rss_per_step(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """RSS per RL step (``perf/host_rss_gb`` of ``rl_step_rows``) and its growth: last minus first, and
    per step by least squares."""
    points = [(r["step"], r["perf/host_rss_gb"]) for r in rows]
    if len(points) < 2:
        return {"steps": len(points)}
    import numpy as np

    steps, rss = np.array(points, dtype=float).T
    slope = float(np.polyfit(steps, rss, 1)[0])
    return {"steps": len(points), "first_gb": round(float(rss[0]), 3), "last_gb": round(float(rss[-1]), 3),
            "max_gb": round(float(rss.max()), 3), "growth_gb": round(float(rss[-1] - rss[0]), 3),
            "slope_mb_per_step": round(slope * 1000, 2), "per_step_gb": [round(float(v), 3) for v in rss]}


def one_seed(seed: int, work: Path, rl_steps: int | None, no_zoom: bool, reuse_demo: bool = False) -> dict[str, Any]:
    from mini_o3.evaluate.learning import learning_summary

    out = work / f"seed{seed}"
    cli = shutil.which("mini-o3") or str(Path(sys.executable).with_name("mini-o3"))
    cmd = [cli, "run", "--out", str(out), "--seed", str(seed)]
    if rl_steps:
        cmd += ["--param", f"rl_overrides=[total_training_steps={rl_steps}]"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    demo = out / "demo.json"  # wall and peak of the demo, kept so --reuse-demo can redo only what follows
    if reuse_demo and demo.exists():
        wall, peak = (json.loads(demo.read_text())[k] for k in ("wall_s", "peak_tree_rss_gb"))
        print(f"seed {seed}: reusing the finished demo in {out}", flush=True)
    else:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        print(f"seed {seed}: {' '.join(cmd[1:])}", flush=True)
        wall, peak = run_with_peak(cmd, env, out / "run.log")
        demo.write_text(json.dumps({"wall_s": wall, "peak_tree_rss_gb": peak}) + "\n")
    root = run_root(out)
    evals = {"base": root / "eval_base", "sft": root / "eval_sft", "rl": root / "eval"}
    result: dict[str, Any] = {"seed": seed, "command": " ".join(["mini-o3", *cmd[1:]]), "demo_wall_s": round(wall, 1),
                              "demo_peak_tree_rss_gb": round(peak, 3) if peak is not None else None}
    if no_zoom:
        print(f"seed {seed}: no-zoom baseline", flush=True)
        evals["no_zoom"], seconds = no_zoom_baseline(seed, root, out / "no_zoom")
        result["no_zoom_wall_s"] = round(seconds, 1)
    learning = learning_summary({k: str(v) for k, v in evals.items()}, seed=seed)
    result["learning"] = learning
    result["rl_rss"] = rss_per_step(rl_step_rows(root / "rl"))
    result["sft_metrics"] = json.loads((root / "sft" / "run" / "stage.json").read_text()).get("metrics", {})
    print(json.dumps({k: v for k, v in result.items() if k != "rl_rss"}, indent=1)[:3000], flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--work", type=Path, default=Path("runs/bench-learning"), help="run folders (kept)")
    parser.add_argument("--rl-steps", type=int, default=None, help="GRPO steps (default: the profile's)")
    parser.add_argument("--no-zoom", action=argparse.BooleanOptionalAction, default=True,
                        help="also train and evaluate the no-zoom baseline")
    parser.add_argument("--out-json", type=Path, default=None)
    parser.add_argument("--reuse-demo", action="store_true",
                        help="keep a seed's finished demo (its demo.json) and redo only the no-zoom baseline and summary")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    seeds = []
    for seed in args.seeds:
        seeds.append(one_seed(seed, args.work.resolve(), args.rl_steps, args.no_zoom, args.reuse_demo))
        if args.out_json:  # after every seed: a stopped run keeps what finished
            args.out_json.parent.mkdir(parents=True, exist_ok=True)
            args.out_json.write_text(json.dumps(summary(seeds, args), indent=2) + "\n")
    print(json.dumps(summary(seeds, args), indent=2)[:4000])


def summary(seeds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    return {"date": time.strftime("%Y-%m-%d"), "machine": platform.machine(), "cpus": psutil.cpu_count(),
            "python": platform.python_version(), "rl_steps": args.rl_steps, "seeds": seeds,
            "peak_single_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6, 3)}


if __name__ == "__main__":
    main()
