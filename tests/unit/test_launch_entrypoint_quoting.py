"""Entrypoints are shell-safe: a hostile request URI reaches ``mini-o3 stage run`` unchanged through
every shell on the way, and hostile override values reach the stage unchanged through the sealed
request (requirement: entrypoints are shell-safe).

Path of a RayJob entrypoint (rules cited in ``fixtures/kuberay_submitter.py``): KubeRay v1.7.0
``common/job.go:90-213`` + ``rayjob_controller.go:642-645`` put ``spec.entrypoint`` into a
``/bin/bash -ce`` command; Ray 2.60 ``dashboard/modules/job/cli.py:312-317`` re-joins the words
after ``--`` with ``shlex.join``; ``job_supervisor.py:182-184`` runs that with ``shell=True``.
Mode ``ray`` skips the bash step (``JobSubmissionClient.submit_job`` → supervisor).
"""

from __future__ import annotations

import shlex

import pytest
from fixtures.kuberay_submitter import run_submitter
from fixtures.stage_cluster import parse_stage

from mini_o3.dispatch import remote_stage, seal_request
from mini_o3.kfp import bodies
from mini_o3.launch import LaunchSettings, build_rayjob
from mini_o3.stages import RLRequest, Tracking

HOSTILE = [
    "judge.model=a;touch PWNED", "x=$(touch PWNED)", "x=`touch PWNED`", "x=a|touch PWNED", "x=a&&touch PWNED",
    "x=a&", "x='quoted'", 'x="double $HOME"', "x=back\\slash", "x=new\nline", "x=*", "x=~", "x={a,b}",
    "x=$HOME", "x=!!", "x= spaced  out ", "x=#comment", "x=>PWNED", "x=a)(b",
]


@pytest.fixture
def plan(tmp_path):
    launch = bodies.stage_launch("rl", run_root="s3://b/runs/r-1", mode="rayjob", ray_address="", workers=0,
                                 gpus_per_worker=0, node_selector={}, tolerations=[], overrides=[],
                                 s3_secret_name="mini-o3-s3", judge_secret_name="", hf_token_secret_name="mini-o3-hf-token",
                                 work_volume_claim="")
    request = RLRequest(engine="local", model_uri="s3://b/m;touch PWNED", train_uris=["s3://b/t"],
                        out_uri="s3://b/runs/r-1/rl", overrides=HOSTILE, launch=launch,
                        tracking=Tracking("run$(id)", "http://mlflow`id`:5000"))
    return remote_stage(request, request_uri=str(tmp_path / "req;touch PWNED $(touch PWNED) `x` 'q'" / "rl-request"))


@pytest.mark.slow
def test_rayjob_entrypoint_survives_the_submitter_shell_the_cli_and_the_supervisor(plan, tmp_path):
    manifest = build_rayjob(plan.name, plan.argv, plan.settings, namespace="ns", owner={})
    got, sent = run_submitter(manifest["spec"]["entrypoint"], tmp_path)
    assert got == plan.argv[1:] and shlex.split(sent) == plan.argv
    assert not list(tmp_path.rglob("PWNED")), "an override value ran as a shell command"


def test_the_stage_cli_reads_the_hostile_overrides_back(plan):
    seal_request(plan.request, plan.request_uri)
    request = parse_stage(shlex.join(plan.argv))
    assert request.stage == "rl" and request.overrides == HOSTILE and request.model_uri == "s3://b/m;touch PWNED"
    assert request.tracking.parent_run_id == "run$(id)"


@pytest.mark.slow
def test_a_bare_joined_entrypoint_would_run_the_payload(tmp_path):
    """The sandbox is faithful: an unquoted entrypoint is interpreted by the submitter's shell."""
    run_submitter("mini-o3 stage rl --set judge.model=a;touch PWNED", tmp_path)
    assert list(tmp_path.rglob("PWNED"))


def test_ray_jobs_mode_sends_the_quoted_command(monkeypatch):
    from mini_o3.launch import ray_jobs

    sent = {}

    class Client:
        def get_job_info(self, sid):
            if "command" not in sent:
                raise RuntimeError("Job does not exist")
            return type("Info", (), {"status": "SUCCEEDED", "message": ""})()

        def submit_job(self, *, entrypoint, **kwargs):
            sent["command"] = entrypoint

        def get_job_logs(self, sid):
            return ""

        async def tail_job_logs(self, sid):
            return
            yield

    monkeypatch.setattr(ray_jobs, "_client", lambda address: Client())
    argv = ["mini-o3", "stage", "rl", "--set", HOSTILE[0], "--set", HOSTILE[1]]
    ray_jobs.run_ray_job(argv, LaunchSettings(mode="ray", ray_address="http://h:8265"), name="j", echo=lambda _: None,
                         poll_s=0)
    assert shlex.split(sent["command"]) == argv
