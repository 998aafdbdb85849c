"""The embedded run's closing screen: "did it learn?" first (the report's ``learning`` block)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table


def read_learning(report_dir: Path) -> dict[str, Any] | None:
    """The ``learning`` block of ``report_dir/report.json`` (None when the run compared no models)."""
    path = Path(report_dir) / "report.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text()).get("learning")


def learning_table(learning: dict[str, Any]) -> Table:
    """Base → SFT → RL (→ no-zoom) with Avg@k ± 95% CI, valid rate and mean turns; chance and the
    paired deltas in the caption."""
    from mini_o3.evaluate.learning import MODEL_LABELS

    table = Table(title="Did it learn? (held-out questions)")
    for column, justify in (("model", "left"), ("Avg@k", "right"), ("95% CI", "right"), ("valid rate", "right"),
                            ("mean turns", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, m in learning["models"].items():
        ci = m.get("ci95") or [float("nan")] * 2
        table.add_row(MODEL_LABELS.get(name, name), f"{m['avg_at_k']:.3f}", f"[{ci[0]:.3f}, {ci[1]:.3f}]",
                      f"{m['valid_rate']:.1%}", f"{m['mean_turns']:.2f}")
    table.add_row("chance", f"{learning['chance']:.3f}", "", "", "", style="dim")
    lines = []
    for name, d in learning.get("deltas", {}).items():
        ci = d.get("ci95") or [float("nan")] * 2
        verdict = "CI excludes 0" if d.get("excludes_zero") else "CI includes 0"
        lines.append(f"{name.replace('_', ' ')}: {d['mean']:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}] ({verdict})")
    table.caption = "\n".join(lines) or None
    return table
