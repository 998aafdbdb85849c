"""``viewer.html``: a self-contained trajectory viewer. Per sample: question, answer, score and
each turn's text; a crop turn shows its box drawn on its source image (the original or an
earlier crop, replayed from the stored boxes) as a downscaled JPEG data URL."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw

from mini_o3.redact import redact_text

from .config import EvalConfig

if TYPE_CHECKING:
    from .runner import Question

_STYLE = """body{font-family:sans-serif;margin:1em;max-width:1100px}
.sample{border:1px solid #ccc;border-radius:6px;padding:.6em;margin:1em 0}
.ok{border-left:6px solid #2a2}.bad{border-left:6px solid #c22}
pre{white-space:pre-wrap;background:#f6f6f6;padding:.4em;margin:.3em 0}
img{border:1px solid #999;margin:.3em 0}.meta{color:#555;font-size:90%}.error{color:#a00}"""
#: Characters of a turn's text shown (a runaway reply never balloons the viewer).
MAX_TURN_CHARS = 8000


def shown_text(text: str, limit: int = MAX_TURN_CHARS) -> str:
    """``text``, or its first ``limit`` characters and how many were left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [{len(text) - limit} more characters not shown]"


def pick_samples(grouped: dict[str, list[tuple[Question, list[dict[str, Any]]]]], limit: int) -> list[tuple[Question, dict[str, Any]]]:
    """Up to ``limit`` samples: sample 0 of every question first (benchmarks interleaved), then sample 1, …"""
    picked: list[tuple[Question, dict[str, Any]]] = []
    depth = 0
    while len(picked) < limit:
        added = False
        rows = [items for items in grouped.values()]
        for i in range(max((len(r) for r in rows), default=0)):
            for items in rows:
                if i < len(items) and depth < len(items[i][1]):
                    picked.append((items[i][0], items[i][1][depth]))
                    added = True
                    if len(picked) >= limit:
                        return picked
        if not added:
            break
        depth += 1
    return picked


def data_url(image: Image.Image, max_side: int) -> str:
    copy = image.convert("RGB")
    copy.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    copy.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def boxed(source: Image.Image, box: list[int], max_side: int) -> str:
    """``box`` (pixels of ``source``) drawn on a downscaled copy of ``source``, as a data URL."""
    scale = min(1.0, max_side / max(source.size))
    small = source.convert("RGB").resize((max(1, round(source.width * scale)), max(1, round(source.height * scale))))
    draw = ImageDraw.Draw(small)
    draw.rectangle([round(v * scale) for v in box], outline=(255, 0, 0), width=3)
    return data_url(small, max_side)


def render_sample(question: Question, sample: dict[str, Any], max_side: int) -> str:
    traj = sample["trajectory"]
    ok = (sample.get("score") or 0) >= 1
    esc = html.escape
    parts = [
        f'<div class="sample {"ok" if ok else "bad"}" id="{esc(sample["benchmark"])}-{esc(sample["question_id"])}-{sample["sample"]}">',
        f'<h3>{esc(sample["benchmark"])} / {esc(sample["question_id"])} #{sample["sample"]}</h3>',
        f'<div class="meta">score {sample.get("score")} (rule {sample.get("rule_score")}, judge '
        f'{esc(str((sample.get("judge") or {}).get("score", "-")))}{" FAILED" if sample.get("judge_failed") else ""}), '
        f'termination {esc(str(sample["termination"]))}, turns {sample["num_turns"]}, crops {sample["num_crops"]}, '
        f'answer {esc(repr(sample["answer"]))}, ground truth {esc(sample["ground_truth"])}</div>',
        f"<pre>{esc(question.record.problem)}</pre>",
    ]
    error = sample.get("error")
    if error:
        parts.append(f'<div class="meta error">error {esc(str(error.get("class")))} ({esc(str(error.get("type")))}): '
                     f'{esc(redact_text(shown_text(str(error.get("message", "")), 1000)))}</div>')
    try:
        with Image.open(question.image) as image:
            raws = [image.convert("RGB")]
    except OSError as exc:
        raws = []
        parts.append(f"<p>image unavailable: {esc(str(exc))}</p>")
    if raws:
        parts.append(f'<img alt="original" src="{data_url(raws[0], max_side)}">')
    for turn in traj["turns"]:
        parts.append(f'<h4>turn {turn["index"]} ({esc(str(turn["finish_reason"]))}, {turn["tokens"]} tokens)</h4>')
        parts.append(f"<pre>{esc(shown_text(turn['output']))}</pre>")
        box, source = turn.get("crop_box"), turn.get("crop_source")
        if box is not None and source is not None and source < len(raws):
            src = raws[source]
            parts.append(f'<div class="meta">crop {box} on image {source}</div>'
                         f'<img class="crop" data-box="{",".join(map(str, box))}" alt="crop box" src="{boxed(src, box, max_side)}">')
            raws.append(src.crop(tuple(box)))
        if turn.get("error"):
            parts.append(f'<div class="meta">tool error: {esc(turn["error"])}</div>')
    parts.append("</div>")
    return "\n".join(parts)


def write_viewer(grouped: dict[str, list[tuple[Question, list[dict[str, Any]]]]], path: Path, config: EvalConfig) -> Path:
    """Write ``viewer.html`` with up to ``config.viewer_samples`` samples."""
    chosen = pick_samples(grouped, config.viewer_samples)
    body = "\n".join(render_sample(q, s, config.viewer_max_side) for q, s in chosen)
    index = " ".join(
        f'<a href="#{html.escape(s["benchmark"])}-{html.escape(s["question_id"])}-{s["sample"]}">'
        f'{html.escape(s["question_id"])}#{s["sample"]}{"✓" if (s.get("score") or 0) >= 1 else "✗"}</a>'
        for _, s in chosen
    )
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>Mini-o3 trajectories</title>"
        f"<style>{_STYLE}</style></head><body><h1>Trajectories ({len(chosen)} samples)</h1>"
        f"<p>{index}</p>{body}</body></html>\n",
        encoding="utf-8",
    )
    return path
