"""The embedded run's console hides kfp.local's executor dumps (issue 17, req 8).

The recorded log is one real task of ``mini-o3 run --profile smoke`` (kfp 2.17.3): kfp.local prints
the task subprocess's stdout indented by 4 (``kfp/local/logging_utils.py`` ``indented_print``) and
the executor logs its input as ``json.dumps(executor_input, indent=4)`` after
``Got executor_input:`` (``kfp/dsl/executor_main.py``, ``executor_main``)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

from mini_o3.kfp.local_log import ExecutorLogFilter, quiet_executor_logs

RECORDED = Path(__file__).parents[1] / "data" / "kfp_local" / "init_run_task.log"


def _filtered(text: str, chunk: int) -> str:
    out = io.StringIO()
    f = ExecutorLogFilter(out)
    for i in range(0, len(text), chunk):  # kfp.local writes line by line, print() may split a line
        f.write(text[i:i + chunk])
    f.flush()
    return out.getvalue()


def test_executor_dump_and_loading_lines_are_dropped_stage_lines_kept():
    text = RECORDED.read_text()
    assert "Got executor_input" in text and '"inputs"' in text
    for chunk in (1, 7, len(text)):
        shown = _filtered(text, chunk)
        assert "executor_input" not in shown and '"inputs"' not in shown and "outputFile" not in shown
        assert "Looking for component" not in shown and "Wrote executor output" not in shown
        assert "[mini-o3] run root /tmp/smoke/artifacts/81054161" in shown  # our stage line survives
        assert "Task \x1b[96m'init-run'\x1b[0m finished with status" in shown
        assert "parent_run_id: '94a4b8b254e04cb98e3adb12ee7f6ad2'" in shown  # kfp.local's outputs summary
        assert len(shown.splitlines()) < 15 < len(text.splitlines())


def test_a_nested_closing_brace_does_not_end_the_dump_early():
    text = ("    [KFP Executor 2026 INFO]: Got executor_input:\n    {\n        \"a\": {\n            \"b\": 1\n"
            "        }\n    }\n    [mini-o3] after\n")
    assert _filtered(text, 3) == "    [mini-o3] after\n"


def test_verbose_keeps_everything(capsys):
    with quiet_executor_logs(enabled=False):
        print("    [KFP Executor x INFO]: Got executor_input:\n    {\n    }")
    assert "Got executor_input" in capsys.readouterr().out
    with quiet_executor_logs(enabled=True):
        print("    [KFP Executor x INFO]: Got executor_input:\n    {\n    }\n    [mini-o3] kept")
    assert capsys.readouterr().out == "    [mini-o3] kept\n"
    assert not isinstance(sys.stdout, ExecutorLogFilter)


def test_a_stage_result_output_is_one_short_line(caplog):
    """kfp.local 2.17 logs every output value whole (``kfp/local/logging_utils.py:120``
    ``make_log_lines_for_outputs``, via the root logger's ``logging.info`` at ``task_dispatcher.py:228``); a stage result
    dict is hundreds of characters, so the embedded run shows its stage and URI instead."""
    import logging

    from mini_o3.stages import StageResult

    result = StageResult("sft", "/r/sft", model_uri="/r/sft/model", metrics={"final_loss": 0.07},
                         outputs={"model": "/r/sft/model", "run": "/r/sft/run"}).to_dict()
    message = "\n".join(["Task 'sft' outputs:", f"    Output: {result}", "    metrics: Metrics( name='metrics',"])
    caplog.set_level(logging.INFO)
    with quiet_executor_logs(enabled=True):
        logging.info(message)
    with quiet_executor_logs(enabled=False):
        logging.info(message)
    compact, verbose = (r.getMessage() for r in caplog.records)
    assert compact.split("\n") == ["Task 'sft' outputs:", "    Output: sft stage result: /r/sft/model",
                                   "    metrics: Metrics( name='metrics',"]
    assert verbose == message
