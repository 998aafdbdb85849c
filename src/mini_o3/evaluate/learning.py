"""Did it learn? Models evaluated on the same questions, compared with paired bootstrap CIs.

``learning_summary({"base": dir, "sft": dir, "rl": dir, "no_zoom": dir})`` reads each evaluation
folder (``report.json`` + its ``samples-<hash>.jsonl``) and returns the ``learning`` block of the
train report: per model Avg@k with a 95% bootstrap CI over questions, the share of episodes that
follow the protocol, mean turns; the chance level; and paired deltas (RL − SFT, zoom − no-zoom)
whose CIs resample questions, so each question's k samples stay together.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .metrics import bootstrap_ci, follows_protocol
from .report import save_figure

#: Display order and labels of the models a learning table may hold.
MODEL_LABELS: dict[str, str] = {"base": "base (random init)", "sft": "SFT", "rl": "SFT + GRPO", "no_zoom": "no-zoom SFT"}
#: The deltas reported, as (name, minuend, subtrahend): the zoom model is the SFT model, trained on
#: the same questions with the same budget as the no-zoom baseline.
DELTAS: tuple[tuple[str, str, str], ...] = (("rl_minus_sft", "rl", "sft"), ("zoom_minus_no_zoom", "sft", "no_zoom"))


def load_samples(eval_dir: str | Path) -> list[dict[str, Any]]:
    """The stored samples of an evaluation folder (the ones its report.json was built from)."""
    eval_dir = Path(eval_dir)
    report = json.loads((eval_dir / "report.json").read_text())
    path = eval_dir / report["store"]
    if not path.is_file():
        raise FileNotFoundError(f"{eval_dir}: report.json names samples file {report['store']!r}, which is missing")
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def question_scores(samples: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """(benchmark, question id) → mean score of its samples (excluded samples left out)."""
    by: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in samples:
        if s["score"] is not None:
            by[(s["benchmark"], s["question_id"])].append(float(s["score"]))
    return {key: sum(v) / len(v) for key, v in by.items() if v}


def model_summary(samples: list[dict[str, Any]], *, seed: int = 0) -> dict[str, Any]:
    """Avg@k with its CI, valid rate and mean turns of one model's samples."""
    means = list(question_scores(samples).values())
    ci = bootstrap_ci(means, seed=seed)
    n = max(len(samples), 1)
    return {
        "avg_at_k": float(np.mean(means)) if means else 0.0,
        "ci95": list(ci) if ci else None,
        "valid_rate": sum(follows_protocol(s) for s in samples) / n,
        "mean_turns": sum(int(s["num_turns"]) for s in samples) / n,
        "questions": len(means),
        "samples": len(samples),
    }


def paired_delta(a: dict[tuple[str, str], float], b: dict[tuple[str, str], float], *, seed: int = 0,
                 n_boot: int = 4000) -> dict[str, Any]:
    """Mean of a − b over the questions both answered, with a 95% paired bootstrap CI."""
    common = sorted(set(a) & set(b))
    if not common:
        raise ValueError("the two evaluations share no question: a paired comparison needs the same questions")
    diffs = [a[q] - b[q] for q in common]
    ci = bootstrap_ci(diffs, n_boot=n_boot, seed=seed)
    return {"mean": float(np.mean(diffs)), "ci95": list(ci) if ci else None, "questions": len(common),
            "excludes_zero": bool(ci and (ci[0] > 0 or ci[1] < 0))}


def learning_summary(evals: Mapping[str, str | Path], *, chance: float | None = None, seed: int = 0) -> dict[str, Any]:
    """The ``learning`` block: ``{"chance", "models": {name: ...}, "deltas": {name: ...}}`` for the
    models in ``evals`` (names from ``MODEL_LABELS``; deltas whose two models are both present).
    ``chance`` defaults to the first evaluation's report (its benchmarks' overall ``chance``)."""
    unknown = sorted(set(evals) - set(MODEL_LABELS))
    if unknown:
        raise ValueError(f"unknown model names {unknown}; expected some of {list(MODEL_LABELS)}")
    samples = {name: load_samples(path) for name, path in evals.items()}
    if chance is None:
        first = json.loads((Path(next(iter(evals.values()))) / "report.json").read_text())
        levels = [b["overall"].get("chance", 0.0) for b in first["benchmarks"].values()]
        chance = float(np.mean(levels)) if levels else 0.0
    scores = {name: question_scores(s) for name, s in samples.items()}
    models = {name: model_summary(samples[name], seed=seed) for name in MODEL_LABELS if name in samples}
    deltas = {name: paired_delta(scores[a], scores[b], seed=seed) for name, a, b in DELTAS
              if a in scores and b in scores}
    return {"chance": chance, "models": models, "deltas": deltas}


def learning_markdown(learning: Mapping[str, Any]) -> list[str]:
    """The "Did it learn?" table and delta lines (markdown)."""
    lines = ["## Did it learn?", "", "| model | Avg@k | 95% CI | valid rate | mean turns |", "|---|---:|---:|---:|---:|"]
    for name, m in learning["models"].items():
        ci = m["ci95"] or [float("nan")] * 2
        lines.append(f"| {MODEL_LABELS[name]} | {m['avg_at_k']:.3f} | [{ci[0]:.3f}, {ci[1]:.3f}] | "
                     f"{m['valid_rate']:.1%} | {m['mean_turns']:.2f} |")
    lines.append(f"| chance | {learning['chance']:.3f} | | | |")
    lines.append("")
    for name, d in learning["deltas"].items():
        ci = d["ci95"] or [float("nan")] * 2
        verdict = "CI excludes 0" if d["excludes_zero"] else "CI includes 0"
        lines.append(f"- **{name.replace('_', ' ')}**: {d['mean']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] "
                     f"(paired bootstrap over {d['questions']} questions; {verdict})")
    return lines


def write_learning_plots(learning: Mapping[str, Any], rl_metrics: list[dict[str, Any]], out_dir: Path) -> dict[str, Path]:
    """learning.png (Avg@k ± CI per model, chance line) and, with RL metrics, rl_curves.png
    (rollout reward, val Avg@k and the share of groups with reward variance per RL step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: dict[str, Path] = {}
    names = list(learning["models"])
    if names:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(names)), 3.5))
        means = [learning["models"][n]["avg_at_k"] for n in names]
        cis = [learning["models"][n]["ci95"] or [m, m] for n, m in zip(names, means)]
        ax.bar([MODEL_LABELS[n] for n in names], means, yerr=[[m - c[0] for m, c in zip(means, cis)],
                                                              [c[1] - m for m, c in zip(means, cis)]],
               capsize=4, color=["#999999", "#4c72b0", "#55a868", "#c44e52"][: len(names)])
        ax.axhline(learning["chance"], color="black", linestyle="--", linewidth=1, label=f"chance {learning['chance']:.2f}")
        ax.set_ylabel("Avg@k (95% CI over questions)")
        ax.set_ylim(0, 1)
        ax.legend(loc="upper left", fontsize="small")
        fig.tight_layout()
        files["learning.png"] = save_figure(fig, out_dir / "learning.png")
    train = [m for m in rl_metrics if "rollout/reward" in m]
    val = [m for m in rl_metrics if any(k.startswith("val/") and "avg@" in k for k in m)]
    if len(train) >= 2:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([m["step"] for m in train], [m["rollout/reward"] for m in train], marker=".", label="rollout reward")
        if any("rollout/groups_with_variance" in m for m in train):
            ax.plot([m["step"] for m in train], [m.get("rollout/groups_with_variance", float("nan")) for m in train],
                    marker=".", linestyle=":", label="groups with reward variance")
        if val:
            key = min((k for k in val[-1] if k.startswith("val/") and "avg@" in k), key=len)  # val/avg@n
            ax.plot([m["step"] for m in val if key in m], [m[key] for m in val if key in m], marker="o",
                    label=f"validation {key.split('/')[-1]}")
        ax.set_xlabel("RL step")
        ax.set_ylim(0, 1)
        ax.legend(fontsize="small")
        fig.tight_layout()
        files["rl_curves.png"] = save_figure(fig, out_dir / "rl_curves.png")
    return files

