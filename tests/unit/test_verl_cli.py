"""`mini-o3 rl --engine verl`: --dry-run prints the generated files and the full command; a real
run on a machine without GPUs / vLLM fails with a clear message, not a traceback."""

import json
import shlex

import pytest
from typer.testing import CliRunner

from mini_o3.cli import app
from mini_o3.data.synthetic import SynthConfig, generate


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "syn"
    generate(SynthConfig(width_range=(512, 576), height_range=(512, 576)), out, 2, 1, seed=0, progress=False)
    return out


def _rl(synth, out, *extra):
    args = ["rl", "--engine", "verl", "--model", "Mini-o3/Mini-o3-7B-SFT", "--train", str(synth), "--val", str(synth),
            "--out", str(out), "--nnodes", "2", "--gpus-per-node", "4", "--set", "train_batch_size=2",
            "--set", "ppo_mini_batch_size=2", "--set", "rollout_n=4", *extra]
    return CliRunner().invoke(app, args)


def test_dry_run_prints_files_and_command(synth, tmp_path):
    result = _rl(synth, tmp_path / "run", "--dry-run", "--verl-set", "actor_rollout_ref.model.lora_rank=8")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "agent_loops.yaml" in out and "mini_o3.rl.verl.agent_loop.MiniO3AgentLoop" in out
    assert "crop_tool.yaml" in out and "mini_o3.rl.verl.tool.CropTool" in out
    command = json.loads((tmp_path / "run" / "verl" / "command.json").read_text())
    printed = shlex.split(out[out.index("\npython \\\n") + 1:].replace("\\\n", " "))  # shell line continuations
    assert printed == command and printed[:3] == ["python", "-m", "mini_o3.rl.verl.main"]
    assert "trainer.nnodes=2" in command and "trainer.n_gpus_per_node=4" in command
    assert command[-1] == "actor_rollout_ref.model.lora_rank=8"
    assert (tmp_path / "run" / "verl" / "data" / "train.parquet").is_file()


def test_bad_settings_name_the_problem(synth, tmp_path):
    result = _rl(synth, tmp_path / "run", "--dry-run", "--set", "adv_eps=0.1")
    assert result.exit_code == 2 and "adv_eps" in result.output
    result = _rl(synth, tmp_path / "run", "--dry-run", "--set", "rollout_n=3")
    assert result.exit_code == 2 and "divisible" in result.output


def test_a_real_run_without_gpus_fails_cleanly(synth, tmp_path):
    result = _rl(synth, tmp_path / "run")
    assert result.exit_code == 2
    assert "error:" in result.output and ("vllm" in result.output or "GPU" in result.output)
    assert "Traceback" not in result.output


def test_gpu_check_trusts_the_ray_cluster_a_job_driver_joins():
    """A RayJob's entrypoint runs on the CPU head (RAY_ADDRESS set): the GPUs are on the workers."""
    import shutil

    import torch

    from mini_o3.rl.verl.run import VerlError, _check_gpus

    _check_gpus({"RAY_ADDRESS": "10.0.0.1:6379"})
    if torch.cuda.is_available() or shutil.which("nvidia-smi"):
        return
    with pytest.raises(VerlError, match="no GPU|none is visible"):
        _check_gpus({})  # this machine has no GPU and joins no cluster
