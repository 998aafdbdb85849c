"""Cancel never leaks a RayJob: the exit handler deletes the live RayJobs of its run, every RayJob
carries its run id and a deadline bounded by its launcher task's.

Upstream rules encoded here:

* KFP terminates a run by patching the workflow's ``activeDeadlineSeconds`` to 0
  (kubeflow/pipelines 2.17.0 backend/src/apiserver/resource/resource_manager.go:1023-1039,
  backend/src/common/util/execution_spec.go:294 ``GetTerminatePatch``); Argo then SIGTERMs running
  pods and SIGKILLs them after terminationGracePeriodSeconds (argo-workflows v4.0.5
  workflow/controller/pod/queue.go:119-130; exec_control.go:54-66), and the emissary forwards the
  signal to the launcher (cmd/argoexec/commands/emissary.go:183-191): a launcher may die before its
  DELETE, or still be creating its RayJob.
* The exit task of a ``dsl.ExitHandler`` (triggerPolicy ALL_UPSTREAM_TASKS_COMPLETED) is compiled to
  an Argo exit lifecycle hook (kubeflow/pipelines 2.17.0 backend/src/v2/compiler/argocompiler/dag.go:62-80,
  common.go:125-138), whose pods Argo still creates after the workflow deadline and does not
  terminate for it (argo-workflows v4.0.5 workflow/controller/workflowpod.go:177, exec_control.go:59-61).
* KubeRay v1.7.0 fails a RayJob ``activeDeadlineSeconds`` after ``status.startTime``
  (ray-operator/controllers/ray/rayjob_controller.go:1234-1245, reason DeadlineExceeded, not
  retried: :543) and then shuts its cluster down (shutdownAfterJobFinishes, :442).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mini_o3.kfp import bodies, deadlines
from mini_o3.launch import cleanup, rayjob_manifest
from mini_o3.launch.cleanup import RUN_ID_LABEL, cleanup_run
from mini_o3.stages import StageError

REPO = Path(__file__).resolve().parents[2]
RUN = "6f1c2a9e-1b7d-4c55-9a0e-3f2b8d7c1e44"


def rayjob(name: str, deployment: str | None, job: str | None = None, deleting: bool = False) -> dict:
    meta = {"name": name, "labels": {RUN_ID_LABEL: RUN}}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T10:00:00Z"
    status = {k: v for k, v in (("jobDeploymentStatus", deployment), ("jobStatus", job)) if v}
    return {"metadata": meta, **({"status": status} if status else {})}


class RecordedApi:
    """CustomObjectsApi replaying what the exit handler's list calls returned, one list per call
    (the last one repeats); DELETE calls are recorded."""

    def __init__(self, lists: list[list[dict]]) -> None:
        self.lists, self.calls, self.deleted, self.selectors = lists, 0, [], []

    def list_namespaced_custom_object(self, group, version, namespace, plural, label_selector=""):
        assert (group, version, plural) == ("ray.io", "v1", "rayjobs") and namespace == "ml"
        self.selectors.append(label_selector)
        items = self.lists[min(self.calls, len(self.lists) - 1)]
        self.calls += 1
        return {"items": [i for i in items if i["metadata"]["name"] not in self.deleted]}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, propagation_policy=None):
        assert propagation_policy == "Background"
        self.deleted.append(name)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


#: (what the exit handler's list calls return after a KFP terminate, what it deletes, what it keeps)
SEQUENCES = {
    # the launcher got SIGTERM while its RayJob ran and was SIGKILLed before the DELETE landed
    "killed-before-delete": ([[rayjob("mo3-rl-a", "Running", "RUNNING")]], ["mo3-rl-a"], []),
    # SIGTERM came while the launcher was creating the RayJob: it appears after the first list
    "created-during-grace-period": ([[], [], [rayjob("mo3-sft-a", "Initializing")], []], ["mo3-sft-a"], []),
    # not yet admitted (Kueue) / between retries / no status yet: all still hold or will hold GPUs
    "suspended-retrying-new": ([[rayjob("mo3-rl-a", "Suspended"), rayjob("mo3-rl-b", "Retrying", "FAILED"),
                                 rayjob("mo3-sft-a", None)]], ["mo3-rl-a", "mo3-rl-b", "mo3-sft-a"], []),
    # the launcher's own DELETE is in flight; the SFT RayJob failed earlier (cluster gone, kept for describe)
    "launcher-won-the-race": ([[rayjob("mo3-rl-a", "Running", "RUNNING", deleting=True),
                                rayjob("mo3-sft-a", "Failed", "FAILED")]], [], ["mo3-rl-a", "mo3-sft-a"]),
    # the deadline fired: KubeRay reports Failed / DeadlineExceeded and shuts the cluster down itself
    "deadline-exceeded": ([[rayjob("mo3-rl-a", "Failed")]], [], ["mo3-rl-a"]),
}


@pytest.mark.parametrize("case", sorted(SEQUENCES))
def test_exit_handler_deletes_exactly_the_live_rayjobs_of_a_cancelled_run(case):
    lists, deleted, kept = SEQUENCES[case]
    api, clock = RecordedApi(lists), Clock()
    report = cleanup_run(api, "ml", RUN, settle=True, clock=clock, sleep=clock.sleep, echo=lambda m: None)
    assert api.deleted == deleted and report.deleted == deleted and sorted(report.kept) == sorted(kept)
    assert set(api.selectors) == {f"{RUN_ID_LABEL}={RUN}"}  # only this run's RayJobs
    # it keeps looking for SETTLE_S after the last live RayJob it saw, then stops
    last_live = max((i for i, items in enumerate(lists) if cleanup.live(items)), default=0)
    assert clock.now >= last_live * cleanup.POLL_S + cleanup.SETTLE_S - cleanup.POLL_S
    assert clock.now <= cleanup.MAX_S


def test_a_succeeded_run_is_checked_once():
    api, clock = RecordedApi([[rayjob("mo3-rl-a", "Complete", "SUCCEEDED")]]), Clock()
    report = cleanup_run(api, "ml", RUN, settle=False, clock=clock, sleep=clock.sleep, echo=lambda m: None)
    assert (api.calls, api.deleted, report.kept, clock.now) == (1, [], ["mo3-rl-a"], 0.0)


def test_a_launcher_that_keeps_recreating_does_not_hold_the_exit_handler_forever():
    api, clock = RecordedApi([[rayjob(f"mo3-rl-{i}", "Initializing")] for i in range(200)]), Clock()
    report = cleanup_run(api, "ml", RUN, settle=True, clock=clock, sleep=clock.sleep, echo=lambda m: None)
    assert clock.now <= cleanup.MAX_S and len(report.deleted) == api.calls


def test_outside_a_cluster_nothing_is_looked_up(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert cleanup.cleanup_run_in_cluster(RUN, succeeded=False) is None


@pytest.mark.parametrize(("state", "settle"), [("SUCCEEDED", False), ("FAILED", True), ("CANCELED", True)])
def test_finish_run_cleans_up_before_closing_mlflow(monkeypatch, state, settle):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "none")  # the platform ConfigMap: tracking off
    calls = []
    monkeypatch.setattr(cleanup, "cleanup_run_in_cluster", lambda run_id, succeeded: calls.append((run_id, succeeded)))
    status = bodies.finish_run(storage_root="", kfp_run_id=RUN, pipeline="mini-o3-train", experiment="e",
                               state=state)
    assert calls == [(RUN, not settle)] and status == ("FINISHED" if state == "SUCCEEDED" else "FAILED")


def _package(name: str) -> tuple[dict, dict]:
    spec, platform = list(yaml.safe_load_all((REPO / "pipelines" / name).read_text()))
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def _components_under(spec: dict, component: str) -> set[str]:
    found, todo = set(), [component]
    while todo:
        current = todo.pop()
        for task in (spec["components"][current].get("dag") or {}).get("tasks", {}).values():
            ref = task["componentRef"]["name"]
            if ref not in found:
                found.add(ref)
                todo.append(ref)
    return found


@pytest.mark.slow
def test_finish_run_is_the_exit_hook_around_every_launcher():
    """finish-run must be the ExitHandler's exit task (compiled to an Argo exit hook, which runs after a
    terminate) and every SFT / RL launcher must sit inside that handler."""
    spec, _ = _package("train.yaml")
    root = spec["root"]["dag"]["tasks"]
    (handler,) = [name for name, task in root.items() if task["componentRef"]["name"].startswith("comp-exit-handler")]
    finish = root["finish-run"]
    assert finish["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED" and finish["dependentTasks"] == [handler]
    inside = _components_under(spec, root[handler]["componentRef"]["name"])
    launchers = {c for c in spec["components"] if c.split("-")[1] in ("sft", "rl") and "executorLabel" in spec["components"][c]}
    assert launchers and launchers <= inside
    assert "kfp_run_id" in spec["components"]["comp-finish-run"]["inputDefinitions"]["parameters"]


def _plans(overrides: list[str] = ()):
    from mini_o3.dispatch import remote_stage

    root = f"s3://b/runs/{RUN}"
    plans = {}
    for stage in ("rl", "sft"):
        launch = bodies.stage_launch(stage, run_root=root, mode="rayjob", ray_address="", workers=2, gpus_per_worker=8,
                                     node_selector={}, tolerations=[], overrides=list(overrides),
                                     s3_secret_name="mini-o3-s3", judge_secret_name="mini-o3-judge",
                                     hf_token_secret_name="mini-o3-hf-token", work_volume_claim="work",
                                     service_account="mini-o3",
                                     image="registry.local/mini-o3-rl:1", engine="verl")
        common = dict(run_root=root, overrides=[], launch=launch, parent_run_id="")
        request = (bodies.sft_request(data_uri="s3://b/d", model="hf://Qwen/Qwen2.5-VL-7B-Instruct", **common)
                   if stage == "sft" else
                   bodies.rl_request(engine="verl", model_uri="s3://b/m", train_uri="s3://b/t", val_uri="", gpus=8,
                                     **common))
        plans[stage] = remote_stage(request)
    return plans


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["sft", "rl"])
def test_rayjobs_carry_the_run_id_and_end_before_their_launcher_task(stage, monkeypatch):
    monkeypatch.setenv("POD_NAMESPACE", "ml")
    plan = _plans()[stage]
    manifest = rayjob_manifest(plan.argv, plan.settings, name=plan.name)
    assert manifest["metadata"]["labels"][RUN_ID_LABEL] == RUN
    cluster = manifest["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"]),
            manifest["spec"]["submitterPodTemplate"]]
    assert all(p["metadata"]["labels"][RUN_ID_LABEL] == RUN for p in pods)
    deadline = manifest["spec"]["activeDeadlineSeconds"]
    _, executors = _package("train.yaml")
    task_deadlines = {int(e["activeDeadlineSeconds"]) for name, e in executors.items() if name.split("-")[1] == stage}
    assert task_deadlines == {deadlines.TASK_TIMEOUTS[stage]}  # the compiled packages carry these numbers
    assert deadline == deadlines.TASK_TIMEOUTS[stage] - deadlines.MARGIN_S < min(task_deadlines)


def test_a_shorter_deadline_wins_a_longer_or_none_is_refused():
    assert _plans(["active_deadline_seconds=3600"])["rl"].settings.active_deadline_seconds == 3600
    with pytest.raises(StageError, match=r"rl: launch.active_deadline_seconds=9999999 exceeds 604200"):
        _plans(["active_deadline_seconds=9999999"])
    with pytest.raises(StageError, match="rl: launch.active_deadline_seconds is unset"):
        _plans(["active_deadline_seconds=null"])


def test_labels_are_validated():
    from mini_o3.launch import LaunchSettings

    with pytest.raises(ValueError, match="label mini-o3/x='bad value!'"):
        LaunchSettings(labels={"mini-o3/x": "bad value!"})
