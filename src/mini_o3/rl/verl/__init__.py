"""The verl 0.9.1 RL engine (``--engine verl``): Mini-o3 plug-ins over the task kit plus the
config builder and launcher. Importing this package does not import verl; the plug-in modules do.

* ``parser``      ``minio3_grounding`` tool parser (``<grounding>`` → ``crop`` call)
* ``tool``        ``CropTool(BaseTool)``: crops raw images from the agent state, returns images
* ``agent_loop``  ``MiniO3AgentLoop``: turns, image / context limits, exceed masks, extra fields
* ``reward``      ``compute_score``: the reference engine's scorer + judge on the turn texts
* ``advantage``   ``grpo_minio3`` / ``grpo_minio3_paper`` advantage estimators
* ``sampler``     ``MiniO3ReplayBuffer``: zero-variance / judge-failure group filter (V1 trainer)
* ``data``        unified parquet → verl parquet
* ``command``     RLConfig → hydra overrides + yaml files (table of keys in its docstring)
* ``main``        ``python -m mini_o3.rl.verl.main``: verl's main_ppo with the plug-ins registered
* ``run``         ``run_rl_verl``
"""

from .run import SMOKE_RL_OVERRIDES, SMOKE_VERL_OVERRIDES, VerlError, VerlRun, run_rl_verl

__all__ = ["SMOKE_RL_OVERRIDES", "SMOKE_VERL_OVERRIDES", "VerlError", "VerlRun", "run_rl_verl"]
