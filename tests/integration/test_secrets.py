"""No secret is ever written: planted credentials (policy URL user-info, a secret header, an
``extra_body`` key, the judge URL, an override naming a secret) never appear in anything an
evaluation writes — report.json/md, samples, viewer, console, MLflow params/tags, stage logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fixtures.fault_server import Fault, fault_server_fixture  # noqa: F401 (registers `fault_server`)
from fixtures.scripted_server import ScriptedItem

from mini_o3.cli import app
from mini_o3.data.bench import read_records
from mini_o3.data.synthetic import SynthConfig, generate

PLANTED = ("PLANTED-URL-KEY-1", "PLANTED-HEADER-2", "PLANTED-BODY-3", "PLANTED-JUDGE-4", "PLANTED-OVERRIDE-5")


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "synth"
    generate(SynthConfig(width_range=(256, 288), height_range=(256, 288)), out, 1, 4, 7, progress=False)
    return out


def _server(fault_server, bench):
    records = read_records(bench / "val.parquet")
    items = {q: ScriptedItem(q, r.answer) for r in records for q in [r.problem.replace("<image>\n", "", 1)]}
    first = records[0].problem.replace("<image>\n", "", 1)
    second = records[1].problem.replace("<image>\n", "", 1)
    # one rejected sample and one failed verdict: their messages name the (credentialed) endpoints
    return fault_server(items=items, faults=[Fault("http_400", mode="no_zoom", question=first),
                                             Fault("http_500", mode="judge", question=second)])


def _written(*roots: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for root in roots for p in sorted(root.rglob("*")) if p.is_file())


@pytest.mark.slow
def test_planted_secrets_never_reach_what_eval_writes(bench, fault_server, tmp_path):
    server = _server(fault_server, bench)
    policy = "openai:" + server.base_url.replace("http://", f"http://user:{PLANTED[0]}@") + "#no_zoom"
    judge_url = server.base_url.replace("http://", f"http://judge:{PLANTED[3]}@")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [
        "eval", "--policy", policy, "--bench", str(bench), "--k", "1", "--out", str(out),
        "--judge-model", "judge", "--judge-base-url", judge_url,
        "--set", "max_turns=2", "--set", "openai.max_retries=0", "--set", "judge.max_attempts=1",
        "--set", "judge.retry_sleep_s=0", "--set", f"openai.headers.X-Api-Key={PLANTED[1]}",
        "--set", f"openai.extra_body.api_key={PLANTED[2]}", "--set", "max_error_rate=0.5",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["errors"]["count"] == 1 and report["protocol"]["judge_failures"] == 1  # the faults happened
    assert report["config"]["openai"]["headers"]["X-Api-Key"] == "***" and "user:***@" in report["policy"]
    everything = _written(out) + result.output
    assert {"samples-", "viewer.html", "report.md"} <= {p.name[:8] if p.name.startswith("samples-") else p.name
                                                        for p in out.iterdir()}
    for secret in PLANTED[:4]:
        assert secret not in everything, secret
    # a bad override carrying a secret: the one-line error masks it
    bad = CliRunner().invoke(app, ["eval", "--policy", policy, "--bench", str(bench), "--out", str(tmp_path / "b"),
                                   "--protocol", "rule", "--set", f"openai.api_key={PLANTED[4]}"])
    assert bad.exit_code == 2 and "api_key" in bad.output and PLANTED[4] not in bad.output
    assert PLANTED[0] not in bad.output


@pytest.mark.slow
def test_planted_secrets_never_reach_mlflow_or_stage_logs(bench, fault_server, tmp_path, capsys):
    from mini_o3 import storage, tracking
    from mini_o3.stages import EvalRequest, eval_stage
    from mini_o3.stages.common import Tracking

    server = _server(fault_server, bench)
    bench_uri = str(tmp_path / "sealed" / "synth")
    storage.put_dir(bench, bench_uri)
    uri = tracking.default_tracking_uri(tmp_path)
    parent = tracking.start_pipeline_run(experiment="secrets", kfp_run_id="run-1", pipeline="evaluate",
                                         params={"policy": f"http://u:{PLANTED[0]}@h/v1", "api_key": PLANTED[2]},
                                         tracking_uri=uri)
    backend = "openai:" + server.base_url.replace("http://", f"http://user:{PLANTED[0]}@") + "#no_zoom"
    overrides = ["max_turns=2", "openai.max_retries=0", f"openai.extra_body.api_key={PLANTED[2]}",
                 f"openai.headers.Authorization=Bearer {PLANTED[1]}", "protocol=rule", "max_error_rate=0.5"]
    eval_stage(EvalRequest(model_uri="unused", bench_uris=[bench_uri], out_uri=str(tmp_path / "eval"), k=1,
                           backend=backend, overrides=overrides, tracking=Tracking(parent, uri)),
               work=str(tmp_path / "work"), progress=False)
    with pytest.raises(RuntimeError), tracking.stage_run(parent_run_id=parent, stage="boom", tracking_uri=uri):
        raise RuntimeError(f"endpoint http://u:{PLANTED[3]}@h failed; token={PLANTED[4]}")
    logs = capsys.readouterr()
    everything = _written(tmp_path / "mlruns", tmp_path / "eval") + logs.out + logs.err
    assert "user:***@" in everything  # the stage did log the (redacted) endpoint
    for secret in PLANTED:
        assert secret not in everything, secret


def test_redaction_rules():
    from mini_o3.redact import redact, redact_text

    assert redact_text("http://u:k@h/v1 and https://tok@h") == "http://u:***@h/v1 and https://***@h"
    assert redact_text('["judge.api_key=abc", "max_tokens=5"]') == '["judge.api_key=***", "max_tokens=5"]'
    assert redact_text("Authorization: Bearer sk-abcdef") == "Authorization: *** ***"
    assert redact({"api_key_env": "OPENAI_API_KEY", "answer_key": "B", "tokenizer": "t", "hf_token": "x",
                   "password": "", "headers": {"Authorization": "Basic QQ=="}}) == {
        "api_key_env": "OPENAI_API_KEY", "answer_key": "B", "tokenizer": "t", "hf_token": "***", "password": "",
        "headers": {"Authorization": "***"}}
