"""A stage's hardware line says what it runs on (issue 17, req 8: no "8 x nvidia.com/gpu on this
pod" on a CPU run, which kfp.local — it ignores accelerators — produced for every GPU step)."""

from __future__ import annotations

from mini_o3.kfp import bodies


def test_in_process_stage_on_a_cpu_machine_says_cpu():
    line = bodies.hardware_line("sft", "inprocess", "nvidia.com/gpu", 8, 1, gpus_here=0)
    assert line == "[mini-o3] sft: mode inprocess, on CPU (no GPU on this machine)"
    assert "nvidia.com/gpu" not in bodies.hardware_line("evaluate", "local", "nvidia.com/gpu", 1, 1, gpus_here=0)


def test_gpu_pod_and_ray_workers():
    assert bodies.hardware_line("rl", "inprocess", "nvidia.com/gpu", 8, 1, gpus_here=8).endswith(
        "8 x nvidia.com/gpu on this pod")
    assert bodies.hardware_line("rl", "rayjob", "amd.com/gpu", 8, 4, gpus_here=0).endswith(
        "8 x amd.com/gpu on each of 4 Ray worker pod(s)")


def test_visible_gpus_honours_cuda_visible_devices(monkeypatch):
    monkeypatch.setattr("glob.glob", lambda pattern: ["/dev/nvidia0", "/dev/nvidia1"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert bodies.visible_gpus() == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert bodies.visible_gpus() == 0
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert bodies.visible_gpus() == 2
