"""Cluster commands against a fake KFP REST server on loopback: the real ``kfp.Client`` runs. The
fake keeps the KFP 2.17.0 API server's rules (tests/fixtures/kfp_server.py cites them): pipelines
unique per (name, namespace), lists filtered by namespace, recurring runs not unique, and bearer
tokens required in multi-user mode."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from fixtures.kfp_server import FakeKFPServer

from mini_o3.kfp.client import (
    ClientError,
    connect,
    plan_schedule,
    recurring_runs_named,
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


@pytest.mark.slow
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


@pytest.fixture
def multi_user(tmp_path, monkeypatch):
    """Multi-user KFP that accepts one service-account token, mounted where the chart's Job mounts it
    (KF_PIPELINES_SA_TOKEN_PATH)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    token = tmp_path / "token"
    token.write_text("sa-token-1\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token))
    with FakeKFPServer(multi_user=True, tokens={"sa-token-1"}) as state:
        yield state


def test_token_file_authenticates_in_multi_user_kfp(multi_user, tmp_path, monkeypatch):
    """kfp 2.17.3 ``Client._load_config`` (kfp/client/client.py:277-297) sends a bearer token only for
    existing_token / client_id / credentials, and returns before its in-cluster default credentials
    whenever a host is given; the multi-user API server refuses a request without one (KFP 2.17.0
    backend/src/apiserver/auth/auth.go:35). So the token file must become ``credentials``
    (``ServiceAccountTokenVolumeCredentials``), re-read on every call as the kubelet rotates it."""
    client = connect(multi_user.url, "team-a")
    done = upload(client, "evaluate", REPO, "team-a")
    assert done.created_pipeline
    (tmp_path / "token").write_text("sa-token-2")  # rotated by the kubelet
    multi_user.tokens = {"sa-token-2"}
    assert upload(client, "evaluate", REPO, "team-a").pipeline_id == done.pipeline_id


def test_missing_token_file_named_by_its_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(tmp_path / "nope"))
    with pytest.raises(ClientError, match=r"KF_PIPELINES_SA_TOKEN_PATH=.*nope is not a file"):
        connect("http://127.0.0.1:1")


@pytest.mark.slow
def test_upload_finds_its_pipeline_in_the_namespace(multi_user):
    """Pipelines are unique per (name, namespace) and listed one namespace at a time (KFP 2.17.0
    model/pipeline.go:44,54; server/pipeline_server.go:431): looking the name up without the
    namespace (``kfp.Client.get_pipeline_id``) misses the namespaced pipeline and the re-upload is a
    409 (server/pipeline_upload_server.go:183), i.e. a second ``helm upgrade`` fails."""
    client = connect(multi_user.url, "team-a")
    first = upload(client, "train", REPO, "team-a")
    again = upload(client, "train", REPO, "team-a")
    assert (again.pipeline_id, again.version_id, again.created_pipeline, again.created_version) == (
        first.pipeline_id, first.version_id, False, False)
    other = upload(client, "train", REPO, "team-b")  # same name, other namespace: another pipeline
    assert other.pipeline_id != first.pipeline_id and other.created_pipeline
    assert sorted(p["namespace"] for p in multi_user.pipelines.values()) == ["team-a", "team-b"]


def test_upload_of_a_changed_package_adds_a_version_in_the_namespace(multi_user, tmp_path):
    client = connect(multi_user.url, "team-a")
    first = upload(client, "evaluate", REPO, "team-a")
    changed = tmp_path / "pipelines"
    changed.mkdir()
    (changed / "evaluate.yaml").write_bytes(EVALUATE.read_bytes() + b"# changed\n")
    second = upload(client, "evaluate", tmp_path, "team-a")
    assert second.pipeline_id == first.pipeline_id and second.created_version and not second.created_pipeline


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_schedule_again_keeps_one_recurring_run(mode, kfp_server, multi_user):
    """Recurring runs are not unique on the server (KFP 2.17.0 server/job_server.go:97 checks only a
    non-empty name; template/v2_template.go:71 GenerateName), so a create on every ``helm upgrade``
    would add one more nightly run each time. Re-scheduling keeps an identical run and replaces a
    changed one: exactly one run of that name remains."""
    server, namespace = (kfp_server, None) if mode == "single" else (multi_user, "team-a")
    client = connect(server.url, namespace)
    params = resolve_params(EVALUATE, ["model_uri=s3://b/run/rl/model", "k=8"])
    _, first = schedule(client, params, cron="0 3 * * *", name="nightly", experiment="mini-o3-eval", root=REPO,
                        namespace=namespace)
    _, same = schedule(client, params, cron="0 3 * * *", name="nightly", experiment="mini-o3-eval", root=REPO,
                       namespace=namespace)
    assert same.recurring_run_id == first.recurring_run_id and len(server.recurring_runs) == 1
    changed = {**params, "k": 4}
    _, new = schedule(client, changed, cron="0 4 * * *", name="nightly", experiment="mini-o3-eval", root=REPO,
                      namespace=namespace)
    (only,) = server.recurring_runs.values()
    assert new.recurring_run_id != first.recurring_run_id and only["recurring_run_id"] == new.recurring_run_id
    assert only["runtime_config"]["parameters"]["k"] == 4 and only["trigger"]["cron_schedule"]["cron"] == "0 0 4 * * *"
    assert len(server.experiments) == 1


@pytest.mark.slow
def test_schedule_cleans_up_duplicates_and_refuses_a_foreign_run(kfp_server):
    client = connect(kfp_server.url)
    params = resolve_params(EVALUATE, ["model_uri=s3://b/m"])
    uploaded, made = schedule(client, params, cron="@daily", name="nightly", experiment="e", root=REPO)
    # two more of the same name, as older chart versions left behind
    for _ in range(2):
        client.create_recurring_run(experiment_id=made.experiment_id, job_name="nightly", cron_expression="0 0 1 * * *",
                                    pipeline_id=uploaded.pipeline_id, version_id=uploaded.version_id, params=params)
    assert len(recurring_runs_named(client, "nightly", made.experiment_id)) == 3
    _, kept = schedule(client, params, cron="@daily", name="nightly", experiment="e", root=REPO)
    assert kept.recurring_run_id == made.recurring_run_id and list(kfp_server.recurring_runs) == [made.recurring_run_id]
    train = upload(client, "train", REPO)
    client.create_recurring_run(experiment_id=made.experiment_id, job_name="train-nightly", cron_expression="@daily",
                                pipeline_id=train.pipeline_id, version_id=train.version_id)
    with pytest.raises(ClientError, match="'train-nightly' in experiment 'e' already exists for another pipeline"):
        schedule(client, params, cron="@daily", name="train-nightly", experiment="e", root=REPO)
    assert len(kfp_server.recurring_runs) == 2
