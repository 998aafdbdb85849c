"""The embedded run (``mini-o3 run``, what ``make demo`` runs): wall time and peak memory of the
whole train pipeline under kfp.local on the CPU. Targets on 2 cores: <= 10 minutes, <= 6 GB.

Memory: ``peak_tree_rss_gb`` samples every ``--interval`` seconds the resident set of the
``mini-o3 run`` process plus all its descendants (psutil) and keeps the largest sum; that is the
figure the target is about (kfp.local runs each task as a child process, several alive at once:
the orchestrator, the task's executor, LLaMA-Factory's trainer). ``peak_single_rss_gb`` is
``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the largest single process. Sampling can miss a spike
shorter than the interval.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_embedded_run.py [--out-json benchmarks/results/embedded_run.json]``.
Not a test: it records figures for benchmarks/RESULTS.md.
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
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import psutil

TARGET_S = 600.0
TARGET_GB = 6.0


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out-json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--interval", type=float, default=0.2, help="RSS sampling period in seconds")
    parser.add_argument("--keep", type=Path, default=None, help="run folder to keep (default: a temporary one)")
    args = parser.parse_args()
    cli = shutil.which("mini-o3") or str(Path(sys.executable).with_name("mini-o3"))
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-embedded-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.Popen([cli, "run", "--out", str(work)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    watched = psutil.Process(proc.pid)
    peak, peak_at, task_peaks = 0, 0.0, defaultdict(int)
    lines: list[str] = []
    current = ["start"]  # the kfp.local task running now (from its log line)

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "Executing task" in line and "'" in line:
                current[0] = line.split("'")[1].replace("\x1b[96m", "").replace("\x1b[0m", "")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    while proc.poll() is None:
        try:
            rss = tree_rss(watched)
        except psutil.NoSuchProcess:
            break
        task_peaks[current[0]] = max(task_peaks[current[0]], rss)
        if rss > peak:
            peak, peak_at = rss, time.perf_counter() - start
        time.sleep(args.interval)
    proc.wait()
    reader.join(timeout=30)
    wall = time.perf_counter() - start
    single = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    if proc.returncode != 0:
        sys.stderr.write("".join(lines[-60:]))
        raise SystemExit(f"mini-o3 run failed with exit code {proc.returncode}")
    result = {
        "command": "mini-o3 run --out <tmp>",
        "machine": platform.machine(),
        "cpus": psutil.cpu_count(),
        "python": platform.python_version(),
        "load_average_before": [round(x, 2) for x in load_before],
        "wall_s": round(wall, 1),
        "peak_tree_rss_gb": round(peak / 1e9, 3),
        "peak_tree_rss_at_s": round(peak_at, 1),
        "peak_single_rss_gb": round(single / 1e9, 3),
        "peak_tree_rss_gb_by_task": {k: round(v / 1e9, 3) for k, v in task_peaks.items()},
        "rss_sampling_interval_s": args.interval,
        "target_wall_s": TARGET_S,
        "target_rss_gb": TARGET_GB,
        "meets_targets": wall <= TARGET_S and peak / 1e9 <= TARGET_GB,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out_json:
        args.out_json.parent.mkdir(parents=True, exist_ok=True)
        args.out_json.write_text(text + "\n")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
