"""The LLM-judge client of the evaluator and both RL engines (reference ``general_qa_tool.py``
call and retry policy; settings: ``JudgeConfig``).

Prompts and the reply parser are ``mini_o3.task.judge``. Per call: temperature
``min(0.2 * attempt, 1.0)``, ``max_tokens=16384``, ``timeout=120``, 5 attempts; a rate-limit
error sleeps and retries WITHOUT counting an attempt (bounded by ``max_rate_limit_waits``).
A final failure is ``JudgeResult(failed=True, score=None)`` with its reason in ``error``, never a
silent 0: the runner decides (score 0 like the seed's validation, or exclude) and re-judges failed
verdicts on the next run. A ``Retry-After`` header (429 or 5xx) sets the wait, capped by
``retry_after_max_s``; a response that is not a chat completion (a proxy's HTML page, truncated
JSON, no choices) is a counted, retried failure naming the endpoint. Results are cached persistently
(sqlite) by (prompt version, judge model, question, ground truth, prediction): the prediction as
sent, so a cached verdict always answers the same prompt bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mini_o3.redact import redact_text
from mini_o3.task.judge import judge_request, parse_judge_reply

from .config import JudgeConfig


class JudgeError(RuntimeError):
    """The judge cannot be configured (missing environment variables, bad cache file)."""


@dataclass(frozen=True)
class JudgeResult:
    """``score`` is 1.0 / 0.0, or None when ``failed``; ``attempts`` counts the counted ones."""

    score: float | None
    failed: bool
    attempts: int
    cached: bool
    reply: str = ""
    error: str | None = None


def missing_credentials(config: JudgeConfig) -> list[str]:
    """The environment variables ``config`` needs but that are not set (``[]``: ready to call).

    azure: ``END_POINT`` (unless ``base_url``), ``API_VERSION``, ``API_KEY``; openai:
    ``OPENAI_API_KEY`` unless an endpoint is given (``base_url`` or ``OPENAI_BASE_URL``: a
    keyless OpenAI-compatible server).
    """
    if config.flavour() == "azure":
        names = ([] if config.base_url else [config.azure_endpoint_env]) + [config.api_version_env, config.azure_key_env]
        return [n for n in names if not os.environ.get(n)]
    if os.environ.get(config.openai_key_env) or config.base_url or os.environ.get(config.openai_base_url_env):
        return []
    return [config.openai_key_env]


def judge_setup_error(config: JudgeConfig) -> str | None:
    """One line saying why the paper protocol's judge cannot run here, or ``None`` when it can."""
    missing = missing_credentials(config)
    if not missing:
        return None
    where = (f"the azure judge (judge.api={config.api}) needs environment variable(s) {', '.join(missing)}"
             if config.flavour() == "azure" else
             f"the openai judge (judge.api={config.api}) needs environment variable {missing[0]} "
             f"or an endpoint (judge.base_url / --judge-base-url)")
    return (f"protocol 'paper' scores every sample with the LLM judge {config.model!r}, but {where}; "
            "set it, or choose rule-only scoring with --protocol rule (--set protocol=rule), "
            "whose numbers are not comparable to the paper's")


def make_judge_client(config: JudgeConfig) -> Any:
    """The ``openai`` client of ``config`` (no built-in retries)."""
    import openai

    missing = missing_credentials(config)
    if missing:
        raise JudgeError(f"{config.flavour()} judge: environment variable(s) {missing} not set")
    if config.flavour() == "azure":
        return openai.AzureOpenAI(
            azure_endpoint=config.base_url or os.environ[config.azure_endpoint_env],
            api_version=os.environ[config.api_version_env], api_key=os.environ[config.azure_key_env], max_retries=0,
        )
    key = os.environ.get(config.openai_key_env)
    return openai.OpenAI(base_url=config.endpoint(), api_key=key or "EMPTY", max_retries=0)


class JudgeCache:
    """A thread-safe sqlite map: key → (score, reply). Only successful verdicts are stored."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, score REAL, reply TEXT, meta TEXT)")
            self._db.commit()
        except sqlite3.Error as exc:
            raise JudgeError(f"judge cache {str(self.path)!r}: {exc}") from exc
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[float, str] | None:
        with self._lock:
            row = self._db.execute("SELECT score, reply FROM verdicts WHERE key = ?", (key,)).fetchone()
        return (float(row[0]), str(row[1])) if row else None

    def put(self, key: str, score: float, reply: str, meta: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?)", (key, score, reply, json.dumps(meta)))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Judge:
    """``judge(question, ground_truth, prediction) -> JudgeResult``; thread-safe, bounded."""

    def __init__(self, config: JudgeConfig | None = None, client: Any = None) -> None:
        config = config or JudgeConfig()
        self.config = config
        self._client = client
        self.cache = JudgeCache(config.cache_path) if config.cache_path else None
        self._slots = threading.BoundedSemaphore(config.concurrency)
        self._lock = threading.Lock()
        self.stats = {"calls": 0, "cache_hits": 0, "requests": 0, "rate_limited": 0, "failures": 0}

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = make_judge_client(self.config)
            return self._client

    def cache_key(self, question: str, ground_truth: str, prediction: str) -> str:
        c = self.config
        fields = [c.prompt_version, c.model, question, ground_truth, prediction]
        return hashlib.sha256(json.dumps(fields, ensure_ascii=False).encode()).hexdigest()

    def __call__(self, question: str, ground_truth: str, prediction: str | None) -> JudgeResult:
        return self.judge(question, ground_truth, prediction)

    def judge(self, question: str, ground_truth: str, prediction: str | None) -> JudgeResult:
        """Score ``prediction`` (the extracted answer, sent as given: upstream formats the unstripped
        strict match into the prompt). ``None`` (no answer block) scores 0 without a call."""
        self._count("calls")
        if prediction is None:
            return JudgeResult(0.0, False, 0, False, "", "no answer")
        key = self.cache_key(question, ground_truth, prediction)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self._count("cache_hits")
                return JudgeResult(hit[0], False, 0, True, hit[1])
        result = self._call(question, ground_truth, prediction)
        if result.failed:
            self._count("failures")
        elif self.cache is not None and result.score is not None:
            meta = {"model": self.config.model, "prompt_version": self.config.prompt_version}
            self.cache.put(key, result.score, result.reply, meta)
        return result

    def _call(self, question: str, ground_truth: str, prediction: str) -> JudgeResult:
        import openai

        from mini_o3.rollout.openai_policy import BadResponseError, check_completion, retry_after_s

        c = self.config
        messages = judge_request(question, ground_truth, prediction).messages()
        attempt, waits, reply, error = 0, 0, "", None
        while attempt < c.max_attempts:
            try:
                with self._slots:
                    self._count("requests")
                    response = self.client.chat.completions.create(
                        model=c.model, messages=messages, temperature=min(c.temperature_step * attempt, 1.0),
                        max_tokens=c.max_tokens, timeout=c.timeout_s,
                    )
                check_completion(response)
            except openai.RateLimitError as exc:
                self._count("rate_limited")
                waits += 1
                error = f"rate limited: {exc}"
                if waits > c.max_rate_limit_waits:
                    break
                time.sleep(max(c.rate_limit_sleep_s, min(retry_after_s(exc) or 0.0, c.retry_after_max_s)))
                continue
            except (openai.OpenAIError, BadResponseError, json.JSONDecodeError) as exc:
                attempt += 1
                what = "bad response" if isinstance(exc, (BadResponseError, json.JSONDecodeError)) else type(exc).__name__
                error = f"{what}: {exc}"
                time.sleep(max(c.retry_sleep_s, min(retry_after_s(exc) or 0.0, c.retry_after_max_s)))
                continue
            attempt += 1
            reply = response.choices[0].message.content or ""
            score = parse_judge_reply(reply)
            if score is not None:
                return JudgeResult(score, False, attempt, False, reply)
            error = f"unparsable judge reply: {reply[:200]!r}"
            time.sleep(c.retry_sleep_s)
        return JudgeResult(None, True, attempt, False, reply,
                           redact_text(f"judge {c.model!r} at {c.endpoint()}: {error} (after {attempt} attempts)"))

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()
        if self._client is not None:
            self._client.close()
