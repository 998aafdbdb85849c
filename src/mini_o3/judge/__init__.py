"""The LLM judge (prompts and reply parser are ``mini_o3.task.judge``): the evaluator's ``paper``
protocol and both RL engines' rewards call it. It stands on the task kit and the OpenAI transport
of ``mini_o3.rollout``, never on ``rl``, ``evaluate``, ``stages`` or ``kfp``.

* ``config``  ``JudgeConfig``: the one judge settings model (``EvalConfig.judge``, ``RLConfig.judge``)
* ``client``  ``Judge`` (retries, rate limits, sqlite cache), credential checks
"""
