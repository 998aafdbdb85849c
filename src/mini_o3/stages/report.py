"""Report stage: the pipeline's summary as ``report.md`` and a self-contained ``report.html``
(plots inlined as base64 PNG, so the KFP UI's HTML viewer shows them without storage access).

Inputs: the sealed evaluation folder and, when the run trained, the SFT / RL ``run/`` folders
(loss curve, last RL metrics). The sealed output at ``out_uri`` holds both files plus ``stage.json``.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

from .common import (
    StageResult,
    Tracking,
    basename,
    console,
    fetch,
    seal,
    stage_tracker,
    work_dir,
    write_result,
)
from mini_o3.evaluate.learning import learning_markdown, learning_summary, write_learning_plots

from .evaluate import eval_metrics

PLOTS = (("avg_at_k.png", "Avg@k with 95% CI"), ("pass_at_k.png", "pass@k"), ("turns.png", "Turns per episode"))
LEARNING_PLOTS = (("learning.png", "Avg@k of each model on the same questions (95% CI), chance dashed"),
                  ("rl_curves.png", "GRPO: rollout reward, groups with reward variance and validation Avg@k per step"))


def report_stage(
    eval_uri: str,
    out_uri: str,
    *,
    models: Mapping[str, str] | None = None,
    compare_evals: Mapping[str, str] | None = None,
    sft_run_uri: str = "",
    rl_run_uri: str = "",
    title: str = "Mini-o3 pipeline report",
    history: str | None = None,
    promote_if_better: bool = False,
    markdown_path: str | Path | None = None,
    html_path: str | Path | None = None,
    tracking: Tracking = Tracking(),
    work: str | None = None,
    progress: bool = True,
) -> StageResult:
    """Write the report; also copy it to ``markdown_path`` / ``html_path`` (KFP artifact files).

    ``compare_evals`` (model name → eval URI, names of ``evaluate.learning.MODEL_LABELS``, e.g.
    ``{"base": …, "sft": …}``) are evaluations of other models on the same questions: the report
    then opens with the learning table (``eval_uri`` is the RL model's) and report.json carries it
    under ``learning``.

    ``history`` (an ``EvalPlan`` as JSON, from the evaluate pipeline's plan task): the evaluation is
    logged to its target's history (unless it was reused: unchanged since an earlier run) and the
    report opens with the trend section (``stages.history``); ``promote_if_better`` then moves
    ``champion`` to the evaluated ``candidate`` when it is better (``stages.promote``)."""
    models = {k: v for k, v in (models or {}).items() if v}
    compare = {k: v for k, v in (compare_evals or {}).items() if v}
    params = {"eval_uri": eval_uri, "sft_run_uri": sft_run_uri, "rl_run_uri": rl_run_uri, **models,
              **{f"{k}_eval_uri": v for k, v in compare.items()}}
    with work_dir("report", work) as wd, stage_tracker("report", tracking, params) as tracker:
        console.rule("[bold]report")
        evaluation = fetch(eval_uri, wd / "inputs" / "eval", progress=progress)
        sft_run = fetch(sft_run_uri, wd / "inputs" / "sft", progress=progress) if sft_run_uri else None
        rl_run = fetch(rl_run_uri, wd / "inputs" / "rl", progress=progress) if rl_run_uri else None
        report = json.loads((evaluation / "report.json").read_text())
        out = wd / basename(out_uri)
        out.mkdir(parents=True, exist_ok=True)
        images: list[tuple[Path, str]] = []
        learning_lines: list[str] = []
        if compare:
            evals = {name: fetch(uri, wd / "inputs" / f"eval_{name}", progress=progress) for name, uri in compare.items()}
            report["learning"] = learning_summary({**evals, "rl": evaluation})
            learning_lines = learning_markdown(report["learning"]) + [""]
            rl_history = _jsonl(rl_run / "metrics.jsonl") if rl_run is not None else []
            plots = write_learning_plots(report["learning"], rl_history, out)
            images += [(plots[name], label) for name, label in LEARNING_PLOTS if name in plots]
        history_lines: list[str] = []
        if history:
            block, history_lines, plot = _history(history, report, eval_uri, evaluation, wd, out, promote_if_better)
            report["model"], report["history"] = block["model"], block
            if plot is not None:
                images.append((plot, "Avg@k (95% CI) of this target's last runs"))
        summary = _summary_lines(models, eval_uri, sft_run, rl_run, report.get("history"))
        markdown = (f"# {title}\n\n" + "\n".join(history_lines) + "\n".join(learning_lines) + "\n".join(summary) + "\n\n"
                    + _demote((evaluation / "report.md").read_text()))
        images += [(evaluation / name, label) for name, label in PLOTS if (evaluation / name).is_file()]
        if sft_run is not None and (sft_run / "loss_curve.png").is_file():
            images.append((sft_run / "loss_curve.png", "SFT training loss"))
        (out / "report.md").write_text(markdown)
        (out / "report.html").write_text(render_html(markdown, images, title))
        (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        metrics = eval_metrics(report)
        for name, delta in report.get("learning", {}).get("deltas", {}).items():
            metrics[f"learning/{name}"] = delta["mean"]
        result = StageResult("report", out_uri, metrics=metrics, outputs={"report": out_uri},
                             info={"files": ["report.md", "report.html", "report.json"]})
        write_result(result, out)
        seal(out, out_uri, progress=progress)
        for target, name in ((markdown_path, "report.md"), (html_path, "report.html")):
            if target:
                Path(target).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out / name, target)
        tracker.log_artifact(out / "report.md")
        tracker.log_artifact(out / "report.html")
        if (out / "trend.png").is_file():
            tracker.log_artifact(out / "trend.png")
    return result


def _history(history: str, report: dict, eval_uri: str, evaluation: Path, wd: Path, out: Path,
             promote_if_better: bool) -> tuple[dict, list[str], Path | None]:
    """(history block, trend section lines, trend plot) of a scheduled evaluation; the evaluation is
    logged to its target's history first unless it was reused."""
    from .history import EvalPlan, flags, history_block, history_markdown, log_evaluation, write_trend_plot

    plan = EvalPlan.from_json(history)
    this_run = None if plan.reuse_eval_uri else log_evaluation(plan, report, eval_uri)
    block = history_block(plan, evaluation, this_run, wd / "inputs")
    block["flags"] = flags(block)
    lines = history_markdown(block)
    if promote_if_better:
        block["promotion"] = _promote(plan)
        lines += [f"**Promotion** ({block['promotion']['from_alias']} → {block['promotion']['to_alias']}): "
                  f"{'promoted' if block['promotion']['promoted'] else 'not promoted'}: {block['promotion']['reason']}", ""]
    return block, lines, write_trend_plot(block, out)


def _promote(plan) -> dict:
    """``promote_if_better``: candidate → champion when the evaluated reference is an alias."""
    from mini_o3.registry import CHAMPION

    from .promote import promote

    model = plan.model
    if not model.get("alias") or model.get("alias") == CHAMPION:
        return {"from_alias": model.get("alias") or "-", "to_alias": CHAMPION, "promoted": False,
                "reason": "promote_if_better needs model_uri models:/NAME@ALIAS of an alias other than champion"}
    return promote(tracking_uri=plan.tracking_uri or "", model=model["name"], from_alias=model["alias"],
                   to_alias=CHAMPION).to_dict()


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _summary_lines(models: Mapping[str, str], eval_uri: str, sft_run: Path | None, rl_run: Path | None,
                   history: Mapping | None = None) -> list[str]:
    lines = ["| Item | Value |", "|---|---|"]
    lines += [f"| {name} | `{uri}` |" for name, uri in models.items()]
    if history:
        model = history["model"]
        if model.get("ref") and model.get("ref") != model.get("uri"):
            lines.append(f"| model reference | `{model['ref']}` → {model['name']} version {model['version']} |")
        if model.get("digest"):
            lines.append(f"| model digest | `{model['digest']}` |")
        lines.append(f"| benchmark digest | `{history['bench_digest']}` ("
                     + ", ".join(f"{b} `{d}`" for b, d in history["bench_digests"].items()) + ") |")
        lines.append(f"| eval config hash | `{history['config_hash']}` |")
    lines.append(f"| evaluation | `{eval_uri}` |")
    if sft_run is not None and (sft_run / "stage.json").is_file():
        sft = json.loads((sft_run / "stage.json").read_text())["metrics"]
        lines.append(f"| SFT | step {int(sft.get('global_step', 0))}, final loss {sft.get('final_loss', float('nan')):.4f} |")
    if rl_run is not None and (rl_run / "stage.json").is_file():
        rl = json.loads((rl_run / "stage.json").read_text())["metrics"]
        shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(rl.items()) if k.startswith(("val/", "rollout/reward", "global")))
        lines.append(f"| RL | {shown} |")
    return lines


def _demote(markdown: str) -> str:
    """Evaluation headings one level down, under the report's title."""
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", markdown, flags=re.MULTILINE)


def render_html(markdown: str, images: list[tuple[Path, str]], title: str) -> str:
    """A small, dependency-free rendering of our report markdown (headings, tables, lists,
    paragraphs, inline code) with the images inlined."""
    body: list[str] = []
    table: list[list[str]] = []
    items: list[str] = []

    def flush() -> None:
        if table:
            head, *rows = table
            body.append("<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr></thead><tbody>"
                        + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows) + "</tbody></table>")
            table.clear()
        if items:
            body.append("<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>")
            items.clear()

    for line in markdown.splitlines():
        text = line.strip()
        if text.startswith("|"):
            cells = [_inline(c.strip()) for c in text.strip("|").split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                table.append(cells)
            continue
        if text.startswith("- "):
            items.append(_inline(text[2:]))
            continue
        flush()
        heading = re.match(r"^(#{1,6}) (.*)$", text)
        if heading:
            level = len(heading.group(1))
            body.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif text:
            body.append(f"<p>{_inline(text)}</p>")
    flush()
    for path, label in images:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        body.append(f'<figure><img alt="{html.escape(label)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(label)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:1em auto}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}td:first-child{text-align:left}"
             "img{max-width:100%}code{background:#f4f4f4}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _inline(text: str) -> str:
    escaped = html.escape(text)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
