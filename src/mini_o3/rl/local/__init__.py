"""The reference GRPO engine (``--engine local``): task-kit rollouts with a batched HF backend,
GRPO update, atomic checkpoints with resume, Avg@k validation. CPU CI engine; device-agnostic.

Entry point: ``run_rl_local(model, train, val, out_dir, config, overrides, progress) -> RLResult``.
"""

from .run import RLResult, run_rl_local

__all__ = ["RLResult", "run_rl_local"]
