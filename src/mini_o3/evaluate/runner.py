"""``run_eval``: k samples per question on each benchmark folder, scored, stored, reported.

Flow: read ``val.parquet`` (or ``train.parquet``) of every folder → skip (question, sample) keys
already in the store → roll out the rest (a question's samples are scheduled together so a
server's prefix cache is hit) → score each trajectory under ``config.protocol`` (``paper``: the
LLM judge on every extracted answer, as upstream's validation; ``rule``: rule scorers only) →
append to the store → compute metrics → write the report files.

Policies: ``"openai:URL[#model]"`` (``OpenAIChatPolicy``), ``"vllm:MODEL"`` (``VLLMPolicy``: MODEL
served for the run), ``"local:DIR"`` (``LocalHFPolicy``), or an object with
``for_episode(question_id, sample) -> Policy`` (one episode per thread) or
``rollout_batch(samples, seed) -> list[Trajectory]`` (batched); give it a ``spec`` string, which
enters the config hash (``vllm:`` and ``local:`` specs name the model: ``model_identity``). A policy
that is a context manager is entered around the rollouts (only when there is something to roll out).

Faults: a sample whose rollout fails for good (an HTTP 4xx such as a context-length rejection, a
corrupt image, a malformed reply after retries, any exception of its episode) is stored with its
error (``error``: class, type, message) and scored per ``sample_error``; the run goes on and writes
its report. After ``max_consecutive_errors`` errors in a row no new sample starts (a dead endpoint;
``EvalResult.stopped``). A re-run retries errored samples and re-judges failed judge verdicts of
the stored answers, keeping every good sample. ``EvalResult.failure()`` says when the errors are
above ``max_error_rate``. KeyboardInterrupt / SystemExit stop the run at once (no new sample).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Union

from mini_o3.data.bench import BenchRecord, read_records
from mini_o3.overrides import apply_overrides, describe_errors
from mini_o3.redact import redact_text
from mini_o3.task import EpisodeSample, Policy, Trajectory, run_episode
from mini_o3.task.scoring import (
    mme_realworld_letter,
    normalize_free_form,
    option_letter,
)

from .config import EvalConfig
from mini_o3.rollout.serve import ServeError
from .store import SampleStore


class EpisodePolicy(Protocol):
    """One ``run_episode`` policy per (question, sample); must be safe to use from many threads."""

    def for_episode(self, question_id: str, sample: int) -> Policy: ...


class BatchPolicy(Protocol):
    """Rolls out many episodes at once (local batched generation). ``seed`` is the run's base seed
    (``EvalConfig.seed``): each episode's draws derive from it and the episode's sample id, so they
    do not depend on how the samples were batched."""

    def rollout_batch(self, samples: Sequence[EpisodeSample], seed: int) -> list[Trajectory]: ...


#: ``judge(question, ground_truth, prediction)`` → an object with ``score`` (float | None),
#: ``failed``, ``attempts``, ``cached`` and ``reply`` (``judge.client.JudgeResult``).
JudgeFn = Callable[[str, str, str], Any]
PolicySpec = Union[str, EpisodePolicy, BatchPolicy]


#: Policy spec kinds: ``openai:URL[#model]``, ``vllm:MODEL``, ``local:DIR``.
POLICY_KINDS = ("openai", "vllm", "local")
#: How each kind is written (in every policy-spec error).
POLICY_FORMS = "'openai:URL[#model]', 'vllm:MODEL' or 'local:DIR'"
#: Longest error message stored with a sample.
MAX_ERROR_CHARS = 2000
#: Longest turn text stored with a sample (longer ones keep their head and ``output_chars``).
MAX_STORED_TURN_CHARS = 65536


class EvalError(RuntimeError):
    """An evaluation input or run failed; the message names the input or the sample (credentials
    redacted: a policy URL's password, secret ``key=value`` pairs)."""

    def __init__(self, message: str) -> None:
        super().__init__(redact_text(str(message)))


@dataclass(frozen=True)
class Question:
    """One benchmark item to evaluate ``k`` times."""

    benchmark: str
    record: BenchRecord
    image: Path
    k: int


@dataclass
class EvalResult:
    """What ``run_eval`` produced: the report dict and the files written."""

    out_dir: Path
    config_hash: str
    report: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)
    new_samples: int = 0
    rejudged: int = 0
    stopped: str | None = None

    def avg_at_k(self, benchmark: str) -> float:
        return self.report["benchmarks"][benchmark]["overall"]["avg_at_k"]

    @property
    def errors(self) -> dict[str, Any]:
        """The report's ``errors`` block (count, rate, by class, examples)."""
        return self.report["errors"]

    @property
    def judge_failures(self) -> int:
        return int(self.report["protocol"].get("judge_failures", 0))

    def failure(self) -> str | None:
        """Why this run should exit non-zero: it stopped early, or its error rate is above
        ``max_error_rate``; ``None`` when it is fine."""
        e = self.errors
        if self.stopped:
            return f"evaluation stopped early: {self.stopped}; the report covers the samples done, re-run to go on"
        if e["count"] and e["rate"] > e["max_error_rate"]:
            classes = ", ".join(f"{name} {n}" for name, n in e["by_class"].items())
            return (f"{e['count']} of {e['samples']} samples errored ({100 * e['rate']:.1f}% > max_error_rate "
                    f"{100 * e['max_error_rate']:g}%: {classes}); re-run the same command to retry them, or raise "
                    "--set max_error_rate=...")
        return None


# -- inputs ----------------------------------------------------------------------------------


def load_benchmark(bench_dir: Path, config: EvalConfig) -> list[Question]:
    """The questions of one prepared benchmark folder (``BASE_IMAGE_DIR`` = its parent)."""
    bench_dir = Path(bench_dir)
    split = next((bench_dir / f for f in ("val.parquet", "train.parquet") if (bench_dir / f).is_file()), None)
    if split is None:
        raise EvalError(f"benchmark folder {bench_dir}: no val.parquet or train.parquet")
    try:
        records = read_records(split)
    except (ValueError, OSError) as exc:
        raise EvalError(f"benchmark {split}: {exc}") from exc
    if config.limit is not None:
        records = records[: config.limit]
    seen: set[str] = set()
    questions = []
    for record in records:
        if record.id in seen:
            raise EvalError(f"benchmark {split}: duplicate question id {record.id!r}")
        seen.add(record.id)
        image = bench_dir.parent / record.images[0]
        if not image.is_file():
            raise EvalError(f"benchmark {split}: image {image} of question {record.id!r} does not exist")
        questions.append(Question(bench_dir.name, record, image, config.k_for(record.data_source)))
    return questions


def resolve_config(config: EvalConfig | None, overrides: Iterable[str]) -> EvalConfig:
    """``config`` (default ``EvalConfig()``) with ``key=value`` overrides applied."""
    config = config or EvalConfig()
    overrides = list(overrides)
    if overrides:
        try:
            config = apply_overrides(config, overrides, label="eval setting")
        except ValueError as exc:
            raise EvalError(str(exc)) from exc
    try:
        config.limits()
    except ValueError as exc:
        raise EvalError(f"eval config: {exc}") from exc
    return config


def build_policy(spec: PolicySpec, config: EvalConfig, *, gpus: int = 1) -> tuple[str, EpisodePolicy | BatchPolicy]:
    """(hash spec, policy) of a policy spec string or object (``gpus``: the ``vllm:`` server's)."""
    if not isinstance(spec, str):
        if not hasattr(spec, "for_episode") and not hasattr(spec, "rollout_batch"):
            raise EvalError(f"policy {spec!r} has neither for_episode nor rollout_batch")
        return str(getattr(spec, "spec", type(spec).__name__)), spec
    kind, target = policy_kind(spec)
    if kind == "local":
        from mini_o3.rollout.local_policy import LocalHFPolicy

        try:
            policy = LocalHFPolicy(Path(target), config.limits(), config.sampling, prompt_set=config.prompt_set,
                                   parser=config.parser, concurrency=config.concurrency)
        except ValueError as exc:
            raise EvalError(str(exc)) from exc
        return policy.spec, policy
    if kind == "openai":
        return spec, openai_policy(target, config)
    if kind == "vllm":
        from pydantic import ValidationError

        from mini_o3.rollout.vllm_policy import VLLMPolicy

        try:
            vllm = VLLMPolicy(target, config, lambda url: openai_policy(url, config), gpus=gpus, **config.serve)
        except (ValueError, ValidationError) as exc:
            raise EvalError(f"policy spec {spec!r}: {exc}") from exc
        return vllm.spec, vllm
    raise AssertionError(kind)


def policy_kind(spec: str) -> tuple[str, str]:
    """(kind, target) of a policy spec string; a malformed spec or an unknown kind is an ``EvalError``."""
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise EvalError(f"policy spec {spec!r} must be {POLICY_FORMS}")
    if kind not in POLICY_KINDS:
        raise EvalError(f"policy spec {spec!r}: unknown kind {kind!r}; expected {POLICY_FORMS}")
    return kind, target


def openai_policy(target: str, config: EvalConfig) -> EpisodePolicy:
    """``OpenAIChatPolicy`` for ``URL[#model]`` with the config's sampling, seed and concurrency."""
    from pydantic import ValidationError

    from mini_o3.rollout.openai_policy import OpenAIChatPolicy, OpenAIPolicyConfig

    url, _, model = target.partition("#")
    if not url.startswith(("http://", "https://")):
        raise EvalError(f"policy spec 'openai:{target}': the URL must start with http:// or https://")
    fields: dict[str, Any] = dict(
        base_url=url, sampling=config.sampling, seed=config.seed, concurrency=config.concurrency,
    )
    if model:
        fields["model"] = model
    try:
        return OpenAIChatPolicy(OpenAIPolicyConfig(**{**fields, **config.openai}))
    except ValidationError as exc:
        raise EvalError(f"policy spec 'openai:{target}': openai.{describe_errors(exc)}") from exc


def build_judge(config: EvalConfig) -> JudgeFn | None:
    """The LLM judge of ``protocol=paper`` (``judge.client.Judge``), or ``None`` under ``rule``.

    Missing judge credentials fail here, in one line naming the setting and the rule-only choice.
    """
    if config.protocol == "rule":
        return None
    from mini_o3.judge.client import Judge, judge_setup_error

    problem = judge_setup_error(config.judge)
    if problem:
        raise EvalError(problem)
    return Judge(config.judge)


# -- scoring ---------------------------------------------------------------------------------


def answer_key(record: BenchRecord, answer: str | None) -> str | None:
    """The normalised answer maj@k votes on (option letter for mc, normalised text for free)."""
    if answer is None:
        return None
    if record.is_mme:
        return mme_realworld_letter(answer, record.meta["choices"]) or None
    if record.answer_type == "mc":
        return option_letter(answer, record.options) or normalize_free_form(answer) or None
    return normalize_free_form(answer) or None


def score_sample(record: BenchRecord, answer: str | None, judge: JudgeFn | None, config: EvalConfig) -> dict[str, Any]:
    """Score fields of a sample: ``score`` (None = excluded), ``rule_score``, ``judge``, ``judge_failed``.

    ``rule``: ``score`` is the rule score. ``paper`` (Mini-o3/Mini-o3 @8654dbf
    ``verl/utils/reward_score/general_qa_tool.py`` ``inner_acc_reward`` L283-316): no answer block
    scores 0 without a call; otherwise the judge scores the extracted answer exactly as extracted
    (unstripped, empty included), whatever the rule says, multiple choice included; a call that
    fails after its retries scores 0 (upstream leaves the sample's reward at 0 in validation) or is
    excluded (``judge_failure``); its reason is kept in ``judge.error`` and the next run re-judges
    it. ``rule_score`` is always recorded for comparison.
    """
    rule = record.rule_score(answer)
    out: dict[str, Any] = {"score": rule, "rule_score": rule, "judge": None, "judge_failed": False}
    if config.protocol == "rule" or answer is None:
        return out
    if judge is None:
        raise EvalError("protocol 'paper' scores every sample with the LLM judge, but no judge was built")
    result = judge(record.problem, record.answer, answer)
    failed = bool(result.failed) or result.score is None
    out["judge"] = {
        "score": result.score, "failed": failed, "attempts": getattr(result, "attempts", None),
        "cached": getattr(result, "cached", None), "reply": getattr(result, "reply", None),
        "error": redact_text(str(getattr(result, "error", None) or "")) or None if failed else None,
    }
    out["judge_failed"] = failed
    if failed:
        out["score"] = 0.0 if config.judge_failure == "score_zero" else None
    else:
        out["score"] = float(result.score)
    return out


def sample_record(question: Question, sample: int, traj: Trajectory, scored: dict[str, Any], seconds: float) -> dict[str, Any]:
    """The stored record of one scored sample (see ``store``)."""
    record = question.record
    return {
        "benchmark": question.benchmark,
        "question_id": record.id,
        "sample": sample,
        "data_source": record.data_source,
        "category": record.category,
        "ground_truth": record.answer,
        "answer": traj.answer,
        "answer_key": answer_key(record, traj.answer),
        **scored,
        "termination": traj.termination,
        "exceed_reason": traj.exceed_reason,
        "num_turns": traj.num_turns,
        "num_crops": traj.num_crops,
        "tool_calls": sum(1 for t in traj.turns if t.is_tool_turn),
        "generated_tokens": sum(t.tokens for t in traj.turns),
        "context_tokens": traj.context_tokens,
        "seconds": round(seconds, 3),
        "image": str(question.image),
        "trajectory": bounded_summary(traj),
    }


def bounded_summary(traj: Trajectory) -> dict[str, Any]:
    """``traj.summary()`` with every turn text held to ``MAX_STORED_TURN_CHARS`` (its full length in
    ``output_chars``), so a runaway reply never balloons the samples file."""
    summary = traj.summary()
    for turn in summary["turns"]:
        if len(turn["output"]) > MAX_STORED_TURN_CHARS:
            turn["output_chars"] = len(turn["output"])
            turn["output"] = turn["output"][:MAX_STORED_TURN_CHARS]
    return summary


def error_class(exc: BaseException, policy_calls: int) -> str:
    """The class of a sample's failure: the policy client's (``http_400``, ``bad_response``,
    ``connection``, ``timeout``, ...), ``policy`` (another policy exception), ``input`` (before the
    first policy call: a corrupt or unreadable image, a bad problem) or ``episode``."""
    if isinstance(exc, _PolicyFailure):
        return getattr(exc.__cause__, "kind", None) or "policy"
    return "input" if policy_calls == 0 else "episode"


def error_record(question: Question, sample: int, cls: str, exc: BaseException, seconds: float,
                 config: EvalConfig, turns: int = 0) -> dict[str, Any]:
    """The stored record of a sample that failed: its error, scored per ``config.sample_error``."""
    cause = exc.__cause__ if isinstance(exc, _PolicyFailure) and exc.__cause__ is not None else exc
    record = question.record
    return {
        "benchmark": question.benchmark, "question_id": record.id, "sample": sample,
        "data_source": record.data_source, "category": record.category, "ground_truth": record.answer,
        "answer": None, "answer_key": None,
        "score": 0.0 if config.sample_error == "score_zero" else None, "rule_score": None,
        "judge": None, "judge_failed": False,
        "error": {"class": cls, "type": type(cause).__name__,
                  "message": redact_text(str(cause))[:MAX_ERROR_CHARS], "turns_done": turns},
        "termination": "error", "exceed_reason": None, "num_turns": turns, "num_crops": 0, "tool_calls": 0,
        "generated_tokens": 0, "context_tokens": 0, "seconds": round(seconds, 3), "image": str(question.image),
        "trajectory": {"turns": []},
    }


class _PolicyFailure(Exception):
    """An exception raised by the policy inside ``run_episode`` (the cause is the original)."""


class _CountingPolicy:
    """Counts the calls of an episode policy and marks the exceptions it raises."""

    def __init__(self, policy: Policy) -> None:
        self.policy, self.calls = policy, 0

    def __call__(self, request: Any) -> Any:
        self.calls += 1
        try:
            return self.policy(request)
        except Exception as exc:
            raise _PolicyFailure(str(exc)) from exc


class _Breaker:
    """Counts errors in a row; trips (sets ``stop``) after ``limit`` of them."""

    def __init__(self, limit: int) -> None:
        self.limit, self.row, self.reason = limit, 0, None
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def ok(self) -> None:
        with self.lock:
            self.row = 0

    def failed(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.row += 1
            if self.row >= self.limit and not self.stop.is_set():
                e = record["error"]
                self.reason = (f"{self.row} samples in a row failed (max_consecutive_errors {self.limit}); "
                               f"last: {e['class']}: {e['message'][:300]}")
                self.stop.set()


# -- the run ---------------------------------------------------------------------------------


def run_eval(
    policy_spec: PolicySpec,
    bench_dirs: list[Path],
    out_dir: Path,
    config: EvalConfig | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
    *,
    judge: JudgeFn | None = None,
    gpus: int = 1,
    model: dict[str, str] | None = None,
) -> EvalResult:
    """Evaluate ``policy_spec`` on every folder of ``bench_dirs``; outputs go to ``out_dir``.
    ``model``: what a ``models:/`` reference of the spec resolved to, recorded in the report.

    Resumable: samples already stored under this config hash are not redone. ``judge`` overrides
    the one ``config.judge`` would build (``protocol=paper`` only; ``rule`` never calls a judge).
    Raises ``EvalError`` naming the bad input or sample.
    """
    from .report import write_report

    config = resolve_config(config, overrides)
    if isinstance(policy_spec, str):
        policy_kind(policy_spec)  # a bad spec is named before any benchmark is read or the judge checked
    if not bench_dirs:
        raise EvalError("no benchmark folders given")
    questions = [q for d in bench_dirs for q in load_benchmark(Path(d), config)]
    names = [Path(d).name for d in bench_dirs]
    if len(set(names)) != len(names):
        raise EvalError(f"benchmark folder names must be distinct, got {names}")
    if config.protocol == "rule":
        judge = None
    elif judge is None:
        judge = build_judge(config)  # missing credentials fail before any model loads
    spec, policy = build_policy(policy_spec, config, gpus=gpus)
    spec = redact_text(spec)  # credentials in a URL never reach the hash, the report or the console
    config_hash = config.config_hash(spec)
    out_dir = Path(out_dir)
    store = SampleStore(out_dir, config_hash)
    stored = [(q, j, store.get((q.benchmark, q.record.id, j))) for q in questions for j in range(q.k)]
    jobs = [(q, j) for q, j, record in stored if record is None or record.get("error")]
    rejudge = [(q, record) for q, _, record in stored
               if record is not None and judge is not None and record.get("judge_failed") and not record.get("error")]
    if rejudge:
        _rejudge(rejudge, store, judge, config)
    breaker = _Breaker(config.max_consecutive_errors)
    tracker = _Progress(questions, store, len(jobs), progress)
    with ExitStack() as serving, tracker:
        if jobs and hasattr(policy, "__enter__"):
            try:
                policy = serving.enter_context(policy)  # e.g. the vllm: server, started only when needed
            except ServeError as exc:
                raise EvalError(f"policy {spec}: {exc}") from exc
        if hasattr(policy, "rollout_batch"):
            _run_batched(policy, jobs, store, judge, config, tracker, breaker)  # type: ignore[arg-type]
        else:
            _run_threaded(policy, jobs, store, judge, config, tracker, breaker)  # type: ignore[arg-type]
    report, files = write_report(questions, store, config, spec, out_dir, model=model)
    return EvalResult(out_dir, config_hash, report, files, new_samples=len(jobs), rejudged=len(rejudge),
                      stopped=breaker.reason)


def _episode_sample(question: Question, sample: int) -> EpisodeSample:
    return EpisodeSample(question.record.problem, question.image, f"{question.record.id}#{sample}")


def _finish(question: Question, sample: int, traj: Trajectory, seconds: float, store: SampleStore,
            judge: JudgeFn | None, config: EvalConfig, tracker: _Progress, breaker: _Breaker) -> None:
    try:
        scored = score_sample(question.record, traj.answer, judge, config)
    except Exception as exc:  # a judge function that raises instead of returning a failed verdict
        _failed(error_record(question, sample, "scoring", exc, seconds, config, traj.num_turns), store, tracker, breaker)
        return
    store.append(sample_record(question, sample, traj, scored, seconds))
    breaker.ok()
    tracker.advance(question.benchmark, scored["score"])


def _failed(record: dict[str, Any], store: SampleStore, tracker: _Progress, breaker: _Breaker) -> None:
    store.append(record)
    breaker.failed(record)
    tracker.advance(record["benchmark"], record["score"])


def _rejudge(items: list[tuple[Question, dict[str, Any]]], store: SampleStore, judge: JudgeFn, config: EvalConfig) -> None:
    """Judge again the stored answers whose verdict failed; the rollouts are kept."""

    def work(question: Question, record: dict[str, Any]) -> None:
        scored = score_sample(question.record, record["answer"], judge, config)
        store.append({**record, **scored})

    with ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="rejudge") as pool:
        for future in [pool.submit(work, q, r) for q, r in items]:
            future.result()


def _run_threaded(policy: EpisodePolicy, jobs: list[tuple[Question, int]], store: SampleStore,
                  judge: JudgeFn | None, config: EvalConfig, tracker: _Progress, breaker: _Breaker) -> None:
    """One thread per episode, ``concurrency`` at once, in question-major order. A failing sample
    is stored as an error; KeyboardInterrupt / SystemExit cancel every sample not yet started."""
    limits = config.limits()
    stop = breaker.stop

    def work(question: Question, sample: int) -> None:
        if stop.is_set():
            return
        start = time.perf_counter()
        counted: _CountingPolicy | None = None
        try:
            try:
                episode_policy = policy.for_episode(question.record.id, sample)
            except Exception as exc:
                raise _PolicyFailure(str(exc)) from exc
            counted = _CountingPolicy(episode_policy)
            traj = run_episode(counted, _episode_sample(question, sample), limits,
                               prompt_set=config.prompt_set, parser=config.parser)
        except Exception as exc:
            calls = counted.calls if counted is not None else 0
            record = error_record(question, sample, error_class(exc, calls), exc, time.perf_counter() - start,
                                  config, max(0, calls - 1))
            _failed(record, store, tracker, breaker)
            return
        _finish(question, sample, traj, time.perf_counter() - start, store, judge, config, tracker, breaker)

    pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="eval")
    futures: list[Future] = []
    try:
        futures = [pool.submit(work, q, j) for q, j in jobs]
        wait(futures, return_when=FIRST_EXCEPTION)
    except BaseException:
        stop.set()  # Ctrl-C / SIGTERM in the main thread: no new sample starts, in-flight ones are
        pool.shutdown(wait=False, cancel_futures=True)  # not waited for (the store keeps what is done)
        raise
    for future in futures:
        future.cancel()
    pool.shutdown(wait=True, cancel_futures=True)
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]  # a BaseException of a worker


def _run_batched(policy: BatchPolicy, jobs: list[tuple[Question, int]], store: SampleStore,
                 judge: JudgeFn | None, config: EvalConfig, tracker: _Progress, breaker: _Breaker) -> None:
    """Batches of ``concurrency`` episodes (a question's samples stay together). A failing batch
    is rolled out again one sample at a time, so only the bad samples are stored as errors."""
    for start in range(0, len(jobs), config.concurrency):
        if breaker.stop.is_set():
            return
        batch = jobs[start:start + config.concurrency]
        first, sample = batch[0]
        began = time.perf_counter()
        try:
            trajs = policy.rollout_batch([_episode_sample(q, j) for q, j in batch], config.seed)
        except Exception as exc:
            if len(batch) == 1:
                record = error_record(first, sample, "rollout", exc, time.perf_counter() - began, config)
                _failed(record, store, tracker, breaker)
                continue
            for one in batch:
                _run_batched(policy, [one], store, judge, _one_at_a_time(config), tracker, breaker)
            continue
        seconds = (time.perf_counter() - began) / len(batch)
        for (question, j), traj in zip(batch, trajs, strict=True):
            _finish(question, j, traj, seconds, store, judge, config, tracker, breaker)


def _one_at_a_time(config: EvalConfig) -> EvalConfig:
    return config.model_copy(update={"concurrency": 1})


class _Progress:
    """A rich bar per benchmark showing the running Avg@k (mean score of the samples so far)."""

    def __init__(self, questions: list[Question], store: SampleStore, todo: int, enabled: bool) -> None:
        self.enabled = enabled and todo > 0
        self.lock = threading.Lock()
        self.sums: dict[str, list[float]] = {}
        self.totals: dict[str, int] = {}
        keys = {(q.benchmark, q.record.id, j) for q in questions for j in range(q.k)}
        for q in questions:
            self.totals[q.benchmark] = self.totals.get(q.benchmark, 0) + q.k
            self.sums.setdefault(q.benchmark, [0.0, 0])
        for record in store.records():
            key = (record["benchmark"], record["question_id"], record["sample"])
            if key in keys and record.get("score") is not None and not record.get("error"):
                bucket = self.sums[record["benchmark"]]
                bucket[0] += record["score"]
                bucket[1] += 1
        self.done = {b: 0 for b in self.totals}
        for b, _, _ in (k for k in keys if k in store and not store.get(k).get("error")):
            self.done[b] += 1
        self.progress = None
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("Avg@k {task.fields[avg]}"), TimeRemainingColumn(),
            )
            self.progress.__enter__()
            for bench, total in self.totals.items():
                self.tasks[bench] = self.progress.add_task(bench, total=total, completed=self.done[bench], avg=self._avg(bench))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def _avg(self, bench: str) -> str:
        total, n = self.sums[bench]
        return f"{total / n:.3f}" if n else "-"

    def advance(self, bench: str, score: float | None) -> None:
        with self.lock:
            if score is not None:
                self.sums[bench][0] += score
                self.sums[bench][1] += 1
            if self.progress is not None:
                self.progress.update(self.tasks[bench], advance=1, avg=self._avg(bench))
