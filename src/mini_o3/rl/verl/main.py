"""``python -m mini_o3.rl.verl.main <hydra overrides>``: verl's ``main_ppo`` with Mini-o3's plug-ins.

The plug-ins register themselves on import. The driver imports them here; the trainer runs in
verl's ``TaskRunner`` Ray actor, so ``MiniO3TaskRunner`` imports them there too (the advantage
estimators live in that process). Agent-loop workers import the loop, parser and tool through the
``_target_`` / ``class_name`` of the generated yaml files; reward and sampler are loaded by path.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import ray


def register_plugins() -> None:
    """Import every plug-in module (idempotent): parser, tool, agent loop, advantage estimators."""
    from . import advantage, agent_loop, parser, tool  # noqa: F401


def main() -> None:
    from verl.trainer import main_ppo
    from verl.trainer.main_ppo import TaskRunnerV1, run_ppo
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config
    from verl.utils.device import auto_set_device

    register_plugins()

    @ray.remote
    class MiniO3TaskRunner(TaskRunnerV1.__ray_actor_class__):  # type: ignore[name-defined,misc]
        """verl's V1 TaskRunner that first registers the Mini-o3 plug-ins in its own process."""

        def run(self, config):  # noqa: ANN001
            register_plugins()
            return super().run(config)

    config_dir = str(Path(main_ppo.__file__).resolve().parent / "config")  # verl's own ppo_trainer.yaml

    @hydra.main(config_path=config_dir, config_name="ppo_trainer", version_base=None)
    def entry(config) -> None:  # noqa: ANN001
        auto_set_device(config)
        validate_config(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
        if not config.trainer.use_v1:
            raise SystemExit("mini_o3.rl.verl needs verl's V1 trainer (trainer.use_v1=true): its sampler plug-in is V1-only")
        run_ppo(config, task_runner_class=MiniO3TaskRunner)

    entry()


if __name__ == "__main__":
    main()
