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
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Union

from mini_o3.data.bench import BenchRecord, read_records
from mini_o3.overrides import apply_overrides
from mini_o3.task import EpisodeSample, Policy, Trajectory, run_episode
from mini_o3.task.scoring import (
    mme_realworld_letter,
    normalize_free_form,
    option_letter,
)

from .config import EvalConfig
from .serve import ServeError
from .store import SampleStore


class EpisodePolicy(Protocol):
    """One ``run_episode`` policy per (question, sample); must be safe to use from many threads."""

    def for_episode(self, question_id: str, sample: int) -> Policy: ...


class BatchPolicy(Protocol):
    """Rolls out many episodes at once (local batched generation)."""

    def rollout_batch(self, samples: Sequence[EpisodeSample], seed: int) -> list[Trajectory]: ...


#: ``judge(question, ground_truth, prediction)`` → an object with ``score`` (float | None),
#: ``failed``, ``attempts``, ``cached`` and ``reply`` (``evaluate.judge.JudgeResult``).
JudgeFn = Callable[[str, str, str], Any]
PolicySpec = Union[str, EpisodePolicy, BatchPolicy]


#: Policy spec kinds: ``openai:URL[#model]``, ``vllm:MODEL``, ``local:DIR``.
POLICY_KINDS = ("openai", "vllm", "local")


class EvalError(RuntimeError):
    """An evaluation input or run failed; the message names the input or the sample."""


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

    def avg_at_k(self, benchmark: str) -> float:
        return self.report["benchmarks"][benchmark]["overall"]["avg_at_k"]


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
        from .local_policy import LocalHFPolicy

        try:
            policy = LocalHFPolicy(Path(target), config)
        except ValueError as exc:
            raise EvalError(str(exc)) from exc
        return policy.spec, policy
    if kind == "openai":
        return spec, openai_policy(target, config)
    if kind == "vllm":
        from pydantic import ValidationError

        from .vllm_policy import VLLMPolicy

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
        raise EvalError(f"policy spec {spec!r} must be 'openai:URL[#model]', 'vllm:MODEL' or 'local:DIR'")
    if kind not in POLICY_KINDS:
        raise EvalError(f"policy spec {spec!r}: unknown kind {kind!r}; expected 'openai', 'vllm' or 'local'")
    return kind, target


def openai_policy(target: str, config: EvalConfig) -> EpisodePolicy:
    """``OpenAIChatPolicy`` for ``URL[#model]`` with the config's sampling, seed and concurrency."""
    from pydantic import ValidationError

    from .openai_policy import OpenAIChatPolicy, OpenAIPolicyConfig

    url, _, model = target.partition("#")
    if not url.startswith(("http://", "https://")):
        raise EvalError(f"policy spec 'openai:{target}': the URL must start with http:// or https://")
    fields: dict[str, Any] = dict(
        base_url=url, temperature=config.temperature if config.do_sample else 0.0,
        top_p=config.top_p if config.do_sample else 1.0, top_k=config.top_k if config.do_sample else -1,
        seed=config.seed, concurrency=config.concurrency,
    )
    if model:
        fields["model"] = model
    try:
        return OpenAIChatPolicy(OpenAIPolicyConfig(**{**fields, **config.openai}))
    except ValidationError as exc:
        raise EvalError(f"policy spec 'openai:{target}': {exc}") from exc


def build_judge(config: EvalConfig) -> JudgeFn | None:
    """The LLM judge of ``protocol=paper`` (``evaluate.judge.Judge``), or ``None`` under ``rule``.

    Missing judge credentials fail here, in one line naming the setting and the rule-only choice.
    """
    if config.protocol == "rule":
        return None
    from .judge import Judge, judge_setup_error

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
    excluded (``judge_failure``). ``rule_score`` is always recorded for comparison.
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
        "trajectory": traj.summary(),
    }


# -- the run ---------------------------------------------------------------------------------


def episode_seed(base: int, question_id: str, sample: int) -> int:
    digest = hashlib.sha256(f"{base}:{question_id}:{sample}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


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
) -> EvalResult:
    """Evaluate ``policy_spec`` on every folder of ``bench_dirs``; outputs go to ``out_dir``.

    Resumable: samples already stored under this config hash are not redone. ``judge`` overrides
    the one ``config.judge`` would build (``protocol=paper`` only; ``rule`` never calls a judge).
    Raises ``EvalError`` naming the bad input or sample.
    """
    from .report import write_report

    config = resolve_config(config, overrides)
    if not bench_dirs:
        raise EvalError("no benchmark folders given")
    questions = [q for d in bench_dirs for q in load_benchmark(Path(d), config)]
    names = [Path(d).name for d in bench_dirs]
    if len(set(names)) != len(names):
        raise EvalError(f"benchmark folder names must be distinct, got {names}")
    if isinstance(policy_spec, str):
        policy_kind(policy_spec)  # a bad spec is named before the judge is checked
    if config.protocol == "rule":
        judge = None
    elif judge is None:
        judge = build_judge(config)  # missing credentials fail before any model loads
    spec, policy = build_policy(policy_spec, config, gpus=gpus)
    config_hash = config.config_hash(spec)
    out_dir = Path(out_dir)
    store = SampleStore(out_dir, config_hash)
    jobs = [(q, j) for q in questions for j in range(q.k) if (q.benchmark, q.record.id, j) not in store]
    tracker = _Progress(questions, store, len(jobs), progress)
    with ExitStack() as serving, tracker:
        if jobs and hasattr(policy, "__enter__"):
            try:
                policy = serving.enter_context(policy)  # e.g. the vllm: server, started only when needed
            except ServeError as exc:
                raise EvalError(f"policy {spec}: {exc}") from exc
        if hasattr(policy, "rollout_batch"):
            _run_batched(policy, jobs, store, judge, config, tracker)  # type: ignore[arg-type]
        else:
            _run_threaded(policy, jobs, store, judge, config, tracker)  # type: ignore[arg-type]
    report, files = write_report(questions, store, config, spec, out_dir)
    return EvalResult(out_dir, config_hash, report, files, new_samples=len(jobs))


def _episode_sample(question: Question, sample: int) -> EpisodeSample:
    return EpisodeSample(question.record.problem, question.image, f"{question.record.id}#{sample}")


def _finish(question: Question, sample: int, traj: Trajectory, seconds: float, store: SampleStore,
            judge: JudgeFn | None, config: EvalConfig, tracker: _Progress) -> None:
    scored = score_sample(question.record, traj.answer, judge, config)
    store.append(sample_record(question, sample, traj, scored, seconds))
    tracker.advance(question.benchmark, scored["score"])


def _run_threaded(policy: EpisodePolicy, jobs: list[tuple[Question, int]], store: SampleStore,
                  judge: JudgeFn | None, config: EvalConfig, tracker: _Progress) -> None:
    """One thread per episode, ``concurrency`` at once, in question-major order."""
    limits = config.limits()
    stop = threading.Event()

    def work(question: Question, sample: int) -> None:
        if stop.is_set():
            return
        start = time.perf_counter()
        try:
            episode_policy = policy.for_episode(question.record.id, sample)
            traj = run_episode(episode_policy, _episode_sample(question, sample), limits,
                               prompt_set=config.prompt_set, parser=config.parser)
        except Exception as exc:
            stop.set()
            raise EvalError(f"{question.benchmark}: question {question.record.id!r} sample {sample}: {exc}") from exc
        _finish(question, sample, traj, time.perf_counter() - start, store, judge, config, tracker)

    with ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="eval") as pool:
        futures: list[Future] = [pool.submit(work, q, j) for q, j in jobs]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]


def _run_batched(policy: BatchPolicy, jobs: list[tuple[Question, int]], store: SampleStore,
                 judge: JudgeFn | None, config: EvalConfig, tracker: _Progress) -> None:
    """Batches of ``concurrency`` episodes (a question's samples stay together)."""
    for start in range(0, len(jobs), config.concurrency):
        batch = jobs[start:start + config.concurrency]
        first, sample = batch[0]
        began = time.perf_counter()
        try:
            trajs = policy.rollout_batch([_episode_sample(q, j) for q, j in batch],
                                         episode_seed(config.seed, first.record.id, sample))
        except Exception as exc:
            ids = sorted({q.record.id for q, _ in batch})
            raise EvalError(f"{first.benchmark}: batch of questions {ids}: {exc}") from exc
        seconds = (time.perf_counter() - began) / len(batch)
        for (question, j), traj in zip(batch, trajs, strict=True):
            _finish(question, j, traj, seconds, store, judge, config, tracker)


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
            if key in keys and record.get("score") is not None:
                bucket = self.sums[record["benchmark"]]
                bucket[0] += record["score"]
                bucket[1] += 1
        self.done = {b: 0 for b in self.totals}
        for b, _, _ in (k for k in keys if k in store):
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
