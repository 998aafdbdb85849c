"""Rollouts: the policies that produce model turns for ``run_episode`` and what runs them.

Both RL engines and the evaluator stand on this room; it imports only the task kit (and small
shared helpers), never ``rl``, ``evaluate``, ``stages`` or ``kfp``.

* ``settings``         ``LimitsConfig``, ``SamplingConfig``: the limits / sampling shapes RL and evaluation compose
* ``hf_backend``       ``HFBackend``: one left-padded ``generate`` over a batch of requests; ``TokenizerCounter``
* ``batched_rollout``  ``rollout``: many task-kit ``Episode``s stepped in lock-step through one backend
* ``local_policy``     ``LocalHFPolicy``: the ``local:DIR`` policy (batched HF rollouts)
* ``openai_policy``    ``OpenAIChatPolicy``: an OpenAI-compatible chat endpoint (vLLM, OpenAI, Azure)
* ``serve``            ``VLLMServer``: a supervised ``vllm serve`` (``mini-o3 serve``)
* ``vllm_policy``      ``VLLMPolicy``: the ``vllm:MODEL`` policy (a server for the run + the client)
* ``model_identity``   the name a policy spec gives its model (folder path + fingerprint, or hub id)
"""
