"""Host memory over a long GRPO run (issue 17: RSS must stay flat over ≥ 50 steps; Mini-o3 issue #23).

Runs the learning profile's GRPO (``LEARN_RL``) for ``--steps`` steps with the reference engine
(``mini-o3 stage rl --engine local``) from the SFT model of a finished ``benchmarks/learning.py``
seed folder, on that run's RL and held-out data, and records the RL process's host RSS per step
(``perf/host_rss_gb``), its growth (first → last, least-squares slope over each half), the sampled
reward and void ratio per step, and a two-panel plot of both.

Run: ``OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/rl_memory.py
--seed-dir runs/bench-learning/seed0 --steps 50 --out runs/rl50-kl
--out-json benchmarks/results/rl_memory.json --plot benchmarks/results/rl_memory.png``
(``--reuse`` summarises a finished ``--out`` without training). Not a test: figures for RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from learning import rl_step_rows, rss_per_step, run_root  # noqa: E402


def train(seed_dir: Path, steps: int, out: Path) -> float:
    """GRPO with the profile's overrides for ``steps`` steps (same warm-up length as the profile); seconds."""
    from mini_o3.kfp.local_run import LEARN_RL

    root = run_root(seed_dir)
    warmup = next(float(s.split("=", 1)[1]) for s in LEARN_RL if s.startswith("lr_warmup_steps_ratio="))
    profile_steps = next(int(s.split("=", 1)[1]) for s in LEARN_RL if s.startswith("total_training_steps="))
    sets = LEARN_RL + [f"total_training_steps={steps}", f"lr_warmup_steps_ratio={warmup * profile_steps / steps:.4f}"]
    cmd = [str(Path(sys.executable).parent / "mini-o3"), "stage", "rl", "--engine", "local",
           "--model-uri", str(root / "sft" / "model"), "--train-uri", str(root / "data" / "rl_data"),
           "--val-uri", str(root / "data" / "eval_data"), "--out-uri", str(out)]
    for s in sets:
        cmd += ["--set", s]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"})
    return time.perf_counter() - start


def summarise(out: Path) -> dict[str, Any]:
    """``learning.rss_per_step`` of the run's steps, plus the RSS slope over each half of it and the sampled
    reward and void ratio per step (from ``run/metrics.jsonl``)."""
    import numpy as np

    rows = rl_step_rows(out)
    if len(rows) < 4:
        raise SystemExit(f"{out / 'run' / 'metrics.jsonl'}: {len(rows)} steps with perf/host_rss_gb, need ≥ 4")
    steps, rss = np.array([[r["step"], r["perf/host_rss_gb"]] for r in rows], dtype=float).T
    half = len(rows) // 2
    slope = lambda a, b: round(float(np.polyfit(steps[a:b], rss[a:b], 1)[0]) * 1000, 2)  # noqa: E731
    return {**rss_per_step(rows), "slope_mb_per_step_halves": {"first": slope(0, half), "second": slope(half, len(rows))},
            "reward_per_step": [round(r.get("rollout/reward", float("nan")), 4) for r in rows],
            "void_ratio_per_step": [round(r.get("rollout/void_ratio", float("nan")), 4) for r in rows],
            "step_numbers": [int(r["step"]) for r in rows]}


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = summary["step_numbers"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    top.plot(x, summary["per_step_gb"], marker=".", color="tab:blue")
    top.set_ylabel("host RSS of the RL process (GB)")
    top.set_title(f"GRPO, {summary['steps']} steps: RSS {summary['first_gb']} → {summary['last_gb']} GB "
                  f"(slope {summary['slope_mb_per_step_halves']['second']} MB/step over the second half)", fontsize=9)
    top.grid(alpha=0.3)
    bottom.plot(x, summary["reward_per_step"], marker=".", label="sampled reward", color="tab:green")
    bottom.plot(x, summary["void_ratio_per_step"], marker=".", label="void ratio", color="tab:red")
    bottom.set_ylim(0, 1)
    bottom.set_xlabel("RL step")
    bottom.set_ylabel("share of rollouts")
    bottom.legend(loc="center right")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed-dir", type=Path, default=Path("runs/bench-learning/seed0"),
                        help="a finished benchmarks/learning.py seed folder (its SFT model and data)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path("runs/rl-memory"))
    parser.add_argument("--out-json", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--reuse", action="store_true", help="summarise a finished --out without training")
    args = parser.parse_args()
    wall = None if args.reuse else round(train(args.seed_dir, args.steps, args.out), 1)
    summary = {"date": time.strftime("%Y-%m-%d"), "seed_dir": str(args.seed_dir), "wall_s": wall, **summarise(args.out)}
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, list)}, indent=1))
    if args.out_json:
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(json.dumps(summary, indent=1) + "\n")
    if args.plot:
        plot(summary, args.plot)


if __name__ == "__main__":
    main()
