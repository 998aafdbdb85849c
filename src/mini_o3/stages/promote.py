"""Explicit promotion: move an alias (``champion``) to the version another alias (``candidate``)
names only when the candidate beats the champion on the configured benchmarks, each paired 95% CI
of (candidate − champion) excluding 0, on the same questions (their latest evaluations in the
target's history with the same benchmark digest). The decision and why go into the candidate
version's tags (``mini_o3.promotion.*``) whether the alias moved or not.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mini_o3.registry import (
    RegistryError,
    alias_version,
    check_alias,
    get_version,
    set_alias,
    set_version_tags,
)

from .history import (
    TAG_BENCH_DIGEST,
    TAG_EVAL_URI,
    TAG_KFP_RUN,
    TAG_MODEL_VERSION,
    compare,
    fetch_eval,
    history_runs,
)


@dataclass
class Promotion:
    """The outcome of one promotion check."""

    model: str
    from_alias: str
    to_alias: str
    candidate: str  # version
    champion: str  # version ("" when the alias pointed nowhere)
    promoted: bool
    reason: str
    deltas: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _decide(candidate_run: Any, champion_run: Any, benchmarks: Sequence[str] | None) -> tuple[bool, str, dict]:
    with tempfile.TemporaryDirectory(prefix="mini-o3-promote-") as tmp:
        work = Path(tmp)
        mine = fetch_eval(candidate_run.data.tags[TAG_EVAL_URI], work / "candidate")
        theirs = fetch_eval(champion_run.data.tags[TAG_EVAL_URI], work / "champion")
        deltas = compare(mine, theirs, benchmarks)
    if not deltas:
        return False, "no benchmark to compare", deltas
    worse = [b for b, d in deltas.items() if d["verdict"] != "improvement"]
    shown = ", ".join(f"{b} {d['mean']:+.3f} [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}]" if d["mean"] is not None
                      else f"{b} {d['verdict']}" for b, d in deltas.items())
    if worse:
        return False, f"not better on {', '.join(worse)} with a 95% CI excluding 0 ({shown})", deltas
    return True, f"better on every benchmark with 95% CIs excluding 0 ({shown})", deltas


def promote(*, tracking_uri: str, model: str, from_alias: str = "candidate", to_alias: str = "champion",
            benchmarks: Sequence[str] | None = None, dry_run: bool = False) -> Promotion:
    """Check the candidate against the champion and move ``to_alias`` when it is better (see the
    module docstring); a first candidate becomes champion when ``to_alias`` points nowhere."""
    check_alias(from_alias, "--from")
    check_alias(to_alias, "--to")
    if from_alias == to_alias:
        raise RegistryError(f"--from and --to are both {from_alias!r}")
    candidate = str(get_version(tracking_uri, model, alias=from_alias).version)
    champion = alias_version(tracking_uri, model, to_alias)
    result = Promotion(model, from_alias, to_alias, candidate, champion, False, "")
    if champion == candidate:
        result.reason = f"version {candidate} already holds @{to_alias}"
        return result
    if not champion:
        result.promoted, result.reason = True, f"no version held @{to_alias}"
    else:
        cand_runs = history_runs(tracking_uri, model, max_results=1, filters={TAG_MODEL_VERSION: candidate})
        if not cand_runs:
            result.reason = f"candidate v{candidate} has no finished evaluation in the history of {model}"
        else:
            digest = cand_runs[0].data.tags.get(TAG_BENCH_DIGEST, "")
            champ_runs = history_runs(tracking_uri, model, max_results=1,
                                      filters={TAG_MODEL_VERSION: champion, TAG_BENCH_DIGEST: digest})
            if not champ_runs:
                result.reason = (f"champion v{champion} has no finished evaluation on the candidate's benchmarks "
                                 f"(digest {digest}); evaluate models:/{model}@{to_alias} on them first")
            else:
                result.promoted, why, result.deltas = _decide(cand_runs[0], champ_runs[0], benchmarks)
                runs = (f"run {cand_runs[0].data.tags.get(TAG_KFP_RUN) or cand_runs[0].info.run_id} vs run "
                        f"{champ_runs[0].data.tags.get(TAG_KFP_RUN) or champ_runs[0].info.run_id}")
                result.reason = f"{why}; {runs}"
    if dry_run:
        return result
    if result.promoted:
        set_alias(tracking_uri, model, to_alias, candidate)
    set_version_tags(tracking_uri, model, candidate, {
        f"mini_o3.promotion.{to_alias}": "promoted" if result.promoted else "refused",
        f"mini_o3.promotion.{to_alias}.reason": result.reason,
        f"mini_o3.promotion.{to_alias}.against": champion or "-",
        f"mini_o3.promotion.{to_alias}.time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        f"mini_o3.promotion.{to_alias}.deltas": json.dumps(result.deltas, sort_keys=True)[:7000],
    })
    return result
