"""The RayJob success rule on recorded status sequences, and the launcher loop on a fake Kubernetes API
(a Kubernetes API server cannot exist here): create / 409 adopt, watch reconnects, deadlines, logs,
SIGTERM → delete, and every call inside RBAC_RULES."""

from __future__ import annotations

import json
import os
import signal

import pytest
import urllib3
from fixtures.kube_client import (
    NS,
    SEQUENCES,
    Clock,
    FakeKube,
    ScriptedWatch,
    assert_inside_rbac,
    launcher,
    sequence,
)
from kubernetes.client.exceptions import ApiException

from mini_o3.launch import (
    RBAC_RULES,
    LaunchError,
    LaunchSettings,
    Terminated,
    build_rayjob,
    decide,
)
from mini_o3.launch.rbac import allows


@pytest.mark.parametrize("path", sorted(SEQUENCES.glob("*.json")), ids=lambda p: p.stem)
def test_decide_on_recorded_sequences(path):
    seq = json.loads(path.read_text())
    decisions = [decide(status) for status in seq["statuses"]]
    done = [i for i, d in enumerate(decisions) if d.done]
    expect = seq["expect"]
    assert (done[0] if done else None) == expect["done_at"]
    if done:  # done is final in every recorded sequence, and success only ever comes with done
        assert done == list(range(done[0], len(decisions)))
        assert decisions[done[0]].success is expect["success"]
    assert not any(d.success and not d.done for d in decisions)
    assert expect["message_contains"] in decisions[-1].message


def test_retrying_with_failed_job_status_is_not_done():
    d = decide({"jobDeploymentStatus": "Retrying", "jobStatus": "FAILED", "reason": "AppFailed"})
    assert not d.done and not d.success
    assert decide({"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}).success
    assert not decide({"jobDeploymentStatus": "Running", "jobStatus": "SUCCEEDED"}).done  # jobStatus alone never decides
    assert decide(None) == decide({})


@pytest.fixture
def kube():
    return FakeKube(Clock())


def manifest(name="mo3-rl-run1", **settings):
    return build_rayjob(name, ["mini-o3", "rl", "--engine", "local"], LaunchSettings(mode="rayjob", **settings),
                        namespace=NS, owner={})


# ---- launcher -------------------------------------------------------------------------------------


def test_success_creates_watches_fetches_logs_and_deletes(kube):
    seq = sequence("success")
    watch = ScriptedWatch(kube, "mo3-rl-run1", [seq["statuses"]])
    echoed: list[str] = []
    result = launcher(kube, watch).launch(manifest(), echo=echoed.append)
    assert result.status == "SUCCEEDED" and result.mode == "rayjob" and result.name == "mo3-rl-run1"
    assert result.logs_tail == [f"line {i}" for i in range(200, 300)]  # submitter pod log tail
    assert kube.creates == 1 and kube.deleted == ["mo3-rl-run1"]
    changes = [line for line in echoed if line.startswith(f"[rayjob] {NS}/mo3-rl-run1: ")]
    assert [c.split(": ", 1)[1] for c in changes] == [
        "New/-", "Initializing/-", "Running/PENDING", "Running/RUNNING", "Complete/SUCCEEDED (Job finished successfully.)"]
    assert any("Ray dashboard" in line for line in echoed)
    assert watch.streams[0]["resource_version"] == "1"  # watch starts from the created object's version
    assert_inside_rbac(kube)


def test_retrying_with_failed_job_status_keeps_watching_until_success(kube):
    watch = ScriptedWatch(kube, "mo3-rl-run1", [sequence("retry_then_success")["statuses"]])
    result = launcher(kube, watch).launch(manifest(backoff_limit=1), echo=lambda s: None)
    assert result.status == "SUCCEEDED"


@pytest.mark.parametrize("name,expected", [
    ("retries_exhausted", "AppFailed"), ("deadline_exceeded", "DeadlineExceeded"),
    ("validation_failed", "ValidationFailed"), ("complete_stopped", "Complete/STOPPED"),
    ("submission_failed", "SubmissionFailed"),
])
def test_failures_raise_with_reason_and_logs_and_keep_the_rayjob(kube, name, expected):
    watch = ScriptedWatch(kube, "mo3-rl-run1", [sequence(name)["statuses"]])
    with pytest.raises(LaunchError, match=f"RayJob {NS}/mo3-rl-run1 failed: .*{expected}") as info:
        launcher(kube, watch).launch(manifest(), echo=lambda s: None)
    assert info.value.logs_tail[-1] == "line 299" and "line 299" in str(info.value)
    assert kube.deleted == []  # kept for `kubectl describe`; its cluster goes after the TTL


def test_409_adopts_a_running_rayjob(kube):
    body = manifest()
    kube.create("ray.io", "v1", NS, "rayjobs", body)
    kube.set_status("mo3-rl-run1", {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"})
    watch = ScriptedWatch(kube, "mo3-rl-run1", [[{"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED"}]])
    echoed: list[str] = []
    assert launcher(kube, watch).launch(body, echo=echoed.append).status == "SUCCEEDED"
    assert kube.creates == 1  # not created twice
    assert any("adopting existing" in line and "Running/RUNNING" in line for line in echoed)
    assert watch.streams[0]["resource_version"] == "2"


def test_409_on_a_failed_rayjob_replaces_it(kube):
    body = manifest()
    kube.create("ray.io", "v1", NS, "rayjobs", body)
    kube.set_status("mo3-rl-run1", {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "reason": "AppFailed"})
    watch = ScriptedWatch(kube, "mo3-rl-run1", [sequence("success")["statuses"]])
    assert launcher(kube, watch).launch(body, echo=lambda s: None).status == "SUCCEEDED"
    assert kube.creates == 2 and kube.deleted == ["mo3-rl-run1", "mo3-rl-run1"]  # replaced, then cleaned up
    assert_inside_rbac(kube)


def test_dropped_watches_reconnect_and_a_missed_transition_is_seen(kube):
    statuses = sequence("success")["statuses"]
    steps = [
        {"statuses": statuses[:2], "raise": urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead")},
        {"raise": ApiException(status=410, reason="Expired: too old resource version")},
        {"statuses": statuses[2:3], "raise": ConnectionResetError("reset by peer")},
        # the job completes while no watch is open: the re-read after the reconnect sees it
        {"before": lambda: kube.set_status("mo3-rl-run1", statuses[4]), "raise": ApiException(status=500, reason="boom")},
    ]
    watch = ScriptedWatch(kube, "mo3-rl-run1", steps)
    echoed: list[str] = []
    result = launcher(kube, watch).launch(manifest(), echo=echoed.append)
    assert result.status == "SUCCEEDED" and len(watch.streams) == 4
    assert sum("reconnecting" in line for line in echoed) == 3  # 410 is a plain re-read, not a failure
    # after a drop / 410: a fresh get, then the watch resumes from the version it returned
    assert [w.get("resource_version") for w in watch.streams] == ["1", "3", "3", "4"]
    assert_inside_rbac(kube)


def test_too_many_consecutive_watch_failures_give_up(kube):
    watch = ScriptedWatch(kube, "mo3-rl-run1", [{"raise": ConnectionRefusedError("refused")}] * 3)
    with pytest.raises(LaunchError, match="lost the Kubernetes API 3 times"):
        launcher(kube, watch, max_reconnects=2).launch(manifest(), echo=lambda s: None)


def test_rayjob_deleted_by_someone_else_is_an_error(kube):
    watch = ScriptedWatch(kube, "mo3-rl-run1", [{"before": lambda: kube.objects.clear(),
                                                  "raise": ApiException(status=410, reason="Gone")}])
    with pytest.raises(LaunchError, match="was deleted while the launcher waited"):
        launcher(kube, watch).launch(manifest(), echo=lambda s: None)


def test_suspended_past_the_pre_running_deadline_is_deleted(kube):
    watch = ScriptedWatch(kube, "mo3-rl-run1", [sequence("suspended")["statuses"]], tick=20.0)
    with pytest.raises(LaunchError, match="did not start running within preRunningDeadlineSeconds=30") as info:
        launcher(kube, watch).launch(manifest(pre_running_deadline_seconds=30), echo=lambda s: None)
    assert info.value.status == "TIMEOUT" and kube.deleted == ["mo3-rl-run1"]
    assert watch.streams[0]["timeout_seconds"] == 30  # the watch wakes up for the deadline


def test_client_side_timeout_deletes(kube):
    running = [{"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}] * 5
    watch = ScriptedWatch(kube, "mo3-rl-run1", [running], tick=30.0)
    with pytest.raises(LaunchError, match="exceeded launch.timeout_s=100s; deleted it"):
        launcher(kube, watch).launch(manifest(), timeout_s=100, echo=lambda s: None)
    assert kube.deleted == ["mo3-rl-run1"]


def test_sigterm_deletes_the_rayjob_and_reraises(kube):
    running = [{"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}]
    watch = ScriptedWatch(kube, "mo3-rl-run1", [{"statuses": running, "raise": None,
                                                  "before": lambda: os.kill(os.getpid(), signal.SIGTERM)}])
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as info:
        launcher(kube, watch).launch(manifest(), echo=lambda s: None)
    assert info.value.code == 143
    assert kube.deleted == ["mo3-rl-run1"] and not kube.objects
    assert signal.getsignal(signal.SIGTERM) == previous  # handler restored
    assert_inside_rbac(kube)


def test_ctrl_c_deletes_the_rayjob_and_reraises(kube):
    watch = ScriptedWatch(kube, "mo3-rl-run1", [{"raise": KeyboardInterrupt()}])
    with pytest.raises(KeyboardInterrupt):
        launcher(kube, watch).launch(manifest(), echo=lambda s: None)
    assert kube.deleted == ["mo3-rl-run1"]


def test_create_errors_other_than_409_are_named(kube):
    def forbidden(*args, **kwargs):
        raise ApiException(status=403, reason="Forbidden")

    kube.custom.create_namespaced_custom_object = forbidden
    with pytest.raises(LaunchError, match=f"cannot create RayJob {NS}/mo3-rl-run1: 403 Forbidden"):
        launcher(kube, ScriptedWatch(kube, "mo3-rl-run1", [])).launch(manifest(), echo=lambda s: None)


def test_launch_validates_before_creating(kube):
    body = manifest()
    body["spec"]["shutdownAfterJobFinish"] = True
    with pytest.raises(ValueError, match="spec.shutdownAfterJobFinish: unknown field"):
        launcher(kube, ScriptedWatch(kube, "mo3-rl-run1", [])).launch(body, echo=lambda s: None)
    assert kube.calls == []


def test_reference_engine_job_runs_on_the_fake_cluster(kube):
    head_only = LaunchSettings(mode="rayjob", workers=0, gpus_per_worker=0, head_cpus="8", head_memory="32Gi")
    body = build_rayjob("mo3-rl-smoke", ["mini-o3", "rl", "--engine", "local"], head_only, namespace=NS, owner={})
    watch = ScriptedWatch(kube, "mo3-rl-smoke", [sequence("success")["statuses"]])
    assert launcher(kube, watch).launch(body, echo=lambda s: None).status == "SUCCEEDED"


def test_rbac_rules_shape():
    for rule in RBAC_RULES:
        assert set(rule) == {"apiGroups", "resources", "verbs"} and all(rule.values())
    assert not allows("", "secrets", "get")  # pods get secrets by reference; the launcher never reads them
    assert allows("ray.io", "rayjobs/status", "get")
