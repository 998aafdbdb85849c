"""Evaluation harness overhead: turns/s of ``run_episode`` + ``OpenAIChatPolicy`` against the
zero-latency scripted server, versus the raw request rate (httpx, same threads) replaying the
exact request bodies the harness sent. Target: harness ≥ 50% of raw. The server runs in its own
process so it does not compete with the client for the GIL; it records nothing there, so the
bodies are captured client-side (an httpx event hook) for the raw replay.

Run: ``HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_eval_harness.py [--episodes 16] [--out F]``.
Not a test: it records figures for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fixtures.scripted_server import ScriptedServer, synthetic_items

from mini_o3.rollout.openai_policy import OpenAIChatPolicy, OpenAIPolicyConfig
from mini_o3.task import EVAL_LIMITS, run_episode


def _serve(items: dict, conn) -> None:  # child process
    with ScriptedServer(items=items, lifetime_s=3600) as server:
        conn.send(server.base_url)
        conn.recv()  # until the parent says stop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--turns", type=int, default=4, help="turns per episode (endless tool calls)")
    parser.add_argument("--width", type=int, default=1600)
    parser.add_argument("--height", type=int, default=1000)
    parser.add_argument("--png-level", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    pairs = synthetic_items(args.episodes, seed=100, size=(args.width, args.height))
    limits = EVAL_LIMITS.with_(max_turns=args.turns)
    parent, child = mp.Pipe()
    proc = mp.get_context("fork").Process(target=_serve, args=({i.question: i for _, i in pairs}, child), daemon=True)
    proc.start()
    base_url = parent.recv()
    try:
        config = OpenAIPolicyConfig(base_url=base_url, model="endless", concurrency=args.threads,
                                    png_compress_level=args.png_level)
        with OpenAIChatPolicy(config) as policy:
            run_episode(policy.for_episode("warm", 0), pairs[0][0], limits)  # warm-up (connections, imports)
            sent: list[bytes] = []
            policy.client._client.event_hooks["request"].append(lambda request: sent.append(request.read()))
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.threads) as pool:
                trajs = list(pool.map(lambda p: run_episode(policy.for_episode(p[0].sample_id, 0), p[0], limits), pairs))
            harness_s = time.perf_counter() - t0
        turns = sum(t.num_turns for t in trajs)
        bodies = sent
        assert len(bodies) == turns

        with httpx.Client(limits=httpx.Limits(max_connections=args.threads)) as client:
            url = base_url + "/chat/completions"
            headers = {"Content-Type": "application/json", "Authorization": "Bearer EMPTY"}
            client.post(url, content=bodies[0], headers=headers).raise_for_status()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.threads) as pool:
                for r in pool.map(lambda b: client.post(url, content=b, headers=headers), bodies):
                    r.raise_for_status()
            raw_s = time.perf_counter() - t0
    finally:
        parent.send("stop")
        proc.join(10)

    mb = sum(len(b) for b in bodies) / len(bodies) / 1e6
    result = {
        "episodes": len(trajs), "turns": turns, "threads": args.threads, "image": [args.width, args.height],
        "mean_request_mb": round(mb, 2), "harness_s": round(harness_s, 3), "raw_s": round(raw_s, 3),
        "harness_turns_per_s": round(turns / harness_s, 2), "raw_requests_per_s": round(turns / raw_s, 2),
        "ratio": round(raw_s / harness_s, 3), "terminations": sorted({t.termination for t in trajs}),
        "python": platform.python_version(), "machine": platform.machine(),
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
