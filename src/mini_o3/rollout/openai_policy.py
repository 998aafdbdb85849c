"""``run_episode`` policy over an OpenAI-compatible chat endpoint (vLLM ``serve``, OpenAI, Azure).

``OpenAIChatPolicy(config).for_episode(question_id, sample)`` returns the per-episode callable.
Each turn sends ``Trajectory.to_chat_messages()`` with every image part as an ``image_url``
(a base64 PNG data URL, or a ``file://`` URL under the server's allowed media root) and ALL
sampling parameters, so server-side defaults (vLLM's ``generation_config`` trap) never apply.

Token-stream equivalence: the Qwen2.5-VL chat template renders these messages to exactly
``Trajectory.token_stream()`` at every turn (the assistant turn is closed by the template's
``<|im_end|>``, which in the raw stream opens the injected user segment); tested in
``tests/unit/test_rollout_openai_template.py``. vLLM must use the ``openai`` content format
(the Qwen template's auto-detected one), otherwise text parts would be joined with newlines.

Stop strings: the OpenAI API strips the stop string from the output. vLLM keeps it when asked
(``include_stop_str_in_output``, always sent); when the reply still ends inside an unclosed
``<grounding>`` after ``finish_reason == "stop"`` (a server that ignores the extra) the policy
re-appends ``</grounding>``, unless vLLM's ``stop_reason`` says generation ended on EOS.

Faults: 408/409/429/5xx, timeouts, connection errors and malformed responses (not JSON, truncated
JSON, no choices) are retried with capped exponential backoff, waiting at least a ``Retry-After``
the server sends (up to ``retry_after_max_s``); other statuses (a 400 context-length rejection)
fail at once. ``OpenAIPolicyError.kind`` classifies the final failure (``http_400``, ``http_503``,
``bad_response``, ``connection``, ``timeout``). Errors name the endpoint without credentials.

Bounded replies: a server that ignores ``max_tokens`` (a reply whose ``completion_tokens`` exceeds
the turn's budget, or without usage and longer than ``MAX_CHARS_PER_TOKEN`` characters a token) is
cut to the budget and reported as ``finish_reason="length"`` (the protocol's length cut), so a
runaway reply never reaches the trajectory, the store or the viewer.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import io
import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from mini_o3.redact import redact_url
from mini_o3.task import PolicyOutput, PolicyRequest
from mini_o3.task.prompts import TOOL_STOP

from .settings import SamplingConfig, flat_keys, lift_flat_keys, request_seed

_GROUNDING_OPEN = "<grounding>"
#: HTTP statuses retried with backoff (besides connection errors and timeouts).
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
#: Characters a token may take at most when a server reports no usage (reply cut beyond that).
MAX_CHARS_PER_TOKEN = 16


class OpenAIPolicyError(RuntimeError):
    """A chat completion failed for good (non-retryable status, or retries exhausted).

    ``kind``: ``http_<status>``, ``bad_response``, ``connection``, ``timeout`` or ``config``.
    """

    def __init__(self, message: str, kind: str = "config") -> None:
        super().__init__(message)
        self.kind = kind


class BadResponseError(ValueError):
    """A 200 response that is not a chat completion (not JSON, truncated JSON, no choices)."""


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds a ``Retry-After`` header of ``exc``'s response asks to wait (delta or HTTP date)."""
    response = getattr(exc, "response", None)
    value = getattr(response, "headers", {}).get("retry-after") if response is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def check_completion(response: Any) -> Any:
    """``response`` when it is a chat completion with a message in its first choice, else
    ``BadResponseError`` (the openai client returns the text or a list for a non-JSON or
    non-object body, and leaves ``choices`` None when the JSON lacks them)."""
    choices = getattr(response, "choices", None)
    if not isinstance(choices, list):
        shown = response if isinstance(response, str) else type(response).__name__
        raise BadResponseError(f"the response is not a chat completion: {str(shown)[:120]!r}")
    if not choices or getattr(choices[0], "message", None) is None:
        raise BadResponseError("the response has no choices")
    return response


class OpenAIPolicyConfig(BaseModel):
    """Endpoint, sampling and transport of ``OpenAIChatPolicy``. Defaults: the recipe's Avg@k sampling."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: Flat keys of the sampling: ``temperature`` = ``sampling.temperature``, ...
    FLAT_KEYS: ClassVar[dict[str, str]] = flat_keys("", SamplingConfig, "sampling")

    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible base URL (ignored for azure)")
    model: str = Field("policy", description="served model name (vLLM --served-model-name) or Azure deployment")
    api: Literal["openai", "azure"] = Field("openai", description="client flavour")
    api_key_env: str | None = Field(None, description="env var with the key; None: OPENAI_API_KEY (openai) / API_KEY (azure)")
    azure_endpoint_env: str = Field("END_POINT", description="env var with the Azure endpoint")
    api_version_env: str = Field("API_VERSION", description="env var with the Azure API version")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig,
                                     description="sampling of every request (top_k is a vLLM extra)")
    repetition_penalty: float = Field(1.0, gt=0, description="vLLM extra")
    max_tokens: int | None = Field(None, gt=0, description="per-turn cap; None: the episode's per-turn budget")
    stop: tuple[str, ...] = Field((TOOL_STOP,), description="stop strings of every turn")
    seed: int = Field(0, description="base of the per-request seeds derived from (question, sample, turn)")
    vllm_extras: bool = Field(True, description="send top_k / repetition_penalty / include_stop_str_in_output (vLLM)")
    extra_body: dict[str, Any] = Field(default_factory=dict, description="merged into every request body")
    headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers of every request (e.g. a proxy's auth)")
    image_transport: Literal["data_url", "file_url"] = "data_url"
    media_root: str | None = Field(None, description="file_url: the server's --allowed-local-media-path")
    png_compress_level: int = Field(1, ge=0, le=9, description="PNG zlib level of encoded images (lossless)")
    timeout_s: float = Field(900.0, gt=0, description="read timeout per request")
    connect_timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(8, ge=0, description="retries after the first attempt (429/5xx/timeouts/connection)")
    backoff_s: float = Field(0.5, ge=0, description="first backoff; doubles per retry, with jitter")
    backoff_max_s: float = Field(60.0, ge=0)
    retry_after_max_s: float = Field(300.0, ge=0, description="longest Retry-After honoured (seconds)")
    concurrency: int = Field(64, ge=1, description="requests in flight across all episodes")

    @model_validator(mode="before")
    @classmethod
    def _flat_keys(cls, data: Any) -> Any:
        return lift_flat_keys(cls, cls.FLAT_KEYS, data)

    @model_validator(mode="after")
    def _check(self) -> OpenAIPolicyConfig:
        if self.image_transport == "file_url" and not self.media_root:
            raise ValueError("OpenAIPolicyConfig.media_root is required with image_transport='file_url'")
        if not self.stop:
            raise ValueError("OpenAIPolicyConfig.stop must hold at least one stop string")
        return self

    @property
    def key_env(self) -> str:
        return self.api_key_env or ("API_KEY" if self.api == "azure" else "OPENAI_API_KEY")

    def endpoint(self) -> str:
        """The URL requests go to, without credentials (for error messages)."""
        url = os.environ.get(self.azure_endpoint_env, f"${self.azure_endpoint_env}") if self.api == "azure" else self.base_url
        return redact_url(url)


def png_data_url(image: Image.Image, compress_level: int = 1) -> str:
    """``data:image/png;base64,…`` of ``image`` (deterministic bytes for the same pixels)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=compress_level)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def close_open_grounding(text: str, stops: tuple[str, ...] = (TOOL_STOP,)) -> str:
    """Re-append ``</grounding>`` when ``text`` ends inside an unclosed ``<grounding>``."""
    if TOOL_STOP not in stops:
        return text
    if text.rfind(_GROUNDING_OPEN) > text.rfind(TOOL_STOP):
        return text + TOOL_STOP
    return text


def make_client(config: OpenAIPolicyConfig) -> Any:
    """The ``openai`` client of ``config`` (no built-in retries: ours are bounded and logged)."""
    import httpx
    import openai

    timeout = httpx.Timeout(config.timeout_s, connect=config.connect_timeout_s)
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)
    http = httpx.Client(timeout=timeout, limits=limits)
    key = os.environ.get(config.key_env)
    if config.api == "azure":
        missing = [n for n in (config.azure_endpoint_env, config.api_version_env, config.key_env) if not os.environ.get(n)]
        if missing:
            raise OpenAIPolicyError(f"azure policy endpoint: environment variable(s) {missing} not set")
        return openai.AzureOpenAI(
            azure_endpoint=os.environ[config.azure_endpoint_env], api_version=os.environ[config.api_version_env],
            api_key=key, max_retries=0, timeout=timeout, http_client=http, default_headers=config.headers or None,
        )
    return openai.OpenAI(base_url=config.base_url, api_key=key or "EMPTY", max_retries=0, timeout=timeout,
                         http_client=http, default_headers=config.headers or None)


class OpenAIChatPolicy:
    """Thread-safe factory of per-episode policies sharing one client and one in-flight bound."""

    def __init__(self, config: OpenAIPolicyConfig | None = None, client: Any = None) -> None:
        config = config or OpenAIPolicyConfig()
        self.config = config
        self.client = client if client is not None else make_client(config)
        self._slots = threading.BoundedSemaphore(config.concurrency)
        self._lock = threading.Lock()
        self._rng = random.Random(config.seed)
        self.stats = {"requests": 0, "retries": 0, "failures": 0, "completion_tokens": 0}

    def for_episode(self, question_id: str, sample: int) -> EpisodePolicy:
        """The ``run_episode`` policy of sample ``sample`` of question ``question_id``."""
        return EpisodePolicy(self, str(question_id), int(sample))

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one request ------------------------------------------------------------------------
    def sampling_kwargs(self, max_tokens: int, stop: tuple[str, ...], seed: int) -> dict[str, Any]:
        """Every sampling parameter of one request (``extra_body`` holds the vLLM-only ones)."""
        c, sampling = self.config, self.config.sampling.served()
        cap = min(c.max_tokens, max_tokens) if c.max_tokens else max_tokens
        extra: dict[str, Any] = {}
        if c.vllm_extras:
            extra = {
                "top_k": sampling["top_k"], "repetition_penalty": c.repetition_penalty,
                "include_stop_str_in_output": True, "skip_special_tokens": True,
            }
        extra.update(c.extra_body)
        kwargs: dict[str, Any] = {
            "temperature": sampling["temperature"], "top_p": sampling["top_p"], "max_tokens": cap, "stop": list(stop), "seed": seed, "n": 1,
        }
        if extra:
            kwargs["extra_body"] = extra
        return kwargs

    def complete(self, messages: list[dict[str, Any]], kwargs: dict[str, Any], where: str) -> Any:
        """One chat completion with bounded retries (count: ``max_retries``; each wait capped by
        ``backoff_max_s``, or ``retry_after_max_s`` for a ``Retry-After``); ``where`` names the
        request in errors."""
        import openai

        c = self.config
        last: Exception | None = None
        wait_at_least = 0.0
        for attempt in range(c.max_retries + 1):
            if attempt:
                delay = min(c.backoff_max_s, c.backoff_s * 2 ** (attempt - 1))
                with self._lock:
                    self.stats["retries"] += 1
                    delay *= 0.5 + 0.5 * self._rng.random()
                time.sleep(max(delay, min(wait_at_least, c.retry_after_max_s)))
            wait_at_least = 0.0
            try:
                with self._slots:
                    with self._lock:
                        self.stats["requests"] += 1
                    response = self.client.chat.completions.create(model=c.model, messages=messages, **kwargs)
                return check_completion(response)
            except openai.APITimeoutError as exc:
                last, kind = exc, "timeout"
            except openai.APIConnectionError as exc:
                last, kind = exc, "connection"
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRY_STATUSES:
                    self._fail()
                    raise OpenAIPolicyError(
                        f"chat completion rejected by {c.endpoint()} (model {c.model!r}, {where}): "
                        f"HTTP {exc.status_code}: {exc.message}", f"http_{exc.status_code}"
                    ) from exc
                last, kind = exc, f"http_{exc.status_code}"
                wait_at_least = retry_after_s(exc) or 0.0
            except (BadResponseError, json.JSONDecodeError, openai.APIResponseValidationError) as exc:
                last, kind = exc, "bad_response"  # a proxy's error page, a body cut mid-JSON, no choices
        self._fail()
        raise OpenAIPolicyError(
            f"chat completion failed after {c.max_retries + 1} attempts at {c.endpoint()} "
            f"(model {c.model!r}, {where}): {type(last).__name__}: {last}", kind
        ) from last

    def _fail(self) -> None:
        with self._lock:
            self.stats["failures"] += 1


class EpisodePolicy:
    """The policy of one episode: caches each image's URL so re-sent history is byte-identical."""

    def __init__(self, parent: OpenAIChatPolicy, question_id: str, sample: int) -> None:
        self.parent, self.question_id, self.sample = parent, question_id, sample
        self._urls: dict[int, tuple[Image.Image, str]] = {}  # id(image) -> (image kept alive, url)

    def image_url(self, image: Image.Image) -> str:
        hit = self._urls.get(id(image))
        if hit is not None and hit[0] is image:
            return hit[1]
        c = self.parent.config
        if c.image_transport == "data_url":
            url = png_data_url(image, c.png_compress_level)
        else:
            url = _file_url(image, Path(c.media_root or ""), c.png_compress_level)
        self._urls[id(image)] = (image, url)
        return url

    def messages(self, request: PolicyRequest) -> list[dict[str, Any]]:
        """The chat messages of this turn: system/assistant as strings, user parts as a list."""
        images = request.trajectory.images
        out: list[dict[str, Any]] = []
        for message in request.trajectory.to_chat_messages():
            parts = message["content"]
            if message["role"] in ("system", "assistant"):
                out.append({"role": message["role"], "content": "".join(p["text"] for p in parts)})
                continue
            content = [
                {"type": "image_url", "image_url": {"url": self.image_url(images[p["image"]])}}
                if p["type"] == "image" else p
                for p in parts
            ]
            out.append({"role": message["role"], "content": content})
        return out

    def __call__(self, request: PolicyRequest) -> PolicyOutput:
        parent = self.parent
        seed = request_seed(parent.config.seed, self.question_id, self.sample, request.turn)
        kwargs = parent.sampling_kwargs(request.max_tokens, tuple(request.stop), seed)
        where = f"question {self.question_id!r} sample {self.sample} turn {request.turn}"
        response = parent.complete(self.messages(request), kwargs, where)
        choice = response.choices[0]
        text = choice.message.content or ""
        finish = "length" if choice.finish_reason == "length" else "stop"
        usage = getattr(response, "usage", None)
        tokens = getattr(usage, "completion_tokens", None) if usage is not None else None
        text, tokens, cut = bound_reply(text, tokens, kwargs["max_tokens"])
        if cut:
            finish = "length"
        if finish == "stop":
            extra = choice.model_extra or {}
            stop_reason = extra.get("stop_reason", _ABSENT)
            if stop_reason is _ABSENT or stop_reason in request.stop:
                text = close_open_grounding(text, tuple(request.stop))
        if tokens is not None:
            with parent._lock:
                parent.stats["completion_tokens"] += tokens
        return PolicyOutput(text=text, finish_reason=finish, num_tokens=tokens)


_ABSENT = object()


def bound_reply(text: str, tokens: int | None, max_tokens: int) -> tuple[str, int | None, bool]:
    """(text, tokens, cut) of a reply held to ``max_tokens``: a reply the server let run past the
    budget keeps the share of its characters the budget allows (``tokens`` reported) or
    ``MAX_CHARS_PER_TOKEN`` characters a token (no usage), and counts ``max_tokens``."""
    if tokens is not None and tokens > max_tokens:
        keep = max(1, len(text) * max_tokens // tokens)
        return text[:keep], max_tokens, True
    if tokens is None and len(text) > max_tokens * MAX_CHARS_PER_TOKEN:
        return text[: max_tokens * MAX_CHARS_PER_TOKEN], max_tokens, True
    return text, tokens, False


def _file_url(image: Image.Image, root: Path, compress_level: int) -> str:
    """Write ``image`` once (content-addressed) under ``root/.mini_o3_media`` and return its file URL."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=compress_level)
    data = buf.getvalue()
    media = root.resolve() / ".mini_o3_media"
    path = media / f"{hashlib.sha256(data).hexdigest()}.png"
    if not path.exists():
        media.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return path.as_uri()
