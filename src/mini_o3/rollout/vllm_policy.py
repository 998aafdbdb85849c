"""``VLLMPolicy``: the ``vllm:MODEL`` policy kind. Serves MODEL with vLLM for the run (context and
image limits from the ``EvalConfig``, ``gpus`` split into tensor x data parallel) and rolls out
through an OpenAI-compatible client. Its ``spec`` names the model (``model_identity``), so two
models never share a config hash or each other's stored samples.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from mini_o3.task import Policy

from .model_identity import model_identity
from .serve import VLLMServer, eval_serve_config


class VLLMPolicy:
    """A context manager: ``__enter__`` starts the server and the client, ``__exit__`` stops it.

    ``client`` builds the episode policy for an ``URL#served-name`` target (the runner's
    ``openai_policy`` with the config's sampling, seed and concurrency).
    """

    def __init__(self, model: str | Path, config: Any, client: Callable[[str], Any], *, gpus: int = 1,
                 **serve_fields: Any) -> None:
        self.model = str(model)
        self.spec = f"vllm:{model_identity(model)}"
        self.serve_config = eval_serve_config(self.model, config, gpus, **serve_fields)
        self._client_factory = client
        self._server: VLLMServer | None = None
        self._client: Any = None

    def __enter__(self) -> VLLMPolicy:
        server = VLLMServer(self.serve_config).start()
        self._server = server
        try:
            self._client = self._client_factory(f"{server.base_url}#{self.serve_config.served_model_name}")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        client, self._client = self._client, None
        if client is not None and hasattr(client, "close"):
            client.close()
        if self._server is not None:
            self._server.stop()
            self._server = None

    def for_episode(self, question_id: str, sample: int) -> Policy:
        if self._client is None:
            raise RuntimeError(f"{self.spec}: the vLLM server is not running (use the policy as a context manager)")
        return self._client.for_episode(question_id, sample)
