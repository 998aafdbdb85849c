"""Launch and supervise a vLLM OpenAI-compatible server for multi-turn evaluation.

``vllm_command(config)`` builds the command line with the settings multi-turn Mini-o3 needs:

* ``--generation-config vllm``: otherwise the model's ``generation_config.json`` (Qwen2.5-VL:
  top_k 1, T 0.1, …) becomes the default sampling and Avg@k silently turns greedy (the policy
  also sends every sampling parameter per request);
* ``--limit-mm-per-prompt`` as JSON (the ``image=12`` form fails in recent vLLM); the limit
  counts the original image, the client loop enforces Mini-o3's own limit;
* ``--max-model-len`` = the episode context (32 768);
* ``--chat-template-content-format openai``: message parts are rendered by the template one by
  one, so the served text equals ``Trajectory.token_stream()``;
* ``--mm-processor-kwargs`` only when pixel bounds are set. By default the processor's
  ``min_pixels`` is NOT overridden: the client already resizes every image into Mini-o3's
  [40 000, 2 000 000] px, and forcing ``min_pixels=40000`` in the server's processor changes the
  patch grid of small crops compared with training. ``max_pixels`` may be set as a safety cap;
* ``--allowed-local-media-path`` enables ``file://`` image URLs under that directory.

``VLLMServer`` runs it in its own process group, waits for ``/health`` and ``/v1/models`` (listing
the served name), keeps the log, and stops it with SIGTERM → wait → SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any, Self

from pydantic import BaseModel, ConfigDict, Field


class ServeError(RuntimeError):
    """The server died, never became healthy, or does not serve the expected model."""


class ServeConfig(BaseModel):
    """How to launch ``vllm serve`` for the policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="model directory or HF id")
    served_model_name: str = Field("policy", description="name requests use (OpenAIPolicyConfig.model)")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535, description="0: pick a free port")
    max_model_len: int = Field(32768, gt=0)
    limit_mm_per_prompt: dict[str, int] = Field(default_factory=lambda: {"image": 12})
    min_pixels: int | None = Field(None, gt=0, description="processor min_pixels override (not recommended)")
    max_pixels: int | None = Field(None, gt=0, description="processor max_pixels override")
    generation_config: str = Field("vllm", description="'vllm' ignores the model's generation_config.json")
    chat_template_content_format: str | None = Field("openai", description="None: vLLM's auto-detection")
    allowed_local_media_path: str | None = None
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    tensor_parallel_size: int = Field(1, ge=1)
    data_parallel_size: int = Field(1, ge=1, description="engine replicas (GPUs = tensor x data parallel)")
    dtype: str = "bfloat16"
    seed: int = 0
    extra_args: list[str] = Field(default_factory=list, description="appended verbatim")
    executable: list[str] = Field(default_factory=lambda: ["vllm", "serve"], description="launcher (tests use a fake)")
    health_timeout_s: float = Field(1800.0, gt=0, description="time allowed to load and warm up")
    stop_timeout_s: float = Field(30.0, gt=0, description="SIGTERM grace before SIGKILL")
    log_path: str | None = Field(None, description="server log; None: a temporary file")

    @property
    def client_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host


def vllm_command(config: ServeConfig, port: int | None = None) -> list[str]:
    """The ``vllm serve`` command line of ``config`` (``port`` overrides ``config.port``)."""
    cmd = [
        *config.executable, config.model,
        "--served-model-name", config.served_model_name,
        "--host", config.host,
        "--port", str(config.port if port is None else port),
        "--max-model-len", str(config.max_model_len),
        "--limit-mm-per-prompt", json.dumps(config.limit_mm_per_prompt, separators=(",", ":")),
        "--generation-config", config.generation_config,
        "--dtype", config.dtype,
        "--seed", str(config.seed),
        "--gpu-memory-utilization", str(config.gpu_memory_utilization),
        "--tensor-parallel-size", str(config.tensor_parallel_size),
    ]
    if config.data_parallel_size > 1:
        cmd += ["--data-parallel-size", str(config.data_parallel_size)]
    if config.chat_template_content_format:
        cmd += ["--chat-template-content-format", config.chat_template_content_format]
    mm = {k: v for k, v in (("min_pixels", config.min_pixels), ("max_pixels", config.max_pixels)) if v is not None}
    if mm:
        cmd += ["--mm-processor-kwargs", json.dumps(mm, separators=(",", ":"))]
    if config.allowed_local_media_path:
        cmd += ["--allowed-local-media-path", str(Path(config.allowed_local_media_path).resolve())]
    return cmd + list(config.extra_args)


def parallelism(model_dir: str | Path, gpus: int) -> tuple[int, int]:
    """``(tensor_parallel, data_parallel)`` for ``gpus`` GPUs: the largest tensor-parallel size that
    divides ``gpus`` and the model's attention heads (vLLM refuses others, e.g. Qwen2.5-VL-7B's 28
    heads on 8 GPUs), the rest as engine replicas."""
    if gpus < 1:
        raise ValueError(f"gpus must be >= 1, got {gpus}")
    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    heads = [c.get(key) for c in (config, config.get("text_config") or {}, config.get("vision_config") or {})
             for key in ("num_attention_heads", "num_heads")]
    heads = [h for h in heads if isinstance(h, int) and h > 0]
    tp = max(d for d in range(1, gpus + 1) if gpus % d == 0 and all(h % d == 0 for h in heads))
    return tp, gpus // tp


def eval_serve_config(model: str | Path, eval_config: Any, gpus: int = 1, **fields: Any) -> ServeConfig:
    """The server for an evaluation run: context and image limits from the ``EvalConfig`` (its
    ``max_context`` / ``max_images``, e.g. the 32-image headline setting) and ``gpus`` split by
    ``parallelism``; ``fields`` (e.g. ``EvalConfig.serve``) override any of these."""
    tp, dp = parallelism(model, gpus)
    limits = eval_config.limits()
    values: dict[str, Any] = dict(model=str(model), max_model_len=limits.max_context,
                                  limit_mm_per_prompt={"image": limits.max_images}, tensor_parallel_size=tp,
                                  data_parallel_size=dp)
    return ServeConfig(**{**values, **fields})


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class VLLMServer:
    """Context manager: start the server, wait until it serves ``served_model_name``, stop it."""

    def __init__(self, config: ServeConfig, poll_s: float = 0.5) -> None:
        self.config, self.poll_s = config, poll_s
        self.port = config.port or free_port(config.client_host)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(config.log_path) if config.log_path else None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.client_host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self) -> VLLMServer:
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="vllm-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (kept open for the process lifetime)
        cmd = vllm_command(self.config, self.port)
        try:
            self.process = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        except OSError as exc:
            self._log.close()
            raise ServeError(f"cannot start {cmd[0]!r} ({' '.join(cmd[:2])}): {exc}") from exc
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_healthy(self) -> None:
        """Block until ``/health`` is 200 and ``/v1/models`` lists the served name."""
        assert self.process is not None
        deadline = time.monotonic() + self.config.health_timeout_s
        name = self.config.served_model_name
        while time.monotonic() < deadline:
            code = self.process.poll()
            if code is not None:
                raise ServeError(f"vLLM server exited with code {code} before becoming healthy; log {self.log_path}:\n{self.log_tail()}")
            if _get(self.url + "/health") is not None:
                body = _get(self.url + "/v1/models")
                ids = [m.get("id") for m in (json.loads(body).get("data", []) if body else [])]
                if name in ids:
                    return
                if body is not None:
                    raise ServeError(f"server at {self.url} is healthy but serves {ids}, not {name!r}")
            time.sleep(self.poll_s)
        raise ServeError(
            f"vLLM server at {self.url} not healthy after {self.config.health_timeout_s:.0f}s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """SIGTERM the process group, wait ``stop_timeout_s``, then SIGKILL. Returns the exit code."""
        proc, code = self.process, None
        if proc is not None:
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(self.config.stop_timeout_s)
                except subprocess.TimeoutExpired:
                    _signal_group(proc, signal.SIGKILL)
                    proc.wait()
            else:
                _signal_group(proc, signal.SIGKILL)  # stray children of a dead leader
            code = proc.returncode
        if self._log is not None and not self._log.closed:
            self._log.close()
        return code

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_bytes()[-65536:].decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(config: ServeConfig, *, echo: Any = print) -> None:
    """Run the server until interrupted (Ctrl-C) or until it dies (raises ``ServeError``)."""
    with VLLMServer(config) as server:
        echo(f"serving {config.served_model_name!r} from {config.model} at {server.base_url} (log {server.log_path})")
        try:
            assert server.process is not None
            code = server.process.wait()
        except KeyboardInterrupt:
            echo("stopping the server")
            return
        raise ServeError(f"vLLM server exited with code {code}; log {server.log_path}:\n{server.log_tail()}")


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # own session: pgid == pid
    except (ProcessLookupError, PermissionError):
        pass


def _get(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode() if response.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None
