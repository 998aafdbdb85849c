"""vLLM launch: exact command line, and health / stop logic against fake server processes."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mini_o3.rollout.serve import (
    ServeConfig,
    ServeError,
    VLLMServer,
    serve,
    vllm_command,
)

FAKE = textwrap.dedent('''
    import json, os, signal, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer
    args = sys.argv[1:]
    opt = lambda name: args[args.index(name) + 1]
    mode, port, name = os.environ["FAKE_MODE"], int(opt("--port")), opt("--served-model-name")
    print("fake vllm starting", args[0], flush=True)
    if mode == "die":
        print("CUDA out of memory (fake)", flush=True); sys.exit(3)
    if mode == "never":
        time.sleep(600)
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, lambda *a: print("ignoring SIGTERM", flush=True))
    time.sleep(float(os.environ.get("FAKE_DELAY", "0.3")))
    served = "other" if mode == "wrong_name" else name
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def do_GET(self):
            body = b"" if self.path == "/health" else json.dumps({"data": [{"id": served}]}).encode()
            self.send_response(200 if self.path in ("/health", "/v1/models") else 404)
            self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    print("ready", flush=True)
    HTTPServer(("127.0.0.1", port), H).serve_forever()
''')


def test_command_line_exact():
    config = ServeConfig(model="/models/mini-o3", allowed_local_media_path="/data/bench")
    assert vllm_command(config) == [
        "vllm", "serve", "/models/mini-o3",
        "--served-model-name", "policy", "--host", "127.0.0.1", "--port", "8000",
        "--max-model-len", "32768", "--limit-mm-per-prompt", '{"image":12}',
        "--generation-config", "vllm", "--dtype", "bfloat16", "--seed", "0",
        "--gpu-memory-utilization", "0.9", "--tensor-parallel-size", "1",
        "--chat-template-content-format", "openai",
        "--allowed-local-media-path", "/data/bench",
    ]


def test_command_line_pixels_and_extras():
    config = ServeConfig(model="m", max_pixels=2_000_000, limit_mm_per_prompt={"image": 13, "video": 0},
                         chat_template_content_format=None, extra_args=["--max-num-seqs", "256"], port=9)
    cmd = vllm_command(config)
    assert "--mm-processor-kwargs" in cmd and json.loads(cmd[cmd.index("--mm-processor-kwargs") + 1]) == {"max_pixels": 2_000_000}
    assert "min_pixels" not in " ".join(cmd)  # never overridden unless asked
    assert cmd[cmd.index("--limit-mm-per-prompt") + 1] == '{"image":13,"video":0}'
    assert "--chat-template-content-format" not in cmd and cmd[-2:] == ["--max-num-seqs", "256"]
    assert vllm_command(config, port=1234)[cmd.index("--port") + 1] == "1234"
    with_min = vllm_command(ServeConfig(model="m", min_pixels=40000, max_pixels=2_000_000))
    assert json.loads(with_min[with_min.index("--mm-processor-kwargs") + 1]) == {"min_pixels": 40000, "max_pixels": 2_000_000}
    with pytest.raises(ValueError):
        ServeConfig(model="m", gpu_memory_utilization=1.5)


def _config(tmp_path: Path, mode: str, monkeypatch, **kw) -> ServeConfig:
    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE)
    monkeypatch.setenv("FAKE_MODE", mode)
    return ServeConfig(model="tiny", port=0, executable=[sys.executable, str(script)],
                       log_path=str(tmp_path / "server.log"), **kw)


def test_healthy_then_stopped(tmp_path, monkeypatch):
    server = VLLMServer(_config(tmp_path, "ok", monkeypatch), poll_s=0.05)
    with server:
        assert server.alive() and server.base_url == f"http://127.0.0.1:{server.port}/v1"
        pid = server.process.pid
    assert not server.alive() and server.process.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "fake vllm starting tiny" in Path(tmp_path / "server.log").read_text()


def test_dies_with_log_tail(tmp_path, monkeypatch):
    with pytest.raises(ServeError, match=r"exited with code 3(.|\n)*CUDA out of memory"):
        VLLMServer(_config(tmp_path, "die", monkeypatch), poll_s=0.05).start()


def test_never_healthy_times_out_and_is_killed(tmp_path, monkeypatch):
    server = VLLMServer(_config(tmp_path, "never", monkeypatch, health_timeout_s=1.0), poll_s=0.05)
    t0 = time.monotonic()
    with pytest.raises(ServeError, match=r"not healthy after 1s(.|\n)*fake vllm starting"):
        server.start()
    assert time.monotonic() - t0 < 10 and not server.alive()


def test_wrong_served_name(tmp_path, monkeypatch):
    with pytest.raises(ServeError, match="serves \\['other'\\], not 'policy'"):
        VLLMServer(_config(tmp_path, "wrong_name", monkeypatch), poll_s=0.05).start()


def test_sigkill_after_grace(tmp_path, monkeypatch):
    server = VLLMServer(_config(tmp_path, "ignore_term", monkeypatch, stop_timeout_s=0.5), poll_s=0.05).start()
    t0 = time.monotonic()
    code = server.stop()
    assert code == -9 and time.monotonic() - t0 < 5


def test_missing_executable(tmp_path):
    config = ServeConfig(model="m", port=0, executable=[str(tmp_path / "no-vllm")], log_path=str(tmp_path / "l.log"))
    with pytest.raises(ServeError, match="cannot start"):
        VLLMServer(config).start()


def test_serve_raises_when_server_dies(tmp_path, monkeypatch):
    config = _config(tmp_path, "ok", monkeypatch)
    lines: list[str] = []
    real = VLLMServer.wait_healthy

    def healthy_then_crash(self: VLLMServer) -> None:
        real(self)
        self.process.kill()

    monkeypatch.setattr(VLLMServer, "wait_healthy", healthy_then_crash)
    with pytest.raises(ServeError, match="exited with code -9"):
        serve(config, echo=lines.append)
    assert lines and "serving 'policy'" in lines[0]


def _model(tmp_path: Path, text_heads: int, vision_heads: int = 16) -> Path:
    (tmp_path / "config.json").write_text(json.dumps({"text_config": {"num_attention_heads": text_heads},
                                                      "vision_config": {"num_heads": vision_heads}}))
    return tmp_path


@pytest.mark.parametrize(("gpus", "heads", "expected"), [(1, 28, (1, 1)), (8, 28, (4, 2)), (4, 28, (4, 1)),
                                                         (2, 28, (2, 1)), (8, 32, (8, 1)), (3, 28, (1, 3))])
def test_parallelism_splits_gpus_the_model_can_shard(tmp_path, gpus, heads, expected):
    """Qwen2.5-VL-7B has 28 attention heads: vLLM refuses tensor-parallel 8, so 8 GPUs serve 2 x TP4."""
    from mini_o3.rollout.serve import parallelism

    assert parallelism(_model(tmp_path, heads), gpus) == expected


def test_eval_server_follows_the_eval_config(tmp_path):
    """The served limits are the evaluation's: the 32-turn / 32-image headline setting must not be
    refused by a server still capped at 12 images."""
    from mini_o3.evaluate.config import EvalConfig
    from mini_o3.rollout.serve import eval_serve_config

    config = EvalConfig(max_images=32, max_context=40000)
    serve_config = eval_serve_config(_model(tmp_path, 28), config, gpus=8)
    cmd = vllm_command(serve_config)
    assert cmd[cmd.index("--limit-mm-per-prompt") + 1] == '{"image":32}'
    assert cmd[cmd.index("--max-model-len") + 1] == "40000"
    assert cmd[cmd.index("--tensor-parallel-size") + 1] == "4" and cmd[cmd.index("--data-parallel-size") + 1] == "2"
    default = vllm_command(eval_serve_config(tmp_path, EvalConfig(), gpus=1))
    assert default[default.index("--limit-mm-per-prompt") + 1] == '{"image":12}' and "--data-parallel-size" not in default
