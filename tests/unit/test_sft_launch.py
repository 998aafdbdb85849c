"""Launching: torchrun / Ray environment, log streaming, progress records, failure messages."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from mini_o3.sft import SFTConfig, SFTError
from mini_o3.sft.files import llamafactory_args
from mini_o3.sft.launch import (
    TrainerLogReader,
    failure_message,
    run_training,
    training_command,
    training_env,
)

BASE_ENV = {"PATH": "/usr/bin", "FORCE_TORCHRUN": "1", "USE_RAY": "1", "HOME": "/root"}


def _config(*overrides: str) -> SFTConfig:
    return SFTConfig().with_overrides(list(overrides))


def test_auto_mode_without_deepspeed_is_a_plain_process():
    env = training_env(_config("deepspeed=none"), BASE_ENV)
    assert "FORCE_TORCHRUN" not in env and "USE_RAY" not in env  # our launch.mode wins over the parent env
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)  # torchrun of this venv
    assert env["PYTHONUNBUFFERED"] == "1" and env["HOME"] == "/root"


def test_auto_mode_with_deepspeed_forces_torchrun():
    env = training_env(_config(), {"NODE_RANK": "0"})
    assert env["FORCE_TORCHRUN"] == "1" and env["NODE_RANK"] == "0"
    assert not {"NNODES", "NPROC_PER_NODE", "MASTER_ADDR", "MASTER_PORT"} & set(env)  # LLaMA-Factory defaults


def test_multi_node_torchrun_env():
    config = _config(
        "launch.mode=torchrun", "launch.nnodes=4", "launch.node_rank=3", "launch.nproc_per_node=8",
        "launch.master_addr=sft-0.sft", "launch.master_port=29500", "launch.env.NCCL_DEBUG=INFO",
    )
    env = training_env(config, {**BASE_ENV, "NODE_RANK": "0", "MASTER_ADDR": "stale"})
    assert {k: env[k] for k in ("FORCE_TORCHRUN", "NNODES", "NODE_RANK", "NPROC_PER_NODE", "MASTER_ADDR", "MASTER_PORT", "NCCL_DEBUG")} == {
        "FORCE_TORCHRUN": "1", "NNODES": "4", "NODE_RANK": "3", "NPROC_PER_NODE": "8",
        "MASTER_ADDR": "sft-0.sft", "MASTER_PORT": "29500", "NCCL_DEBUG": "INFO",
    }
    assert "USE_RAY" not in env


def test_torchrun_inherits_a_job_controllers_env_and_needs_a_master_for_several_nodes():
    env = training_env(_config("launch.mode=torchrun"), {"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "head"})
    assert (env["FORCE_TORCHRUN"], env["NNODES"], env["NODE_RANK"], env["MASTER_ADDR"]) == ("1", "2", "1", "head")
    with pytest.raises(SFTError, match="NNODES=2.* needs MASTER_ADDR"):
        training_env(_config("launch.mode=torchrun", "launch.nnodes=2", "launch.node_rank=1"), {})


def test_ray_mode_env_and_yaml_keys(tmp_path: Path):
    config = _config(
        "launch.mode=ray", "launch.ray_num_workers=16", "launch.ray_init_kwargs.address=auto",
        "launch.master_addr=10.0.0.5", "launch.master_port=29500",
    )
    env = training_env(config, BASE_ENV)
    assert env["USE_RAY"] == "1" and "FORCE_TORCHRUN" not in env and "MASTER_ADDR" not in env  # yaml keys instead
    args = llamafactory_args(config, run_dir=tmp_path, output_dir=tmp_path / "model", media_dir=tmp_path, deepspeed_path=None)
    assert (args["ray_num_workers"], args["ray_init_kwargs"]) == (16, {"address": "auto"})
    assert (args["master_addr"], args["master_port"]) == ("10.0.0.5", "29500")
    plain = llamafactory_args(_config(), run_dir=tmp_path, output_dir=tmp_path, media_dir=tmp_path, deepspeed_path=None)
    assert not {"ray_num_workers", "ray_init_kwargs", "master_addr"} & set(plain)


def test_torchrun_cannot_take_a_path_with_spaces(tmp_path: Path):
    yaml_path = tmp_path / "my run" / "x.yaml"
    with pytest.raises(SFTError, match="contains whitespace"):
        training_command(yaml_path, _config("launch.mode=torchrun"))
    assert training_command(yaml_path, _config("deepspeed=none"))[-1] == str(yaml_path)


# -- running ---------------------------------------------------------------------------------

FAKE_TRAINER = r"""
import json, sys, time
log = open(sys.argv[1], "a")
for step, loss in ((1, 2.5), (2, 2.0)):
    log.write(json.dumps({"current_steps": step, "total_steps": 2, "loss": loss}) + "\n"); log.flush()
    sys.stderr.write(f"\r {step * 50}%|#####     | {step}/2 [00:01<00:01, 1.00it/s]")
    print(f"step {step} done", flush=True)
    time.sleep(0.3)
print("Traceback (most recent call last):")
print("    x = load()")
print("        ^^^^^^")
print("OSError: Can't load tokenizer for 'no/such'", flush=True)
print("ValueError: Failed to load tokenizer.", flush=True)
sys.exit(3)
"""


@pytest.mark.parametrize("progress", [True, False])
def test_streams_to_log_and_explains_failure(tmp_path: Path, progress: bool, capfd):
    trainer_log = tmp_path / "model" / "trainer_log.jsonl"
    trainer_log.parent.mkdir()
    log_path = tmp_path / "train.log"
    log_path.write_text("earlier attempt\n")
    cmd = [sys.executable, "-c", FAKE_TRAINER, str(trainer_log)]
    run = run_training(cmd, dict(os.environ), log_path=log_path, trainer_log=trainer_log, progress=progress)
    assert run.returncode == 3 and run.seconds > 0.5
    text = log_path.read_text()
    assert text.startswith("earlier attempt\n") and "===== mini-o3 sft" in text  # appended, not replaced
    assert "50%|#####" in text and "step 2 done" in text  # everything, tqdm bars included
    assert run.tail[:2] == ["step 1 done", "step 2 done"] and not any("%|" in line for line in run.tail)
    assert "        ^^^^^^" not in run.tail
    console = capfd.readouterr().err
    assert "step 2 done" in console
    if progress:
        assert "%|#####" not in console and "loss 2.0000" in console
    message = failure_message(run, "of 'no/such' on /data/x.json")
    assert message.startswith("LLaMA-Factory training of 'no/such' on /data/x.json failed (exit code 3) after ")
    assert "\n  OSError: Can't load tokenizer for 'no/such'\n  ValueError: Failed to load tokenizer.\n" in message
    assert "  | step 2 done" in message and message.endswith(f"Full log: {log_path}")


def test_signal_and_silent_failures_are_described(tmp_path: Path):
    cmd = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    run = run_training(cmd, dict(os.environ), log_path=tmp_path / "train.log", progress=False)
    assert run.returncode == -9
    message = failure_message(run)
    assert "(killed by signal 9)" in message and "(no output)" in message


def test_trainer_log_reader_reads_complete_lines_only(tmp_path: Path):
    path = tmp_path / "trainer_log.jsonl"
    reader = TrainerLogReader(path)
    assert reader.poll() == []
    path.write_text(json.dumps({"current_steps": 1}) + "\n" + '{"current_st')
    assert reader.poll() == [{"current_steps": 1}]
    with path.open("a") as f:
        f.write('eps": 2}\n')
    assert reader.poll() == [{"current_steps": 2}]
    path.write_text(json.dumps({"current_steps": 1, "loss": 3.0}) + "\n")  # rewritten from scratch
    assert reader.poll() == [{"current_steps": 1, "loss": 3.0}]


def test_sigterm_stops_the_training_process_group(tmp_path: Path):
    import signal
    import threading

    before = signal.getsignal(signal.SIGTERM)  # SIG_DFL, or a handler an earlier in-process ray.init left
    pid_file = tmp_path / "pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    timer = threading.Timer(1.0, os.kill, args=(os.getpid(), signal.SIGTERM))
    timer.start()
    with pytest.raises(SystemExit) as caught:
        run_training([sys.executable, "-c", child], dict(os.environ), log_path=tmp_path / "train.log", progress=False)
    timer.join()
    assert caught.value.code == 128 + signal.SIGTERM
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)
    assert signal.getsignal(signal.SIGTERM) is before  # the caller's handler restored
