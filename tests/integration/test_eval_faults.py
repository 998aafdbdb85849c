"""``run_eval`` and ``mini-o3 eval`` against the fault server: a bad sample never costs the run,
failed judge verdicts heal on re-run, a dead endpoint stops the run with a report.

Upstream rule for judge failures (Mini-o3/Mini-o3 @8654dbf42d2ea98b9d81b6cc7179026dd0598fdf
verl/workers/reward_manager/naive_multithreads_tool.py L134, L160-164): a failed judge call leaves
the sample's reward at 0 in validation; we store the failure with its reason and re-judge it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures.fault_server import Fault, fault_server_fixture  # noqa: F401 (registers `fault_server`)
from fixtures.scripted_server import ScriptedItem

from mini_o3.cli import app
from mini_o3.data.bench import read_records, sample_meta
from mini_o3.data.synthetic import SynthConfig, generate
from mini_o3.evaluate.config import EvalConfig
from mini_o3.judge.config import JudgeConfig
from mini_o3.evaluate.runner import run_eval

pytestmark = pytest.mark.slow  # evaluations against fault-injecting servers

N_TEST = 20
K = 10  # 200 samples


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "synth"
    generate(SynthConfig(width_range=(256, 320), height_range=(256, 320)), out, 1, N_TEST, 5, progress=False)
    return out


@pytest.fixture(scope="module")
def records(bench):
    return read_records(bench / "val.parquet")


def _items(records) -> dict[str, ScriptedItem]:
    items = [ScriptedItem(r.problem.replace("<image>\n", "", 1), r.answer, tuple(sample_meta(r).target_bbox_rel))
             for r in records]
    return {i.question: i for i in items}


def _question(record) -> str:
    return record.problem.replace("<image>\n", "", 1)


def _config(**changes) -> EvalConfig:
    base = dict(k=K, max_turns=3, max_images=3, concurrency=8, viewer_samples=4, protocol="rule",
                openai={"max_retries": 1, "backoff_s": 0.0})
    return EvalConfig(**{**base, **changes})


def test_200_samples_with_5_percent_permanent_failures(bench, records, fault_server, tmp_path):
    """One question of 20 is rejected for good (HTTP 400, context length): its 10 samples are
    stored with the error, counted, scored 0; the report is written; a re-run retries exactly them."""
    bad = records[7]
    assert [_question(r) for r in records].count(_question(bad)) == 1
    server = fault_server(items=_items(records), faults=[Fault("http_400", question=_question(bad))])
    spec = f"openai:{server.base_url}#no_zoom"
    result = run_eval(spec, [bench], tmp_path / "out", _config(), progress=False)
    overall = result.report["benchmarks"]["synth"]["overall"]
    assert overall["errors"] == K and overall["error_breakdown"] == {"http_400": K}
    assert overall["samples"] == N_TEST * K
    errors = result.report["errors"]
    assert errors["count"] == K and errors["rate"] == pytest.approx(0.05) and errors["by_class"] == {"http_400": K}
    assert "scored 0" in errors["treatment"] and {e["question_id"] for e in errors["examples"]} == {bad.id}
    assert "maximum context length" in errors["examples"][0]["message"]
    assert result.failure() is not None and "5.0%" in result.failure()  # default max_error_rate 1%
    report_md = (tmp_path / "out" / "report.md").read_text()
    assert "Errored samples: 10 of 200 (5.0%)" in report_md and "errors 10" in report_md
    assert (tmp_path / "out" / "viewer.html").is_file()
    lines = (tmp_path / "out" / f"samples-{result.config_hash}.jsonl").read_text().splitlines()
    assert sum(1 for line in lines if json.loads(line).get("error")) == K

    excluded = run_eval(spec, [bench], tmp_path / "excl", _config(sample_error="exclude"), progress=False)
    assert excluded.report["benchmarks"]["synth"]["overall"]["excluded"] == K
    assert excluded.report["benchmarks"]["synth"]["overall"]["questions"] == N_TEST - 1

    server.faults.clear()  # the endpoint is fixed: the re-run retries only the errored samples
    before = len(server.chat_requests())
    again = run_eval(spec, [bench], tmp_path / "out", _config(), progress=False)
    assert again.new_samples == K and len(server.chat_requests()) - before == K
    assert again.report["errors"]["count"] == 0 and again.failure() is None
    clean = again.report["benchmarks"]["synth"]["overall"]["avg_at_k"]  # the bad question now scores 1
    assert overall["avg_at_k"] == pytest.approx(clean - 1 / N_TEST)  # errors scored 0, counted
    assert excluded.report["benchmarks"]["synth"]["overall"]["avg_at_k"] == pytest.approx((clean * N_TEST - 1) / (N_TEST - 1))


def test_corrupt_image_is_one_errored_question(bench, records, fault_server, tmp_path):
    copy = tmp_path / "base" / "synth"
    shutil.copytree(bench.parent, tmp_path / "base")
    bad = records[3]
    image = copy.parent / bad.images[0]
    image.write_bytes(image.read_bytes()[:64])  # truncated PNG
    server = fault_server(items=_items(records))
    result = run_eval(f"openai:{server.base_url}#no_zoom", [copy], tmp_path / "out", _config(k=1), progress=False)
    errors = result.report["errors"]
    assert errors["count"] == 1 and errors["by_class"] == {"input": 1} and errors["examples"][0]["question_id"] == bad.id
    assert result.report["benchmarks"]["synth"]["overall"]["questions"] == N_TEST


def test_failed_judge_verdicts_heal_on_rerun(bench, records, fault_server, tmp_path):
    """Two questions' verdicts fail (HTTP 500 after the judge's attempts): stored with the reason,
    counted; the re-run re-judges exactly those verdicts and rolls nothing out again."""
    bad = [_question(records[1]), _question(records[4])]
    assert all([_question(r) for r in records].count(q) == 1 for q in bad)
    server = fault_server(items=_items(records), faults=[Fault("http_500", mode="judge", question=q) for q in bad])
    judge = JudgeConfig(api="openai", base_url=server.base_url, model="judge", max_attempts=2,
                            retry_sleep_s=0.0, rate_limit_sleep_s=0.0)
    config = _config(k=2, protocol="paper", judge=judge)
    spec = f"openai:{server.base_url}#no_zoom"
    first = run_eval(spec, [bench], tmp_path / "out", config, progress=False)
    assert first.judge_failures == 4
    stored = [json.loads(x) for x in (tmp_path / "out" / f"samples-{first.config_hash}.jsonl").read_text().splitlines()]
    failed = [r for r in stored if r["judge_failed"]]
    assert len(failed) == 4 and all("HTTP" in r["judge"]["error"] or "500" in r["judge"]["error"] for r in failed)
    assert all(server.base_url in r["judge"]["error"] for r in failed)

    server.faults.clear()
    policy_calls = len(server.chat_requests("no_zoom"))
    judge_calls = len(server.chat_requests("judge"))
    again = run_eval(spec, [bench], tmp_path / "out", config, progress=False)
    assert again.rejudged == 4 and again.new_samples == 0 and again.judge_failures == 0
    assert len(server.chat_requests("judge")) - judge_calls == 4 and len(server.chat_requests("no_zoom")) == policy_calls
    healed = again.report["benchmarks"]["synth"]["overall"]["avg_at_k"]
    assert first.report["benchmarks"]["synth"]["overall"]["avg_at_k"] == pytest.approx(healed - 2 / N_TEST)


def test_dead_endpoint_stops_with_a_report(bench, records, fault_server, tmp_path):
    server = fault_server(items=_items(records), faults=[Fault("http_503")])
    result = run_eval(f"openai:{server.base_url}#no_zoom", [bench], tmp_path / "out",
                      _config(concurrency=2, max_consecutive_errors=6), progress=False)
    assert result.stopped and "6 samples in a row failed" in result.stopped and "http_503" in result.stopped
    assert result.report["errors"]["count"] < 20 and result.report["benchmarks"]["synth"]["overall"]["missing"] > 150
    assert (tmp_path / "out" / "report.json").is_file() and "stopped early" in result.failure()


def test_cli_exit_code_follows_max_error_rate(bench, records, fault_server, tmp_path):
    server = fault_server(items=_items(records), faults=[Fault("http_400", question=_question(records[0]))])
    args = ["eval", "--policy", f"openai:{server.base_url}#no_zoom", "--bench", str(bench), "--k", "2",
            "--protocol", "rule", "--set", "max_turns=3", "--set", "openai.max_retries=0"]
    failing = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert failing.exit_code == 1, failing.output
    assert "2 of 40 samples errored" in failing.output and (tmp_path / "a" / "report.json").is_file()
    assert "Traceback" not in failing.output
    ok = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a"), "--set", "max_error_rate=0.1"])
    assert ok.exit_code == 0, ok.output
    assert "re-run the same command to retry them" in ok.output


def test_runaway_replies_never_balloon_the_store_or_viewer(bench, records, fault_server, tmp_path):
    """An 8 MB reply (the server ignores max_tokens) is cut to the turn budget and flagged as a
    length cut (protocol: a length-cut answer turn ends the episode void); files stay small."""
    server = fault_server(items=_items(records), faults=[Fault("huge", question=_question(records[0]), size=8_000_000)])
    result = run_eval(f"openai:{server.base_url}#no_zoom", [bench], tmp_path / "out",
                      _config(k=1, limit=2, viewer_samples=2), progress=False)
    store = tmp_path / "out" / f"samples-{result.config_hash}.jsonl"
    first = next(json.loads(line) for line in store.read_text().splitlines() if json.loads(line)["question_id"] == records[0].id)
    assert first["termination"] == "void" and first["trajectory"]["turns"][0]["finish_reason"] == "length"
    assert first["generated_tokens"] == EvalConfig().limits().max_tokens_per_turn
    assert store.stat().st_size < 200_000 and (tmp_path / "out" / "viewer.html").stat().st_size < 200_000


def test_stored_turn_text_is_bounded_for_any_policy(bench, tmp_path):
    class Huge:
        spec = "scripted:huge"

        def for_episode(self, question_id, sample):
            return lambda request: "<think>" + "y" * 3_000_000 + "</think><answer>x</answer>"

    result = run_eval(Huge(), [bench], tmp_path / "out", _config(k=1, limit=1, viewer_samples=1), progress=False)
    line = (tmp_path / "out" / f"samples-{result.config_hash}.jsonl").read_text()
    turn = json.loads(line)["trajectory"]["turns"][0]
    assert len(turn["output"]) == 65536 and turn.get("output_chars", 0) > 3_000_000  # runner.MAX_STORED_TURN_CHARS
    assert (tmp_path / "out" / "viewer.html").stat().st_size < 100_000


def test_batched_policy_failure_costs_only_the_bad_sample(bench, records, tmp_path):
    """A batch that fails is rolled out again one sample at a time: only the bad one errors."""
    bad = records[5].id

    class Batched:
        spec = "scripted:batched"

        def rollout_batch(self, samples, seed):
            from mini_o3.task import run_episode

            if any(s.sample_id.startswith(bad + "#") for s in samples):
                raise RuntimeError(f"scripted batch failure on {bad}")
            return [run_episode(lambda request: "<think>x</think><answer>none</answer>", s) for s in samples]

    result = run_eval(Batched(), [bench], tmp_path / "out", _config(k=2, concurrency=4), progress=False)
    errors = result.report["errors"]
    assert errors["count"] == 2 and errors["by_class"] == {"rollout": 2}
    assert {e["question_id"] for e in errors["examples"]} == {bad}
    assert result.report["benchmarks"]["synth"]["overall"]["samples"] == 2 * N_TEST


def test_eval_stage_fails_above_max_error_rate_after_sealing(bench, records, fault_server, tmp_path):
    """The evaluate stage fails like `mini-o3 eval` exits 1 (error rate above max_error_rate), but
    only after its report folder is sealed, so the report of the failed run can be read; its MLflow
    stage run ends FAILED with the reason."""
    from mini_o3 import storage, tracking
    from mini_o3.stages import EvalRequest, StageError, eval_stage
    from mini_o3.stages.common import Tracking

    server = fault_server(items=_items(records), faults=[Fault("http_400", question=_question(records[0]))])
    bench_uri = str(tmp_path / "sealed" / "synth")
    storage.put_dir(bench, bench_uri)
    uri = tracking.default_tracking_uri(tmp_path)
    parent = tracking.start_pipeline_run(experiment="faults", kfp_run_id="run-1", pipeline="evaluate", params={},
                                         tracking_uri=uri)
    backend = f"openai:{server.base_url}#no_zoom"
    overrides = ["max_turns=3", "openai.max_retries=0", "protocol=rule"]
    out_uri = str(tmp_path / "eval")
    with pytest.raises(StageError, match=r"2 of 40 samples errored .*max_error_rate"):
        eval_stage(EvalRequest(model_uri="unused", bench_uris=[bench_uri], out_uri=out_uri, k=2, backend=backend,
                               overrides=overrides, tracking=Tracking(parent, uri)),
                   work=str(tmp_path / "work"), progress=False)
    assert storage.is_complete(out_uri)
    report = json.loads((Path(out_uri) / "report.json").read_text())
    assert report["errors"]["count"] == 2 and report["benchmarks"]["synth"]["overall"]["errors"] == 2
    stage_run = next(r for r in tracking.client(uri).search_runs([tracking.client(uri).get_run(parent).info.experiment_id])
                     if r.data.tags.get("mini_o3.stage") == "evaluate")
    assert stage_run.info.status == "FAILED" and "max_error_rate" in stage_run.data.tags["mini_o3.error"]
    ok = eval_stage(EvalRequest(model_uri="unused", bench_uris=[bench_uri], out_uri=str(tmp_path / "eval-ok"), k=2,
                                backend=backend, overrides=[*overrides, "max_error_rate=0.1"]),
                    work=str(tmp_path / "work-ok"), progress=False)
    assert ok.metrics["avg_at_k/synth"] >= 0
