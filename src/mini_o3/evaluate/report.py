"""Report files of an evaluation: ``report.json``, ``report.md`` (laid out like the paper's
Table 1 with the paper's Mini-o3 and Qwen2.5-VL-7B rows for reference), PNG plots and
``viewer.html``. Metrics come from the stored samples of the questions asked (samples < k)."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mini_o3.data.bench.registry import paper_columns, paper_rows, scorer_for
from mini_o3.redact import redact
from mini_o3.rollout.settings import flat_dump

from .config import EvalConfig
from .metrics import behaviour_summary, chance_level, mme_realworld_accuracy, score_summary
from .store import SampleStore

if TYPE_CHECKING:
    from .runner import Question

#: Paper Table 1 columns: data source → label (paper order); rows: model → data source → percent
#: (Avg@32 VP / V*, Avg@8 HR, Avg@1 MME-RW; 7B models). Both from the benchmarks' ``BenchSpec``.
PAPER_COLUMNS: dict[str, str] = paper_columns()
PAPER_ROWS: dict[str, dict[str, float]] = paper_rows()


def group_samples(questions: list[Question], store: SampleStore) -> dict[str, list[tuple[Question, list[dict[str, Any]]]]]:
    """benchmark → [(question, its stored samples < k, by sample index)]; missing samples are skipped."""
    out: dict[str, list] = defaultdict(list)
    for q in questions:
        samples = [store.get((q.benchmark, q.record.id, j)) for j in range(q.k)]
        out[q.benchmark].append((q, [s for s in samples if s is not None]))
    return dict(out)


def summarize(items: list[tuple[Question, list[dict[str, Any]]]], seed: int) -> dict[str, Any]:
    """Score metrics (excluded samples left out) plus behaviour statistics of one group."""
    scores = [[s["score"] for s in samples if s["score"] is not None] for _, samples in items]
    answers = [[s["answer_key"] for s in samples if s["score"] is not None] for _, samples in items]
    k = max((q.k for q, _ in items), default=1)
    everything = [s for _, samples in items for s in samples if not s.get("error")]
    errored = [s for _, samples in items for s in samples if s.get("error")]
    summary = score_summary(scores, answers, k, seed=seed)
    summary["excluded"] = sum(1 for _, samples in items for s in samples if s["score"] is None)
    summary["errors"] = len(errored)
    summary["error_breakdown"] = dict(sorted(Counter(s["error"]["class"] for s in errored).items()))
    summary["missing"] = sum(q.k - len(samples) for q, samples in items)
    summary["chance"] = chance_level([q.record.options for q, _ in items])
    summary["behaviour"] = behaviour_summary(everything)
    return summary


def _by(items: list, key) -> dict[str, list]:
    groups: dict[str, list] = defaultdict(list)
    for item in items:
        groups[key(item[0])].append(item)
    return dict(sorted(groups.items()))


#: What each scoring protocol is, in the words report.md prints.
PROTOCOL_TEXT: dict[str, str] = {
    "paper": "strict `<answer>` extraction, then the LLM judge on every sample with an answer, multiple choice "
             "included, as the paper's evaluation (Mini-o3 `trainer.val_only=True` with the hybrid reward manager)",
    "rule": "the task kit's rule scorers only, no LLM judge",
}
#: The line a rule-only report carries.
NOT_COMPARABLE = "These numbers are not comparable to the paper's: the paper scores every sample with the GPT judge."


def protocol_summary(config: EvalConfig, benchmarks: dict[str, Any]) -> dict[str, Any]:
    """The ``protocol`` block of report.json: name, whether comparable to the paper, judge settings
    (model, api, prompt version, failure policy; never an endpoint or key) and the judge failures."""
    out: dict[str, Any] = {"name": config.protocol, "comparable_to_paper": config.protocol == "paper",
                           "description": PROTOCOL_TEXT[config.protocol]}
    if config.protocol == "paper":
        j = config.judge
        out["judge"] = {"model": j.model, "api": j.api, "prompt_version": j.prompt_version,
                        "max_attempts": j.max_attempts, "judge_failure": config.judge_failure}
        out["judge_failures"] = sum(b["overall"]["behaviour"].get("judge_failures", 0) for b in benchmarks.values())
    else:
        out["note"] = NOT_COMPARABLE
    return out


#: How errored samples enter Avg@k, in the words report.json / report.md use.
ERROR_TREATMENT: dict[str, str] = {
    "score_zero": "scored 0 and counted in Avg@k (sample_error=score_zero)",
    "exclude": "left out of Avg@k (sample_error=exclude)",
}
#: Errored samples listed in report.json (all are in the samples file).
ERROR_EXAMPLES = 20


def errors_summary(questions: list[Question], store: SampleStore, config: EvalConfig) -> dict[str, Any]:
    """The ``errors`` block of report.json: errored samples of the questions asked, their rate,
    classes, treatment in Avg@k and the first ``ERROR_EXAMPLES`` (re-runs retry them)."""
    samples = [store.get((q.benchmark, q.record.id, j)) for q in questions for j in range(q.k)]
    errored = [s for s in samples if s is not None and s.get("error")]
    asked = len(samples)
    return {
        "count": len(errored), "samples": asked, "rate": len(errored) / asked if asked else 0.0,
        "max_error_rate": config.max_error_rate, "treatment": ERROR_TREATMENT[config.sample_error],
        "by_class": dict(sorted(Counter(s["error"]["class"] for s in errored).items())),
        "examples": [{"benchmark": s["benchmark"], "question_id": s["question_id"], "sample": s["sample"], **s["error"]}
                     for s in errored[:ERROR_EXAMPLES]],
    }


def build_report(questions: list[Question], store: SampleStore, config: EvalConfig, spec: str) -> dict[str, Any]:
    """The ``report.json`` dict: per benchmark overall, by data source and by category."""
    benchmarks = {}
    for bench, items in group_samples(questions, store).items():
        benchmarks[bench] = {
            "overall": summarize(items, config.seed),
            "data_sources": {ds: summarize(g, config.seed) for ds, g in _by(items, lambda q: q.record.data_source).items()},
            "categories": {c or "-": summarize(g, config.seed) for c, g in _by(items, lambda q: q.record.category).items()},
        }
        mme = mme_realworld_summary(items)
        if mme is not None:
            benchmarks[bench]["mme_realworld"] = mme
    return {
        "policy": spec,
        "config_hash": config.config_hash(spec),
        "config": redact(flat_dump(config, mode="json")),  # flat keys: max_turns, temperature, ...
        "store": store.path.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "protocol": protocol_summary(config, benchmarks),
        "errors": errors_summary(questions, store, config),
        "benchmarks": benchmarks,
    }


def write_report(questions: list[Question], store: SampleStore, config: EvalConfig, spec: str, out_dir: Path,
                 model: dict[str, str] | None = None) -> tuple[dict[str, Any], dict[str, Path]]:
    """Write report.json, report.md, the plots and viewer.html; returns (report, name → path).
    ``model``: what a registry reference resolved to (``registry.ResolvedModel.to_dict()``)."""
    from .viewer import write_viewer

    out_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(questions, store, config, spec)
    if model:
        report["model"] = dict(model)
    files = {"report.json": out_dir / "report.json", "report.md": out_dir / "report.md"}
    files["report.json"].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    files["report.md"].write_text(render_markdown(report))
    files.update(write_plots(report, out_dir))
    files["viewer.html"] = write_viewer(group_samples(questions, store), out_dir / "viewer.html", config)
    return report, files


# -- markdown --------------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def table_columns(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(data source, summary) of every evaluated data source, paper order first."""
    found = {ds: s for b in report["benchmarks"].values() for ds, s in b["data_sources"].items()}
    order = [ds for ds in PAPER_COLUMNS if ds in found] + sorted(ds for ds in found if ds not in PAPER_COLUMNS)
    return [(ds, found[ds]) for ds in order]


def _model_lines(model: dict[str, str] | None) -> list[str]:
    if not model:
        return []
    return [f"Model `{model['ref']}` resolved to {model['name']} version {model['version']}: `{model['uri']}`, "
            f"digest `{model['digest']}`.", ""]


def render_markdown(report: dict[str, Any]) -> str:
    columns = table_columns(report)
    labels = [PAPER_COLUMNS.get(ds, ds) for ds, _ in columns]
    lines = [
        f"# Evaluation of `{report['policy']}`",
        "",
        f"Config hash `{report['config_hash']}`, max turns {report['config']['max_turns']}, "
        f"max images {report['config']['max_images']}, samples in `{report['store']}`.",
        "",
        *_model_lines(report.get("model")),
        *_protocol_lines(report.get("protocol")),
        *_error_lines(report.get("errors")),
        "| Model | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
        "| Ours (Avg@k ± SE) | " + " | ".join(
            _pct(s["avg_at_k"]) + ("" if s["se"] is None else f" ± {100 * s['se']:.1f}") for _, s in columns) + " |",
    ]
    for name, row in PAPER_ROWS.items():
        lines.append(f"| {name} | " + " | ".join(_pct(row[ds] / 100) if ds in row else "–" for ds, _ in columns) + " |")
    lines += ["", "k per column: " + ", ".join(f"{label} k={s['k']}" for label, (_, s) in zip(labels, columns)), ""]
    for bench, data in report["benchmarks"].items():
        lines += _bench_section(bench, data) + mme_section(data.get("mme_realworld"))
    return "\n".join(lines) + "\n"


def _protocol_lines(protocol: dict[str, Any] | None) -> list[str]:
    """The scoring-protocol paragraph (none for a report written before protocols existed)."""
    if not protocol:
        return []
    line = f"Scoring protocol **{protocol['name']}**: {protocol['description']}"
    if protocol["name"] != "paper":
        return [line + ".", "", f"**{protocol['note']}**", ""]
    j = protocol["judge"]
    return [line + f"; judge `{j['model']}`, judge failures {protocol['judge_failures']} "
            f"({'scored 0' if j['judge_failure'] == 'score_zero' else 'excluded'}).", ""]


def _error_lines(errors: dict[str, Any] | None) -> list[str]:
    """The errored-samples paragraph (none when no sample errored)."""
    if not errors or not errors["count"]:
        return []
    classes = ", ".join(f"{name} {n}" for name, n in errors["by_class"].items())
    return [f"**Errored samples: {errors['count']} of {errors['samples']} ({100 * errors['rate']:.1f}%)**, "
            f"{errors['treatment']}; by class: {classes}. Re-running the same command retries them.", ""]


def _bench_section(bench: str, data: dict[str, Any]) -> list[str]:
    o, b = data["overall"], data["overall"]["behaviour"]
    ci = "–" if o["ci95"] is None else f"[{_pct(o['ci95'][0])}, {_pct(o['ci95'][1])}]"
    pass_k = ", ".join(f"pass@{k} {_pct(v)}" for k, v in o["pass_at_k"].items())
    lines = [
        f"## {bench}",
        "",
        f"- questions {o['questions']}, samples {o['samples']} (k={o['k']}, excluded {o['excluded']}, missing {o['missing']}, "
        f"errors {o.get('errors', 0)}" + (f": {o['error_breakdown']}" if o.get("errors") else "") + ")",
        f"- Avg@{o['k']} {_pct(o['avg_at_k'])}, SE {_pct(o['se'])}, 95% CI {ci}, maj@{o['k']} {_pct(o['maj_at_k'])}",
        f"- {pass_k}",
    ]
    if b.get("samples"):
        lines += [
            f"- turns: mean {b['mean_turns']:.2f}, histogram {b['turn_histogram']}; tool calls {b['tool_calls']} "
            f"(mean {b['mean_tool_calls']:.2f}), crops mean {b['mean_crops']:.2f}",
            f"- exceed {_pct(b['exceed_rate'])}%, void {_pct(b['void_rate'])}%, no answer {_pct(b['no_answer_rate'])}%; "
            f"judge calls {b['judge_calls']}, judge failures {b['judge_failures']}",
            f"- tokens: generated {b['generated_tokens']} (mean {b['mean_generated_tokens']:.1f}), "
            f"mean context {b['mean_context_tokens']:.1f}",
        ]
    lines += ["", "| Category | Questions | Avg@k | SE | maj@k |", "|---|---:|---:|---:|---:|"]
    for cat, s in data["categories"].items():
        lines.append(f"| {cat} | {s['questions']} | {_pct(s['avg_at_k'])} | {_pct(s['se'])} | {_pct(s['maj_at_k'])} |")
    return lines + [""]


# -- MME-RealWorld ---------------------------------------------------------------------------


def mme_realworld_summary(items: list[tuple[Question, list[dict[str, Any]]]]) -> dict[str, Any] | None:
    """The official MME-RealWorld breakdown (``metrics.mme_realworld_accuracy``) of the group's
    MME-RealWorld questions, each scored by its mean over scored samples; None when it has none."""
    rows = []
    for q, samples in items:
        scores = [s["score"] for s in samples if s["score"] is not None]
        if scorer_for(q.record.data_source) == "mme_realworld" and scores:
            meta = q.record.meta
            rows.append((meta.get("task") or "-", meta.get("subtask") or "-", meta.get("category") or "-",
                         sum(scores) / len(scores)))
    return mme_realworld_accuracy(rows) if rows else None


def mme_section(mme: dict[str, Any] | None) -> list[str]:
    """report.md lines of the MME-RealWorld breakdown: per task its item-weighted accuracy, Avg-C
    and subtask accuracies (categories are in report.json)."""
    if not mme:
        return []
    lines = [
        "### MME-RealWorld: Perception / Reasoning (official aggregation)",
        "",
        f"Overall {_pct(mme['accuracy'])} over {mme['questions']} questions, item-weighted as the official "
        "`eval_your_results.py`; Avg-C = unweighted mean of a task's subtask accuracies (the README's Avg-C).",
        "",
        "| Task | Subtask | Questions | Accuracy |",
        "|---|---|---:|---:|",
    ]
    for task, t in mme["tasks"].items():
        lines += [f"| {task} | all | {t['questions']} | {_pct(t['accuracy'])} |",
                  f"| {task} | Avg-C | {len(t['subtasks'])} subtask{'s' * (len(t['subtasks']) != 1)} | {_pct(t['avg_c'])} |"]
        lines += [f"| {task} | {sub} | {s['questions']} | {_pct(s['accuracy'])} |" for sub, s in t["subtasks"].items()]
    return lines + [""]


# -- plots -----------------------------------------------------------------------------------


def write_plots(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """avg_at_k.png (CI bars), pass_at_k.png and turns.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = table_columns(report)
    labels = [PAPER_COLUMNS.get(ds, ds) for ds, _ in columns]
    files = {}

    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(columns)), 3.5))
    means = [100 * s["avg_at_k"] for _, s in columns]
    errs = [[m - 100 * (s["ci95"] or [s["avg_at_k"]] * 2)[0] for m, (_, s) in zip(means, columns)],
            [100 * (s["ci95"] or [s["avg_at_k"]] * 2)[1] - m for m, (_, s) in zip(means, columns)]]
    ax.bar(labels, means, yerr=errs, capsize=4, color="#4c72b0")
    ax.set_ylabel("Avg@k (%) with 95% CI")
    ax.set_ylim(0, 100)
    fig.tight_layout()
    files["avg_at_k.png"] = save_figure(fig, out_dir / "avg_at_k.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, (_, s) in zip(labels, columns):
        points = [(int(k), 100 * v) for k, v in s["pass_at_k"].items() if v is not None]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("k")
    ax.set_ylabel("pass@k (%)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    files["pass_at_k.png"] = save_figure(fig, out_dir / "pass_at_k.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for bench, data in report["benchmarks"].items():
        hist = data["overall"]["behaviour"].get("turn_histogram", {})
        total = sum(hist.values()) or 1
        ax.plot([int(t) for t in hist], [100 * c / total for c in hist.values()], marker="o", label=bench)
    ax.set_xlabel("turns")
    ax.set_ylabel("samples (%)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    files["turns.png"] = save_figure(fig, out_dir / "turns.png")
    return files


def save_figure(fig: Any, path: Path) -> Path:
    """Write ``fig`` as a 100-dpi PNG and close it."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
