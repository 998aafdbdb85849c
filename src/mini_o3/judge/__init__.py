"""The LLM judge client (prompts and reply parser are ``mini_o3.task.judge``): the evaluator's
``paper`` protocol and both RL engines' rewards call it. It stands on the task kit and the
OpenAI transport of ``mini_o3.rollout``, never on ``rl``, ``evaluate``, ``stages`` or ``kfp``.

* ``client``  ``Judge`` (retries, rate limits, sqlite cache), ``EvalJudgeConfig``, credential checks
"""
