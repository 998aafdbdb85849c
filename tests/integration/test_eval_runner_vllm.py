"""``vllm:MODEL`` is a policy kind of its own: the runner serves MODEL for the run (a fake ``vllm
serve`` that runs the scripted OpenAI-compatible server on the port it is given) and the spec,
hence the config hash and the sample store, names the model: a second model, or another
checkpoint written to the same folder, never "resumes" the first one's samples. Scored under the
default paper protocol through the scripted judge."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from mini_o3.data.synthetic import SynthConfig, generate
from mini_o3.evaluate.config import EvalConfig
from mini_o3.judge.config import JudgeConfig
from mini_o3.rollout.model_identity import model_fingerprint
from mini_o3.evaluate.runner import EvalError, run_eval

N_TEST = 3
TESTS = Path(__file__).resolve().parents[1]

FAKE_VLLM = textwrap.dedent('''
    import os, sys, time
    sys.path.insert(0, os.environ["FAKE_TESTS_DIR"])
    import fixtures.scripted_server as scripted
    from mini_o3.data.bench import read_records, sample_meta
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    with open(os.environ["FAKE_LAUNCHES"], "a") as log:
        log.write(args[0] + "\\n")
    bound = scripted.ThreadingHTTPServer
    scripted.ThreadingHTTPServer = lambda address, handler: bound(("127.0.0.1", port), handler)
    items = [scripted.ScriptedItem(r.problem.replace("<image>\\n", "", 1), r.answer, tuple(sample_meta(r).target_bbox_rel))
             for r in read_records(os.environ["FAKE_BENCH"])]
    scripted.ScriptedServer(items={i.question: i for i in items}, lifetime_s=600).start()
    time.sleep(600)
''')


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "synth"
    generate(SynthConfig(width_range=(512, 640), height_range=(512, 640)), out, 1, N_TEST, 5, progress=False)
    return out


def _model(folder: Path, weights: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text('{"num_attention_heads": 2}')
    (folder / "model.safetensors").write_bytes(weights)
    return folder


@pytest.fixture
def config(bench, tmp_path, monkeypatch, scripted_server) -> EvalConfig:
    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE_VLLM)
    monkeypatch.setenv("FAKE_TESTS_DIR", str(TESTS))
    monkeypatch.setenv("FAKE_BENCH", str(bench / "val.parquet"))
    monkeypatch.setenv("FAKE_LAUNCHES", str(tmp_path / "launches.txt"))
    judge = scripted_server()
    return EvalConfig(
        k=1, max_turns=3, max_images=3, concurrency=3, openai={"max_retries": 2, "backoff_s": 0.0},
        judge=JudgeConfig(api="openai", base_url=judge.base_url, model="judge", retry_sleep_s=0.0),
        serve={"executable": [sys.executable, str(script)], "served_model_name": "no_zoom", "health_timeout_s": 120,
               "log_path": str(tmp_path / "vllm.log")},
    )


def _launches(tmp_path: Path) -> list[str]:
    path = tmp_path / "launches.txt"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
def test_vllm_spec_names_the_model_and_resume_never_mixes_models(bench, config, tmp_path):
    one, two = _model(tmp_path / "one", b"weights of model one"), _model(tmp_path / "two", b"weights of model two")
    out = tmp_path / "eval"
    first = run_eval(f"vllm:{one}", [bench], out, config, progress=False)
    assert first.report["policy"] == f"vllm:{one.resolve()}@{model_fingerprint(one)}"
    assert first.new_samples == N_TEST and first.avg_at_k("synth") == 1.0
    assert first.report["protocol"]["name"] == "paper" and first.report["benchmarks"]["synth"]["overall"]["behaviour"]["judge_calls"] == N_TEST
    assert _launches(tmp_path) == [str(one)]

    again = run_eval(f"vllm:{one}", [bench], out, config, progress=False)
    assert again.new_samples == 0 and again.config_hash == first.config_hash
    assert len(_launches(tmp_path)) == 1  # nothing to roll out: no server started

    second = run_eval(f"vllm:{two}", [bench], out, config, progress=False)
    assert second.new_samples == N_TEST and second.config_hash != first.config_hash
    assert second.report["policy"].startswith(f"vllm:{two.resolve()}@")

    (one / "model.safetensors").write_bytes(b"weights of model one, retrained")  # same path, other checkpoint
    third = run_eval(f"vllm:{one}", [bench], out, config, progress=False)
    assert third.new_samples == N_TEST and third.config_hash not in (first.config_hash, second.config_hash)
    assert len(_launches(tmp_path)) == 3


def test_vllm_server_failure_is_an_eval_error(bench, config, tmp_path):
    broken = config.model_copy(update={"serve": {**config.serve, "executable": [str(tmp_path / "no-such-vllm")]}})
    with pytest.raises(EvalError, match="cannot start"):
        run_eval(f"vllm:{_model(tmp_path / 'm', b'w')}", [bench], tmp_path / "eval", broken, progress=False)
