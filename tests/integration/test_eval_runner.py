"""``run_eval`` end to end on a generated synthetic benchmark with local scripted policies, the
tiny model through ``local:DIR``, and kill-and-resume."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from mini_o3.data.bench import read_records, sample_meta
from mini_o3.data.synthetic import OraclePolicy, SynthConfig, generate
from mini_o3.evaluate.config import EvalConfig
from mini_o3.evaluate.runner import EvalError, run_eval
from mini_o3.task import answer_turn, tool_turn

pytestmark = pytest.mark.slow  # evaluations with the oracle and the tiny model

N_TEST = 6
#: Runner mechanics with the rule protocol (the paper protocol's judge: test_eval_runner_openai.py).
FAST = dict(k=2, max_turns=4, max_images=4, concurrency=4, viewer_samples=6, protocol="rule")


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "synth"
    generate(SynthConfig(width_range=(512, 768), height_range=(512, 768)), out, 1, N_TEST, 3, progress=False)
    return out


class Oracle:
    """Correct scripted policy (zooms on the target, then answers); after ``fail_after`` episodes it
    is killed (KeyboardInterrupt, as Ctrl-C / a signal handler raises in a worker)."""

    spec = "scripted:oracle"

    def __init__(self, bench: Path, fail_after: int | None = None) -> None:
        self.metas = {r.id: sample_meta(r) for r in read_records(bench / "val.parquet")}
        self.fail_after, self.started, self.lock = fail_after, 0, threading.Lock()

    def for_episode(self, question_id: str, sample: int):
        with self.lock:
            self.started += 1
            if self.fail_after is not None and self.started > self.fail_after:
                raise KeyboardInterrupt("scripted kill")
        return OraclePolicy(self.metas[question_id], "coarse_to_fine", rng_seed=sample)


class Scripted:
    def __init__(self, spec: str, reply) -> None:
        self.spec, self.reply = spec, reply

    def for_episode(self, question_id: str, sample: int):
        return lambda request: self.reply


NO_ZOOM_WRONG = Scripted("scripted:wrong", answer_turn("Obvious.", "zzz nothing"))
ENDLESS = Scripted("scripted:endless", tool_turn("Zoom.", [0.1, 0.1, 0.6, 0.6]))


def test_oracle_scores_one_and_writes_report(bench, tmp_path):
    result = run_eval(Oracle(bench), [bench], tmp_path / "out", EvalConfig(**FAST), progress=False)
    overall = result.report["benchmarks"]["synth"]["overall"]
    assert overall["avg_at_k"] == 1.0 and overall["questions"] == N_TEST and overall["samples"] == 2 * N_TEST
    assert overall["pass_at_k"] == {"1": 1.0, "2": 1.0} and overall["maj_at_k"] == 1.0
    assert overall["behaviour"]["exceed_rate"] == 0 and overall["behaviour"]["tool_calls"] == 4 * N_TEST
    assert set(result.report["benchmarks"]["synth"]["data_sources"]) <= {"synthetic_easy", "synthetic_medium", "synthetic_hard"}
    for name in ("report.json", "report.md", "avg_at_k.png", "pass_at_k.png", "turns.png", "viewer.html"):
        assert (tmp_path / "out" / name).is_file(), name
    md = (tmp_path / "out" / "report.md").read_text()
    header = next(line for line in md.splitlines() if line.startswith("| Model |"))
    assert [c.strip() for c in header.strip("|").split("|")][0] == "Model"
    assert "synthetic_" in header and "Mini-o3 (paper)" in md and "Qwen2.5-VL-7B-Instruct (paper)" in md
    html = (tmp_path / "out" / "viewer.html").read_text()
    assert html.count('class="crop"') >= 6 and "data:image/jpeg;base64," in html
    stored = [json.loads(line) for line in (tmp_path / "out" / f"samples-{result.config_hash}.jsonl").read_text().splitlines()]
    boxes = {",".join(map(str, t["crop_box"])) for r in stored if r["sample"] == 0 for t in r["trajectory"]["turns"] if t["crop_box"]}
    assert boxes and all(f'data-box="{box}"' in html for box in boxes)
    # a second run redoes nothing
    again = run_eval(Oracle(bench), [bench], tmp_path / "out", EvalConfig(**FAST), progress=False)
    assert again.new_samples == 0 and again.report["benchmarks"] == result.report["benchmarks"]


def test_wrong_and_endless_policies(bench, tmp_path):
    wrong = run_eval(NO_ZOOM_WRONG, [bench], tmp_path / "w", EvalConfig(**FAST), progress=False)
    o = wrong.report["benchmarks"]["synth"]["overall"]
    assert o["avg_at_k"] == 0.0 and o["behaviour"]["tool_calls"] == 0 and o["behaviour"]["no_answer_rate"] == 0
    endless = run_eval(ENDLESS, [bench], tmp_path / "e", EvalConfig(**FAST), progress=False)
    b = endless.report["benchmarks"]["synth"]["overall"]
    assert b["avg_at_k"] == 0.0 and b["behaviour"]["exceed_rate"] == 1.0 and b["behaviour"]["no_answer_rate"] == 1.0
    assert b["behaviour"]["turn_histogram"] == {"4": 2 * N_TEST}


def test_kill_and_resume_gives_the_same_report(bench, tmp_path):
    config = EvalConfig(**{**FAST, "concurrency": 1})
    full = run_eval(Oracle(bench), [bench], tmp_path / "full", config, progress=False)
    with pytest.raises(KeyboardInterrupt, match="scripted kill"):
        run_eval(Oracle(bench, fail_after=5), [bench], tmp_path / "resumed", config, progress=False)
    store = tmp_path / "resumed" / f"samples-{full.config_hash}.jsonl"
    assert len(store.read_text().splitlines()) == 5
    resumed = run_eval(Oracle(bench), [bench], tmp_path / "resumed", config, progress=False)
    assert resumed.new_samples == 2 * N_TEST - 5
    assert resumed.report["benchmarks"] == full.report["benchmarks"]
    # raising k reuses the stored samples
    more = run_eval(Oracle(bench), [bench], tmp_path / "resumed", config, overrides=["k=3"], progress=False)
    assert more.new_samples == N_TEST and more.report["benchmarks"]["synth"]["overall"]["k"] == 3


def test_bad_inputs_are_named(bench, tmp_path):
    with pytest.raises(EvalError, match="no val.parquet"):
        run_eval(ENDLESS, [tmp_path], tmp_path / "x", progress=False)
    with pytest.raises(EvalError, match="unknown kind 'ftp'"):
        run_eval("ftp:foo", [bench], tmp_path / "x", overrides=["protocol=rule"], progress=False)
    with pytest.raises(EvalError, match="nope"):
        run_eval(ENDLESS, [bench], tmp_path / "x", overrides=["nope=1"], progress=False)
    with pytest.raises(EvalError, match="not a model folder"):
        run_eval(f"local:{tmp_path}", [bench], tmp_path / "x", overrides=["protocol=rule"], progress=False)


def test_paper_protocol_without_judge_credentials_fails_first(bench, tmp_path, monkeypatch):
    """The default protocol needs the judge: no credentials is one line naming the setting and
    the rule-only choice, before any policy or model is loaded."""
    for name in ("END_POINT", "API_VERSION", "API_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(EvalError, match=r"OPENAI_API_KEY.*--protocol rule") as info:
        run_eval(f"local:{tmp_path}", [bench], tmp_path / "x", progress=False)
    assert "\n" not in str(info.value) and not (tmp_path / "x").exists()


def test_tiny_model_local_policy(bench, tiny_dir, tmp_path):
    config = EvalConfig(k=1, limit=2, max_turns=2, max_tokens_per_turn=8, concurrency=2, protocol="rule")
    result = run_eval(f"local:{tiny_dir}", [bench], tmp_path / "tiny", config, progress=False)
    o = result.report["benchmarks"]["synth"]["overall"]
    assert o["questions"] == 2 and o["samples"] == 2 and 0.0 <= o["avg_at_k"] <= 1.0
    assert o["behaviour"]["generated_tokens"] > 0
    assert (tmp_path / "tiny" / "report.md").is_file()
    assert result.report["policy"].startswith(f"local:{Path(tiny_dir).resolve()}@")  # names the model's content
