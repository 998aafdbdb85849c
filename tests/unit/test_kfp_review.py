"""``mini-o3 rayjob-manifest`` (requirement 12): the RayJob printed for review is the one the train
pipeline's launcher component submits for the same parameters (compared against the component run
on a fake Kubernetes API), valid against the KubeRay v1.7.0 CRD schema, on stdout only."""

from __future__ import annotations

import copy

import pytest
import yaml
from fixtures.kube_client import NS
from fixtures.stage_cluster import stage_cluster_fixture  # noqa: F401 (registers `cluster`)
from typer.testing import CliRunner

from mini_o3.cli import app
from mini_o3.kfp import components
from mini_o3.kfp.review import launcher_inputs, rayjob_for, remote_plan
from mini_o3.launch import validate_rayjob
from mini_o3.stages import parse_request

VOLUME = {"p0_work_volume_claim": "mini-o3-work"}
CASES = {
    "rl": ("rl", {**VOLUME, "p3_rl_workers": 2, "p3_rl_overrides": ["total_training_steps=5"]}),
    "rl-rule-scoring": ("rl", {**VOLUME, "p0_judge_enabled": False}),
    "sft": ("sft", {**VOLUME, "p2_sft_launch_mode": "rayjob", "p2_sft_workers": 2, "p2_sft_gpus": "4"}),
}


class Metrics:
    def log_metric(self, key, value):
        pass


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_the_printed_rayjob_is_what_the_launcher_component_submits(case, cluster, monkeypatch, tmp_path):
    stage, params = CASES[case]
    params = {**params, "p0_storage_root": str(tmp_path / "runs")}  # the fake remote stage seals there
    monkeypatch.setenv("OPENAI_API_KEY", "k")  # the launcher pod's mounted judge Secret
    inputs = launcher_inputs(stage, params, run_id="run-7")
    getattr(components, stage)(**inputs, metrics=Metrics())
    submitted = copy.deepcopy(cluster.manifest)
    submitted["metadata"].pop("ownerReferences")  # the launcher pod; a review has none
    assert rayjob_for(stage, params, run_id="run-7", namespace=NS) == submitted
    assert remote_plan(stage, params, run_id="run-7").request == cluster.request  # and the request it sealed


@pytest.mark.slow
def test_cli_prints_valid_yaml_with_the_given_parameters_on_stdout():
    runner = CliRunner()
    done = runner.invoke(app, ["rayjob-manifest", "--stage", "rl", "--param", "work_volume_claim=shared",
                               "--param", "p3_rl_workers=1", "--param", "rl_overrides=[rollout_n=4]",
                               "--run-id", "abc", "--namespace", "team-a"])
    assert done.exit_code == 0, done.stderr
    manifest = yaml.safe_load(done.stdout)
    validate_rayjob(manifest)
    assert manifest["metadata"]["namespace"] == "team-a" and manifest["metadata"]["name"].startswith("mo3-rl-abc-")
    assert manifest["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["replicas"] == 1
    assert manifest["spec"]["entrypoint"] == "mini-o3 stage run s3://mini-o3/runs/abc/rl-request"
    request = parse_request("".join(line[2:] + "\n" for line in done.stdout.splitlines()[1:] if line.startswith("# ")))
    assert request.stage == "rl" and request.overrides == ["rollout_n=4"] and request.nnodes == 1
    assert request.out_uri == "s3://mini-o3/runs/abc/rl"


@pytest.mark.parametrize("args, message", [
    (["--stage", "eval"], "unknown stage 'eval'"),
    (["--stage", "sft"], "p2_sft_launch_mode=rayjob"),
    (["--stage", "rl"], "launch.work_volume_claim is not set"),
    (["--stage", "rl", "--param", "p3_rl_gpus_per_worker=eight", "--param", "work_volume_claim=w"], "gpus_per_worker"),
    (["--stage", "rl", "--param", "nope=1"], "unknown parameter 'nope'"),
])
@pytest.mark.slow
def test_cli_refuses_what_no_run_could_submit(args, message):
    done = CliRunner().invoke(app, ["rayjob-manifest", *args])
    assert done.exit_code == 2 and message in " ".join(done.stderr.split()) and not done.stdout
