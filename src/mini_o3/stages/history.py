"""Evaluation history of one target (a registered model name, an endpoint or a model URI): one
MLflow experiment per target, ``mini-o3-history/<target>``, one FINISHED run per evaluation with
per-benchmark Avg@k and its CI under stable metric keys (``avg_at_k/<bench>``, ``ci95_low/<bench>``,
``ci95_high/<bench>``, ``se/<bench>``), tagged with the resolved version, digests, config hash
and the sealed evaluation folder (``mini_o3.eval_uri``, read back for paired comparisons).

``plan_eval`` decides whether a scheduled run has anything to do: the same model digest,
benchmark digest and eval-config hash as a finished earlier run → reuse that run's evaluation
(no evaluation task, so no GPU pod); ``force`` or an ``openai:`` endpoint always evaluate.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mini_o3 import tracking
from mini_o3.redact import redact_text
from mini_o3.registry import CHAMPION, ResolvedModel, alias_version

EXPERIMENT_PREFIX = "mini-o3-history/"
TAG_KIND = "mini_o3.history"  # "evaluation"
TAG_TARGET = "mini_o3.target"
TAG_MODEL_NAME = "mini_o3.model.name"
TAG_MODEL_VERSION = "mini_o3.model.version"
TAG_MODEL_ALIAS = "mini_o3.model.alias"
TAG_MODEL_URI = "mini_o3.model.uri"
TAG_MODEL_DIGEST = "mini_o3.model.digest"
TAG_BENCH_DIGEST = "mini_o3.bench.digest"
TAG_CONFIG_HASH = "mini_o3.eval.config_hash"
TAG_EVAL_URI = "mini_o3.eval_uri"
TAG_KFP_RUN = tracking.TAG_KFP_RUN
#: Stable per-benchmark metric keys of a history run.
METRICS = ("avg_at_k", "ci95_low", "ci95_high", "se")


@dataclass
class EvalPlan:
    """What a scheduled evaluation will do (``reuse_eval_uri`` set: nothing, it reuses that run)."""

    target: str
    experiment: str
    model: dict[str, str]
    backend: str
    bench_digest: str
    bench_digests: dict[str, str]
    config_hash: str
    tracking_uri: str | None = None
    kfp_run_id: str = ""
    force: bool = False
    reuse_eval_uri: str = ""
    reused_from: str = ""  # KFP run id of the reused evaluation
    reused_time: str = ""
    reason: str = ""
    trend_runs: int = 10
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EvalPlan:
        return cls(**json.loads(text))


def target_of(model: ResolvedModel, backend: str) -> str:
    """The target a history follows: the endpoint of an ``openai:`` backend, else the registered
    model name, else the model URI."""
    if backend.startswith("openai:"):
        return "endpoint " + redact_text(backend[len("openai:"):])
    return model.name or model.uri


def experiment_name(target: str) -> str:
    return EXPERIMENT_PREFIX + target


def bench_digests(bench_uri: str) -> dict[str, str]:
    """benchmark → 16 hex over its files (from the collection's completion marker): a folder with
    ``val.parquet`` is one benchmark, a collection (``prepare_bench`` output) one per subfolder.
    The collection's own ``stage.json`` (it names the run) is left out."""
    from mini_o3 import storage

    files = storage.read_manifest(bench_uri).files
    groups: dict[str, list[str]] = {}
    flat = any(r["path"] == "val.parquet" for r in files)
    for r in files:
        head, sep, rest = r["path"].partition("/")
        if flat:
            name, rel = bench_uri.rstrip("/").rsplit("/", 1)[-1], r["path"]
        elif sep:
            name, rel = head, rest
        else:
            continue  # top-level files of a collection (stage.json)
        if rel == "stage.json":
            continue
        groups.setdefault(name, []).append(f"{rel}\0{r['size']}\0{r['sha256']}")
    return {name: hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16]
            for name, lines in sorted(groups.items())}


def combined_digest(digests: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(sorted(digests.items()))).encode()).hexdigest()[:16]


#: EvalConfig run controls that change the numbers (``config_hash`` leaves them out: the sample
#: store keys samples by index, so more samples extend a store).
RESULT_CONTROLS = ("k", "k_by_family", "default_k", "limit", "sample_error")


def eval_config_hash(backend: str, config: Any) -> str:
    """The evaluation settings' fingerprint without the model: ``EvalConfig.config_hash`` of the
    backend kind (the endpoint for ``openai:``, whose spec is the model) plus ``RESULT_CONTROLS``."""
    kind = backend if backend.startswith("openai:") else backend.split(":", 1)[0]
    controls = config.model_dump(mode="json", include=set(RESULT_CONTROLS))
    blob = json.dumps({"config": config.config_hash(redact_text(kind)), "controls": controls}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _experiment_id(client: Any, name: str, create: bool) -> str | None:
    found = client.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage != "deleted":
        return found.experiment_id
    return tracking._experiment_id(client, name) if create else None


def history_runs(tracking_uri: str, target: str, *, max_results: int = 10,
                 filters: Mapping[str, str] | None = None) -> list[Any]:
    """FINISHED evaluation runs of ``target``, newest first, whose tags equal ``filters``."""
    client = tracking.client(tracking_uri)
    experiment_id = _experiment_id(client, experiment_name(target), create=False)
    if experiment_id is None:
        return []
    clauses = [f"tags.`{TAG_KIND}` = 'evaluation'", "attributes.status = 'FINISHED'"]
    clauses += [f"tags.`{k}` = '{_quote(v)}'" for k, v in (filters or {}).items()]
    return client.search_runs([experiment_id], filter_string=" and ".join(clauses), max_results=max_results,
                              order_by=["attributes.start_time DESC"])


def plan_eval(*, model: ResolvedModel, backend: str, bench_uri: str, config: Any, tracking_uri: str | None,
              force: bool = False, kfp_run_id: str = "", trend_runs: int = 10) -> EvalPlan:
    """The plan of one scheduled evaluation (see the module docstring)."""
    digests = bench_digests(bench_uri)
    target = target_of(model, backend)
    plan = EvalPlan(target=target, experiment=experiment_name(target), model=model.to_dict(), backend=redact_text(backend),
                    bench_digest=combined_digest(digests), bench_digests=digests,
                    config_hash=eval_config_hash(backend, config), tracking_uri=tracking_uri, kfp_run_id=kfp_run_id,
                    force=force, trend_runs=trend_runs)
    if tracking_uri is None:
        plan.reason = "tracking is off: no history to compare with"
    elif backend.startswith("openai:"):
        plan.reason = "an openai: endpoint is always evaluated (its weights are not ours to hash)"
    elif not model.digest:
        plan.reason = "the model has no digest (a hub id): always evaluated"
    else:
        same = history_runs(tracking_uri, target, max_results=1, filters={
            TAG_MODEL_DIGEST: model.digest, TAG_BENCH_DIGEST: plan.bench_digest, TAG_CONFIG_HASH: plan.config_hash})
        if not same:
            plan.reason = "no finished evaluation with this model, these benchmarks and this eval config"
        elif force:
            plan.reason = f"unchanged since run {same[0].data.tags.get(TAG_KFP_RUN, same[0].info.run_id)}, evaluated anyway (force=true)"
        else:
            earlier = same[0]
            plan.reuse_eval_uri = earlier.data.tags[TAG_EVAL_URI]
            plan.reused_from = earlier.data.tags.get(TAG_KFP_RUN, earlier.info.run_id)
            plan.reused_time = _when(earlier.info.start_time)
            plan.reason = f"unchanged since run {plan.reused_from}"
    return plan


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime((ms or 0) / 1000))


def summary_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """The stable per-benchmark metrics of an evaluation's report.json."""
    out: dict[str, float] = {}
    for bench, data in report["benchmarks"].items():
        overall = data["overall"]
        ci = overall.get("ci95") or [None, None]
        for key, value in zip(METRICS, (overall.get("avg_at_k"), ci[0], ci[1], overall.get("se")), strict=True):
            if isinstance(value, (int, float)):
                out[f"{key}/{bench}"] = float(value)
    return out


def log_evaluation(plan: EvalPlan, report: Mapping[str, Any], eval_uri: str) -> str | None:
    """One FINISHED run in the target's experiment for this evaluation; returns its run id."""
    if plan.tracking_uri is None:
        return None
    client = tracking.client(plan.tracking_uri)
    experiment_id = _experiment_id(client, plan.experiment, create=True)
    model = plan.model
    label = f"v{model['version']}" if model.get("version") else (model.get("digest") or "model")[:8]
    run = client.create_run(experiment_id, run_name=f"{label}-{(plan.kfp_run_id or 'run')[:8]}", tags={
        TAG_KIND: "evaluation", TAG_TARGET: plan.target, TAG_MODEL_NAME: model.get("name", ""),
        TAG_MODEL_VERSION: model.get("version", ""), TAG_MODEL_ALIAS: model.get("alias", ""),
        TAG_MODEL_URI: model.get("uri", ""), TAG_MODEL_DIGEST: model.get("digest", ""),
        TAG_BENCH_DIGEST: plan.bench_digest, TAG_CONFIG_HASH: plan.config_hash, TAG_EVAL_URI: eval_uri,
        TAG_KFP_RUN: plan.kfp_run_id, "mini_o3.backend": plan.backend})
    tracker = tracking.StageTracker(client, run.info.run_id)
    tracker.log_metrics(summary_metrics(report))
    tracker.log_params({"bench_digests": json.dumps(plan.bench_digests, sort_keys=True)})
    client.set_terminated(run.info.run_id, status="FINISHED")
    return run.info.run_id


# -- comparisons ------------------------------------------------------------------------------


def _scores_of(eval_dir: Path) -> dict[tuple[str, str], float]:
    from mini_o3.evaluate.learning import load_samples, question_scores

    return question_scores(load_samples(eval_dir))


def compare(current: Path, other: Path, benchmarks: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
    """benchmark → paired delta (current − other) over the questions both answered, with a 95% paired
    bootstrap CI (``evaluate.learning.paired_delta``) and a verdict: ``regression`` / ``improvement``
    only where the CI excludes 0, else ``no significant change``."""
    from mini_o3.evaluate.learning import paired_delta

    a, b = _scores_of(current), _scores_of(other)
    names = benchmarks or sorted({bench for bench, _ in a})
    out: dict[str, dict[str, Any]] = {}
    for bench in names:
        mine = {q: v for q, v in a.items() if q[0] == bench}
        theirs = {q: v for q, v in b.items() if q[0] == bench}
        if not set(mine) & set(theirs):
            out[bench] = {"mean": None, "ci95": None, "questions": 0, "excludes_zero": False,
                          "verdict": "no shared questions"}
            continue
        delta = paired_delta(mine, theirs)
        delta["verdict"] = (("improvement" if delta["mean"] > 0 else "regression") if delta["excludes_zero"]
                            else "no significant change")
        out[bench] = delta
    return out


def fetch_eval(uri: str, parent: Path) -> Path:
    from .common import fetch

    return fetch(uri, parent, progress=False)


def _describe(run: Any) -> dict[str, Any]:
    tags = run.data.tags
    return {"run": tags.get(TAG_KFP_RUN) or run.info.run_id, "mlflow_run_id": run.info.run_id,
            "version": tags.get(TAG_MODEL_VERSION, ""), "digest": tags.get(TAG_MODEL_DIGEST, ""),
            "time": _when(run.info.start_time), "eval_uri": tags.get(TAG_EVAL_URI, ""),
            "metrics": {k: v for k, v in run.data.metrics.items()}}


def history_block(plan: EvalPlan, eval_dir: Path, this_run_id: str | None, work: Path) -> dict[str, Any]:
    """The report's history: the last ``trend_runs`` runs of the target (newest first), and the
    paired comparisons of this evaluation with the previous run and with the ``champion`` version
    on the same benchmarks."""
    block: dict[str, Any] = {"target": plan.target, "experiment": plan.experiment, "model": plan.model,
                             "bench_digest": plan.bench_digest, "bench_digests": plan.bench_digests,
                             "config_hash": plan.config_hash, "reason": plan.reason,
                             "unchanged_since": plan.reused_from or None, "runs": [], "comparisons": {}}
    if plan.tracking_uri is None:
        return block
    runs = history_runs(plan.tracking_uri, plan.target, max_results=max(plan.trend_runs, 1) + 1)
    block["runs"] = [_describe(r) for r in runs][: max(plan.trend_runs, 1)]
    mine = plan.reuse_eval_uri or None
    this = next((r for r in runs if r.info.run_id == this_run_id or (mine and r.data.tags.get(TAG_EVAL_URI) == mine)), None)
    same_questions = [r for r in runs if r.data.tags.get(TAG_BENCH_DIGEST) == plan.bench_digest and r is not this]
    previous = next((r for r in same_questions
                     if this is None or r.info.start_time <= this.info.start_time), None)
    others: dict[str, Any] = {"previous run": previous}
    name = plan.model.get("name")
    champion = alias_version(plan.tracking_uri, name, CHAMPION) if name else ""
    block["champion_version"] = champion
    if champion and champion != plan.model.get("version"):
        found = history_runs(plan.tracking_uri, plan.target, max_results=1,
                             filters={TAG_MODEL_VERSION: champion, TAG_BENCH_DIGEST: plan.bench_digest})
        others[f"champion (v{champion})"] = found[0] if found else None
    for label, run in others.items():
        if run is None:
            block["comparisons"][label] = None
            continue
        other_dir = fetch_eval(run.data.tags[TAG_EVAL_URI], work / f"history-{run.info.run_id}")
        block["comparisons"][label] = {**_describe(run), "deltas": compare(eval_dir, other_dir)}
    return block


def history_markdown(block: Mapping[str, Any]) -> list[str]:
    """The report's trend section (markdown)."""
    lines = [f"## Trend of {block['target']}", ""]
    if block.get("unchanged_since"):
        lines += [f"**Unchanged since run {block['unchanged_since']}**: the same model (digest "
                  f"`{block['model'].get('digest', '')}`), benchmarks (digest `{block['bench_digest']}`) and eval "
                  f"config (hash `{block['config_hash']}`) as that run, so its result is shown and nothing was "
                  "evaluated (force=true evaluates anyway).", ""]
    elif block.get("reason"):
        lines += [f"Evaluated: {block['reason']}.", ""]
    runs = block.get("runs") or []
    if runs:
        benches = sorted({k.split("/", 1)[1] for r in runs for k in r["metrics"] if k.startswith("avg_at_k/")})
        lines += ["| run | when | version | model digest | " + " | ".join(f"{b} Avg@k [95% CI]" for b in benches) + " |",
                  "|---|---|---|---|" + "---:|" * len(benches)]
        for r in runs:
            cells = []
            for b in benches:
                m = r["metrics"]
                if f"avg_at_k/{b}" not in m:
                    cells.append("–")
                    continue
                ci = (f" [{m[f'ci95_low/{b}']:.3f}, {m[f'ci95_high/{b}']:.3f}]" if f"ci95_low/{b}" in m
                      and f"ci95_high/{b}" in m else "")
                cells.append(f"{m[f'avg_at_k/{b}']:.3f}{ci}")
            version = f"v{r['version']}" if r["version"] else "–"
            digest = f"`{r['digest'][:12]}`" if r["digest"] else "–"
            lines.append(f"| {r['run']} | {r['time']} | {version} | {digest} | " + " | ".join(cells) + " |")
        lines.append("")
    else:
        lines += ["No earlier evaluation of this target in the tracking store.", ""]
    for label, comparison in (block.get("comparisons") or {}).items():
        if comparison is None:
            lines += [f"- **vs {label}**: none on the same benchmarks yet"]
            continue
        version = f" v{comparison['version']}" if comparison["version"] else ""
        for bench, d in comparison["deltas"].items():
            if d["mean"] is None:
                lines.append(f"- **vs {label}** (run {comparison['run']}{version}), {bench}: {d['verdict']}")
                continue
            ci = d["ci95"] or [float("nan")] * 2
            flag = {"regression": "**REGRESSION**", "improvement": "**improvement**"}.get(d["verdict"], d["verdict"])
            lines.append(f"- **vs {label}** (run {comparison['run']}{version}), {bench}: {d['mean']:+.3f} "
                         f"[{ci[0]:+.3f}, {ci[1]:+.3f}] over {d['questions']} paired questions: {flag}")
    return [*lines, "", ""]


def flags(block: Mapping[str, Any]) -> dict[str, list[str]]:
    """``{"regression": [...], "improvement": [...]}``: ``<comparison>/<benchmark>`` whose CI excludes 0."""
    out: dict[str, list[str]] = {"regression": [], "improvement": []}
    for label, comparison in (block.get("comparisons") or {}).items():
        for bench, d in (comparison or {}).get("deltas", {}).items():
            if d["verdict"] in out:
                out[d["verdict"]].append(f"{label}/{bench}")
    return out


def write_trend_plot(block: Mapping[str, Any], out_dir: Path) -> Path | None:
    """trend.png: Avg@k (95% CI) per benchmark over the target's last runs, oldest left."""
    runs = list(reversed(block.get("runs") or []))
    if not runs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mini_o3.evaluate.report import save_figure

    benches = sorted({k.split("/", 1)[1] for r in runs for k in r["metrics"] if k.startswith("avg_at_k/")})
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(runs) + 2), 3.5))
    x = list(range(len(runs)))
    for bench in benches:
        points = [(i, r["metrics"]) for i, r in zip(x, runs) if f"avg_at_k/{bench}" in r["metrics"]]
        ys = [m[f"avg_at_k/{bench}"] for _, m in points]
        low = [y - m.get(f"ci95_low/{bench}", y) for y, (_, m) in zip(ys, points)]
        high = [m.get(f"ci95_high/{bench}", y) - y for y, (_, m) in zip(ys, points)]
        line = ax.errorbar([i for i, _ in points], ys, yerr=[low, high], marker="o", capsize=3, label=bench)
        verdicts = {label.split("/", 1)[0]: kind for kind, items in flags(block).items() for label in items
                    if label.split("/", 1)[1] == bench}
        if verdicts and points and points[-1][0] == len(runs) - 1:
            text = ", ".join(f"{kind} vs {label}" for label, kind in verdicts.items())
            ax.annotate(text, (points[-1][0], ys[-1]), textcoords="offset points", xytext=(-10, 12), ha="right",
                        fontsize="x-small", color="#c44e52" if "regression" in verdicts.values() else "#55a868")
            ax.plot([points[-1][0]], [ys[-1]], marker="o", markersize=11, fillstyle="none",
                    color=line.lines[0].get_color())
    ax.set_xticks(x, [(f"v{r['version']}\n" if r["version"] else "") + r["time"][5:16] for r in runs], fontsize="x-small")
    ax.set_ylabel("Avg@k (95% CI)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title(str(block["target"])[:80], fontsize="small")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return save_figure(fig, out_dir / "trend.png")
