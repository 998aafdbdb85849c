"""``run_rl_local``: the reference GRPO loop (CPU CI engine; any single device).

Per RL step: draw generation batches from the seeded data order, roll out ``rollout_n`` episodes
per prompt through the task kit (batched HF backend), score them, keep valid groups (rejection
sampling), compute group advantages, build ids/masks/images per trajectory, recompute old
log-probs, run the PPO update, log metrics, then checkpoint / validate on schedule. A re-run into
the same ``out_dir`` resumes from ``checkpoints/latest`` (weights, optimizer, scheduler, RNG, data
cursor and step counter).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mini_o3.rollout.batched_rollout import RolloutStats, rollout
from mini_o3.rollout.hf_backend import HFBackend
from mini_o3.rollout.settings import flat_dump
from mini_o3.task.grpo import group_advantages

from ..config import RLConfig
from ..data import load_prompts
from ..rewards import make_judge, score_trajectory
from .batch import build_sample
from .checkpoint import latest_checkpoint, load_training_state, save_checkpoint
from .collect import Group, collect_groups
from .metrics import MetricsLogger
from .order import DataCursor, DataOrder
from .timers import Timers
from .trainer import LossSettings, compute_old_logprobs, update_policy
from .validate import validate


@dataclass(frozen=True)
class RLResult:
    """What a run did: the step reached, the newest checkpoint and the last metrics."""

    out_dir: Path
    global_step: int
    total_steps: int
    resumed_from_step: int | None
    last_checkpoint: Path | None
    train_metrics: dict[str, float] = field(default_factory=dict)
    val_metrics: dict[str, float] = field(default_factory=dict)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_rl_local(
    model: str | Path,
    train: list[Path],
    val: list[Path],
    out_dir: Path,
    config: RLConfig | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
    *,
    device: str | None = None,
    max_live_episodes: int = 1024,
    generate_batch_size: int = 64,
) -> RLResult:
    """Train ``model`` (an HF folder: the SFT policy) with GRPO on ``train``, validating on ``val``.

    ``train`` / ``val``: unified parquet files or folders holding ``train.parquet`` /
    ``val.parquet``. ``config`` (default ``RLConfig()``) then ``overrides`` (``key=value``).
    ``device``: "cpu", "cuda", ... (default: cuda when available; bf16 on CUDA, fp32 otherwise).
    The arguments name the model and data (recorded as ``model_path`` / ``train_files`` /
    ``val_files`` in ``rl_config.json``: ``RLConfig.with_inputs``); checkpoints go to
    ``out_dir/checkpoints`` (``checkpoint_dir`` is not read).
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from mini_o3.rollout.hf_backend import TokenizerCounter

    config = (config or RLConfig()).with_overrides(list(overrides)) if overrides else (config or RLConfig())
    out_dir = Path(out_dir)
    model_dir = Path(model)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"model {str(model)!r} is not a Hugging Face model folder (no config.json)")
    config = config.with_inputs(str(model_dir.resolve()), [str(Path(p).resolve()) for p in train],
                                [str(Path(p).resolve()) for p in val])  # provenance: what this run reads
    judge = make_judge(config.judge)
    train_prompts = load_prompts(train, "train")
    val_prompts = load_prompts(val, "val") if val else []
    order = DataOrder(len(train_prompts), config.train_batch_size, config.seed, config.shuffle)
    total_steps = config.total_training_steps or order.batches_per_epoch * config.total_epochs

    device = device or default_device()
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    resume = latest_checkpoint(out_dir)
    source = resume or model_dir
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    processor = AutoProcessor.from_pretrained(str(source))
    policy = AutoModelForImageTextToText.from_pretrained(str(source), dtype=dtype).to(device)
    # The KL loss's reference: the starting policy (model_dir, also on resume), frozen, as verl's ref.
    reference = (AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype=dtype).to(device).eval()
                 .requires_grad_(False) if config.uses_reference_model else None)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr, betas=config.adam_betas,
                                  weight_decay=config.weight_decay)
    warmup = int(config.lr_warmup_steps_ratio * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0)
    step, cursor, resumed_from = 0, DataCursor(), None
    if resume is not None:
        state = load_training_state(resume, optimizer, scheduler)
        step, cursor = int(state["global_step"]), DataCursor(**state["cursor"])
        resumed_from = step

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rl_config.json").write_text(config.model_dump_json(indent=2))
    logger = MetricsLogger(out_dir, progress=progress, params={"model": str(model_dir), **flat_dump(config)})
    backend = HFBackend(policy, processor, device=device, max_batch_size=generate_batch_size)
    counter = TokenizerCounter(processor.tokenizer)
    train_sampling, val_sampling = config.sampling, config.val_sampling_config()  # temperature 0: greedy
    settings = LossSettings.from_config(config)
    weights = config.reward_weights()
    n = config.rollout_n
    last_ckpt: Path | None = resume
    train_metrics: dict[str, float] = {}
    val_metrics: dict[str, float] = {}

    def run_validation(at: int) -> dict[str, float]:
        start = time.perf_counter()
        metrics = validate(backend, val_prompts, config.val_limits(), val_sampling, n=config.val_n, counter=counter,
                           weights=weights, extract_mode=config.extract_answer_tags, judge=judge,
                           prompt_set=config.prompt_set, parser=config.parser, max_live=max_live_episodes,
                           dump=out_dir / "validation" / f"step_{at}.jsonl")
        metrics["timing/validation"] = time.perf_counter() - start
        logger.log(at, metrics)
        return metrics

    try:
        if resume is None and val_prompts and (config.val_before_train or config.val_only):
            val_metrics = run_validation(step)
        if config.val_only:
            return RLResult(out_dir, step, total_steps, resumed_from, last_ckpt, {}, val_metrics)
        while step < total_steps:
            timers = Timers()
            stats = RolloutStats()
            step_start = time.perf_counter()

            def generate_batch(k: int) -> list[Group]:  # noqa: B023 (called within this iteration)
                nonlocal cursor
                indices, cursor = order.take(cursor)
                chosen = [train_prompts[i] for i in indices]
                samples = [p.episode(j) for p in chosen for j in range(n)]
                with timers.time("rollout"):
                    trajs = rollout(backend, samples, config.train_limits(), train_sampling, counter=counter,
                                    prompt_set=config.prompt_set, parser=config.parser,
                                    max_live=max_live_episodes, stats=stats)
                with timers.time("reward"):
                    scores = [score_trajectory(t, chosen[i // n].record, weights,
                                               extract_mode=config.extract_answer_tags, judge=judge)
                              for i, t in enumerate(trajs)]
                return [Group(f"{step + 1}-{k}-{g}", p, trajs[g * n:(g + 1) * n], scores[g * n:(g + 1) * n])
                        for g, p in enumerate(chosen)]

            collected = collect_groups(generate_batch, config.train_batch_size,
                                       rejection_sample=config.rejection_sample,
                                       max_gen_batches=config.max_num_gen_batches,
                                       mode=config.over_turn_mode, min_std=config.min_group_std,
                                       max_barren_gen_batches=config.max_barren_gen_batches,
                                       progress=logger.progress(step + 1, total_steps))
            with timers.time("dump"):
                dump_rollouts(out_dir / "rollouts" / f"step_{step + 1}.jsonl", collected)
            with timers.time("advantage"):
                rewards = [s.reward for g in collected.groups for s in g.scores]
                uids = [g.uid for g in collected.groups for _ in g.trajectories]
                exceed = [t.termination == "exceed" for g in collected.groups for t in g.trajectories]
                advantages = group_advantages(rewards, uids, exceed, mode=config.over_turn_mode, eps=config.adv_eps)
            with timers.time("build_tensors"):
                trajs = [t for g in collected.groups for t in g.trajectories]
                samples = [build_sample(t, processor, ignore_exceed=config.ignore_exceed, ignore_void=config.ignore_void,
                                        mask_cut_final_turn=config.mask_cut_final_turn, group=u, reward=r, advantage=a)
                           for t, u, r, a in zip(trajs, uids, rewards, advantages)]
            with timers.time("old_logprobs"):
                compute_old_logprobs(policy, samples, device)
            if reference is not None:
                with timers.time("ref_logprobs"):
                    compute_old_logprobs(reference, samples, device, into="ref_logprobs")
            actor = update_policy(policy, optimizer, samples, settings=settings,
                                  mini_batch_size=config.trajectories_per_mini_batch,
                                  micro_batch_size=config.ppo_micro_batch_size_per_gpu,
                                  ppo_epochs=config.ppo_epochs, grad_clip=config.grad_clip,
                                  device=device, timers=timers)
            actor["actor/lr"] = scheduler.get_last_lr()[0]
            scheduler.step()
            step += 1
            timers.add("rollout_generate", stats.generate_seconds)
            timers.add("rollout_other", timers.seconds.pop("rollout") - stats.generate_seconds)
            if config.save_freq > 0 and (step % config.save_freq == 0 or step == total_steps):
                with timers.time("checkpoint"):
                    last_ckpt = save_checkpoint(out_dir, step, policy, processor, optimizer, scheduler,
                                                {"cursor": {"epoch": cursor.epoch, "batch": cursor.batch},
                                                 "total_steps": total_steps, "seed": config.seed})
            timers.add("step", time.perf_counter() - step_start)
            train_metrics = {**rollout_metrics(collected, samples, stats, min_std=config.min_group_std), **actor,
                             **timers.metrics(), "train/epoch": cursor.epoch, "perf/host_rss_gb": host_rss_gb()}
            logger.log(step, train_metrics)
            if val_prompts and config.test_freq > 0 and (step % config.test_freq == 0 or step == total_steps):
                val_metrics = run_validation(step)
    finally:
        logger.close()
    return RLResult(out_dir, step, total_steps, resumed_from, last_ckpt, train_metrics, val_metrics)


def dump_rollouts(path: Path, collected: Any) -> None:
    """Every generated trajectory of a step (kept or filtered) as one JSON line."""
    kept = {g.uid for g in collected.groups}
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        for g in collected.generated:
            for traj, score in zip(g.trajectories, g.scores):
                handle.write(json.dumps({"uid": g.uid, "id": g.prompt.record.id, "kept": g.uid in kept,
                                         "reward": score.reward, "accuracy": score.accuracy,
                                         "termination": traj.termination, "num_turns": traj.num_turns,
                                         "outputs": traj.model_outputs}) + "\n")


def host_rss_gb() -> float:
    """Resident memory of this process in GB (Linux /proc; 0.0 where unavailable): logged per step,
    as host RAM growth during RL is a known seed problem (Mini-o3 issue #23)."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
    except (OSError, ValueError, IndexError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e9


def rollout_metrics(collected: Any, samples: Sequence[Any], stats: RolloutStats,
                    min_std: float = 1e-4) -> dict[str, float]:
    """Reward / accuracy / termination / turn histogram over every generated trajectory, plus the
    kept batch's filtering and token counts, and the share of generated groups whose rewards vary
    (the groups that carry a GRPO signal)."""
    import statistics

    trajs = [t for g in collected.generated for t in g.trajectories]
    scores = [s for g in collected.generated for s in g.scores]
    total = max(len(trajs), 1)
    varied = [len(g.scores) > 1 and statistics.pstdev([s.reward for s in g.scores]) >= min_std
              for g in collected.generated]
    metrics: dict[str, float] = {
        "rollout/groups_with_variance": sum(varied) / max(len(varied), 1),
        "rollout/reward": sum(s.reward for s in scores) / total,
        "rollout/accuracy": sum(s.accuracy for s in scores) / total,
        "rollout/exceed_ratio": sum(t.termination == "exceed" for t in trajs) / total,
        "rollout/void_ratio": sum(t.termination == "void" for t in trajs) / total,
        "rollout/mean_turns": sum(t.num_turns for t in trajs) / total,
        "rollout/mean_generated_tokens": sum(sum(turn.tokens for turn in t.turns) for t in trajs) / total,
        "batch/reward": sum(s.reward for s in samples) / max(len(samples), 1),
        "batch/filtered_groups": collected.filtered_groups,
        "batch/num_gen_batches": collected.gen_batches,
        "batch/trainable_tokens": sum(s.num_trainable for s in samples),
        "perf/generated_tokens": stats.generated_tokens,
        "perf/tokens_per_s": stats.generated_tokens / stats.generate_seconds if stats.generate_seconds else 0.0,
    }
    for turns in sorted({t.num_turns for t in trajs}):
        metrics[f"rollout/turns_{turns}"] = sum(t.num_turns == turns for t in trajs) / total
    return metrics
