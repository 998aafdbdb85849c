"""The CLI reads like one tool: bad --out folders and malformed URIs are one line, help metavars
say what a flag takes, errors name the flag the user typed, `prepare list` never cuts a hub id."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mini_o3.cli import app


def _invoke(*args: str):
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "80"})
    assert "Traceback" not in result.output
    return result


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip()]


@pytest.mark.parametrize("command", [
    ["eval", "--policy", "openai:http://127.0.0.1:9/v1", "--bench", "B", "--protocol", "rule"],
    ["synth", "--n-train", "1", "--n-test", "1"],
    ["prepare", "bench", "--name", "synthetic", "--source", "B"],
    ["rl", "--model", "M", "--train", "B"],
    ["run", "--profile", "smoke"],
])
def test_out_that_is_a_file_is_one_line(tmp_path, command):
    (tmp_path / "FILE").write_text("x")
    for out, message in ((tmp_path / "FILE", "exists and is not a directory"),
                         (tmp_path / "FILE" / "sub", "FILE is not a directory"),
                         ("/proc/mini-o3-out", "is not writable")):
        result = _invoke(*command, "--out", str(out))
        assert result.exit_code == 2, result.output
        lines = _error_lines(result.output)
        assert len(lines) == 1 and lines[0].startswith("error: --out") and message in lines[0], result.output


@pytest.mark.parametrize("command", [
    ["stage", "eval", "--model-uri", "m", "--bench-uri", "b", "--backend", "local", "--set", "protocol=rule"],
    ["stage", "sft", "--data-uri", "d", "--model", "m"],
    ["stage", "rl", "--model-uri", "m", "--train-uri", "t"],
])
def test_stage_out_uri_that_is_a_file_or_malformed_is_one_line(tmp_path, command):
    (tmp_path / "FILE").write_text("x")
    for out, message in ((str(tmp_path / "FILE"), "exists and is not a directory"),
                         (f"file://{tmp_path}/FILE/sub", "FILE is not a directory"),
                         ("s3:/b", "malformed storage URI 's3:/b'")):
        result = _invoke(*command, "--out-uri", out)
        assert result.exit_code == 2, result.output
        lines = _error_lines(result.output)
        assert len(lines) == 1 and lines[0].startswith("error: --out-uri") and message in lines[0], result.output


def test_malformed_s3_uri_is_refused():
    from mini_o3 import storage

    for uri in ("s3:/b", "s3:b/key", "minio:/x", "file:/tmp/x"):
        with pytest.raises(storage.StorageError, match="malformed storage URI"):
            storage.is_remote(uri)
    assert storage.is_remote("s3://b/k") and not storage.is_remote("runs/s3:x")
    result = _invoke("stage", "eval", "--model-uri", "m", "--bench-uri", "s3:/b", "--out-uri", "out",
                     "--backend", "local", "--set", "protocol=rule")
    assert result.exit_code == 2 and "malformed storage URI 's3:/b'" in result.output


def test_help_metavars_say_what_a_flag_takes():
    text = _invoke("eval", "--help").output
    for shown in ("--policy SPEC", "--bench DIR", "--out DIR", "--k N", "--protocol paper|rule",
                  "--judge-failure score_zero|exclude", "--set KEY=VALUE", "openai:URL[#served-model]"):
        assert shown in text, shown
    synth = _invoke("synth", "--help").output
    assert "--width-range LOW HIGH" in synth and "<bool>" not in synth and "<str>" not in text
    assert "--overwrite " in synth and "--dry-run " in _invoke("rl", "--help").output


COMMANDS = ["synth", "prepare coldstart", "prepare bench", "tiny-model", "sft", "rl", "eval", "serve", "run",
            "compile", "upload", "submit", "schedule", "rayjob-manifest", "stage run", "stage sft", "stage rl", "stage eval"]


@pytest.mark.parametrize("command", COMMANDS)
def test_no_command_shows_a_type_name_for_a_metavar(command):
    """Type names (typer's <str>, <list[str]>, <int range>, <bool>; click's TEXT, INTEGER, PATH) say
    nothing about what a flag takes."""
    import re

    text = _invoke(*command.split(), "--help").output
    assert not re.search(r"--[a-z-]+ (TEXT|INTEGER|PATH|BOOLEAN|FLOAT|<[^>]+>)", text), text


def test_pipeline_command_metavars():
    run = _invoke("run", "--help").output
    assert "--out DIR" in run and "--param NAME=VALUE" in run and "--profile learn|smoke" in run
    stage = _invoke("stage", "eval", "--help").output
    assert "--backend vllm|local|openai:URL[#model]" in stage and "--k N" in stage and "--out-uri URI" in stage
    submit = _invoke("submit", "--help").output
    assert "--host URL" in submit and "--pipeline train|evaluate" in submit and "--timeout SECONDS" in submit


def test_errors_name_the_flag_typed(tmp_path):
    base = ["eval", "--policy", "openai:http://127.0.0.1:9/v1", "--bench", str(tmp_path), "--out", str(tmp_path / "o")]
    bad_choice = _invoke(*base, "--judge-failure", "nope")
    assert bad_choice.exit_code == 2 and "'--judge-failure'" in bad_choice.output
    bad_set = _invoke(*base, "--k", "1", "--protocol", "rule", "--set", "max_turns=0")
    assert bad_set.exit_code == 2 and "max_turns" in bad_set.output
    assert "k=1" not in bad_set.output and "protocol=rule" not in bad_set.output
    again = tmp_path / "synth"
    assert _invoke("synth", "--out", str(again), "--n-train", "1", "--n-test", "1",
                   "--width-range", "256", "256", "--height-range", "256", "256").exit_code == 0
    twice = _invoke("synth", "--out", str(again), "--n-train", "1", "--n-test", "1")
    assert twice.exit_code == 2 and "pass --overwrite" in twice.output and "--out" in twice.output
    assert "overwrite=True" not in twice.output and "out_dir" not in twice.output
    width = _invoke("synth", "--out", str(tmp_path / "w"), "--width-range", "3000", "2000")
    assert width.exit_code == 2 and "--width-range" in width.output and len(_error_lines(width.output)) == 1


def test_every_policy_kind_in_the_policy_spec_error(tmp_path):
    result = _invoke("eval", "--policy", "nonsense", "--bench", str(tmp_path), "--out", str(tmp_path / "o"),
                     "--protocol", "rule")
    assert result.exit_code == 2
    assert all(kind in result.output for kind in ("openai:URL", "vllm:MODEL", "local:DIR"))


def test_prepare_list_shows_every_hub_id_in_full():
    from mini_o3.data.bench import BENCHMARKS

    text = _invoke("prepare", "list").output
    for spec in BENCHMARKS.values():
        if spec.hub_id:
            assert spec.hub_id in text, spec.hub_id


def test_rl_run_that_cannot_learn_is_one_line(monkeypatch, tmp_path):
    """Rejection sampling out of batches (every group's rewards equal) ends in one line, exit 1."""
    import mini_o3.rl.local as local
    from mini_o3.rl.local.collect import NotEnoughValidGroups

    def barren(*args, **kwargs):
        raise NotEnoughValidGroups("no reward variance in 8 generation batches in a row")

    monkeypatch.setattr(local, "run_rl_local", barren)
    result = _invoke("rl", "--model", "M", "--train", "B", "--out", str(tmp_path / "o"))
    assert result.exit_code == 1 and _error_lines(result.output) == [
        "error: no reward variance in 8 generation batches in a row"], result.output
