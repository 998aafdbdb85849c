"""Cluster commands against a fake KFP REST server on loopback: the real ``kfp.Client`` runs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from fixtures.kfp_server import FakeKFPServer

from mini_o3.kfp.client import (
    ClientError,
    connect,
    plan_schedule,
    resolve_params,
    schedule,
    submit,
    upload,
    version_name,
)

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "pipelines" / "train.yaml"
EVALUATE = REPO / "pipelines" / "evaluate.yaml"


@pytest.fixture
def kfp_server(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # kfp.Client reads ~/.config/kfp/context.json
    with FakeKFPServer() as state:
        yield state


def test_upload_then_reuse_by_content_hash(kfp_server, tmp_path):
    client = connect(kfp_server.url)
    first = upload(client, "evaluate", REPO)
    assert first.created_pipeline and first.created_version and first.name == "mini-o3-evaluate"
    assert first.version_name == version_name(EVALUATE) and first.version_name.startswith("v0.1.0-")
    assert kfp_server.packages[first.version_id] == EVALUATE.read_bytes()
    again = upload(client, "evaluate", REPO)
    assert (again.pipeline_id, again.version_id) == (first.pipeline_id, first.version_id)
    assert not again.created_pipeline and not again.created_version
    # a changed package gets a new version of the same pipeline
    changed = tmp_path / "pipelines"
    changed.mkdir()
    (changed / "evaluate.yaml").write_bytes(EVALUATE.read_bytes() + b"# changed\n")
    third = upload(client, "evaluate", tmp_path)
    assert third.pipeline_id == first.pipeline_id and third.version_id != first.version_id and third.created_version


def test_submit_runs_the_uploaded_version_in_an_experiment(kfp_server):
    client = connect(kfp_server.url)
    params = resolve_params(TRAIN, ["sft_model_uri=s3://b/run/sft/model", "p3_rl_workers=2", "eval_k=4",
                                    "p0_gpu_tolerations=[{key: gpu, operator: Exists}]"])
    assert params == {"p2_sft_model_uri": "s3://b/run/sft/model", "p3_rl_workers": 2, "p4_eval_k": 4,
                      "p0_gpu_tolerations": [{"key": "gpu", "operator": "Exists"}]}
    uploaded, run = submit(client, "train", params, experiment="mini-o3", run_name="nightly", root=REPO)
    body = kfp_server.runs[run.run_id]
    assert body["display_name"] == "nightly"
    assert body["pipeline_version_reference"] == {"pipeline_id": uploaded.pipeline_id,
                                                  "pipeline_version_id": uploaded.version_id}
    assert body["runtime_config"]["parameters"]["p3_rl_workers"] == 2
    (experiment,) = kfp_server.experiments.values()
    assert experiment["display_name"] == "mini-o3" and body["experiment_id"] == experiment["experiment_id"]
    submit(client, "train", {}, experiment="mini-o3", root=REPO)  # experiment and version reused
    assert len(kfp_server.experiments) == 1 and len(kfp_server.versions[uploaded.pipeline_id]) == 2


def test_schedule_converts_cron_and_creates_a_recurring_run(kfp_server):
    client = connect(kfp_server.url)
    shown = []
    params = resolve_params(EVALUATE, ["model_uri=s3://b/run/rl/model", "benchmarks=vstar", "k=8"])
    uploaded, made = schedule(client, params, cron="0 3 * * *", name="nightly-eval", experiment="mini-o3-eval",
                              root=REPO, confirm=lambda c, t: shown.append((c, t)) or True)
    assert shown[0][0] == "0 0 3 * * *" and len(shown[0][1]) == 3
    body = kfp_server.recurring_runs[made.recurring_run_id]
    assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert body["no_catchup"] is True and str(body["max_concurrency"]) == "1"
    assert body["pipeline_version_reference"]["pipeline_version_id"] == uploaded.version_id
    assert body["runtime_config"]["parameters"] == {"model_uri": "s3://b/run/rl/model", "benchmarks": "vstar", "k": 8}
    assert body["mode"] == "ENABLE" and body["display_name"] == "nightly-eval"
    assert uploaded.name == "mini-o3-evaluate"


def test_declined_schedule_creates_nothing(kfp_server):
    client = connect(kfp_server.url)
    assert schedule(client, {}, cron="@daily", name="x", experiment="e", root=REPO, confirm=lambda c, t: False) is None
    assert [r for r in kfp_server.requests if r[0] == "POST"] == []  # nothing uploaded, nothing created


def test_plan_shows_kfp_form_and_next_fire_times():
    kfp_cron, times = plan_schedule("30 2 * * MON", start=datetime(2026, 11, 24, 12))
    assert kfp_cron == "0 30 2 * * MON"
    assert times == [datetime(2026, 11, 30, 2, 30), datetime(2026, 12, 7, 2, 30), datetime(2026, 12, 14, 2, 30)]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (["nope=1"], "unknown parameter 'nope'"),
        (["k=eight"], "parameter k='eight': expected number integer"),
        (["k"], "must look like key=value"),
        (["gpu_node_selector=[1]"], "expected struct"),
    ],
)
def test_bad_parameters_are_named(raw, message):
    with pytest.raises(ClientError, match="parameter") as caught:
        resolve_params(EVALUATE, raw)
    assert message in str(caught.value)


def test_missing_package_says_to_compile(tmp_path):
    with pytest.raises(ClientError, match="run `mini-o3 compile` first"):
        upload(None, "train", tmp_path)
