"""The embedded run's console: kfp.local's executor chatter hidden unless ``--verbose``.

kfp.local streams every task's stdout into ours, and the KFP executor of each task logs its whole
``executor_input`` as indented JSON (hundreds of lines per task, kfp ``dsl/executor_main.py``
``Got executor_input:``) plus the component-loading lines. People read the stage lines
(``[mini-o3] …``), progress and errors; the dump stays one ``--verbose`` away. Each task's stage
result (a dict output, several hundred characters) is logged as one short line: the stage and the
URI it produced.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import re
import sys
from collections.abc import Iterator
from typing import TextIO

#: Executor lines that carry no information for a person (kept under ``--verbose``).
_NOISE = re.compile(r"\[KFP Executor [^\]]*\]: (Looking for component|Loading KFP component|Wrote executor output"
                    r"|Did not write output file)")
_DUMP_START = re.compile(r"\[KFP Executor [^\]]*\]: Got executor_input:\s*$")


_OUTPUT_LINE = re.compile(r"^(\s+\w+: )(\{.*\})$")


def compact_results(message: str) -> str:
    """kfp.local's ``Task … outputs:`` message with every stage-result dict shortened to
    ``<stage> stage result: <model URI or output URI>``; other lines unchanged."""
    lines = []
    for line in message.split("\n"):
        match = _OUTPUT_LINE.match(line)
        if match:
            try:
                value = ast.literal_eval(match.group(2))
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                value = None
            if isinstance(value, dict) and {"stage", "out_uri"} <= set(value):
                line = f"{match.group(1)}{value['stage']} stage result: {value.get('model_uri') or value['out_uri']}"
        lines.append(line)
    return "\n".join(lines)


class _CompactResults(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and " outputs:" in record.msg and not record.args:
            record.msg = compact_results(record.msg)
        return True


class ExecutorLogFilter(io.TextIOBase):
    """A line filter over ``target``: drops each executor-input JSON dump (from its
    ``Got executor_input:`` line through the closing brace at the dump's own indent) and the
    executor's loading lines; everything else passes unchanged."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self._pending = ""
        self._dump_indent: str | None = None  # the indent of the dump's closing "}" while inside one
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._line(line + "\n")
        return len(text)

    def _line(self, line: str) -> None:
        if self._dump_indent is not None:
            self.dropped += 1
            if line.rstrip("\n") == self._dump_indent + "}":
                self._dump_indent = None
            return
        match = _DUMP_START.search(line)
        if match:
            self._dump_indent = line[: len(line) - len(line.lstrip())]
            self.dropped += 1
            return
        if _NOISE.search(line):
            self.dropped += 1
            return
        self.target.write(line)

    def flush(self) -> None:
        if self._pending and self._dump_indent is None:
            self._line(self._pending)
            self._pending = ""
        self.target.flush()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", "utf-8")

    def isatty(self) -> bool:
        return self.target.isatty()


@contextlib.contextmanager
def quiet_executor_logs(enabled: bool = True) -> Iterator[None]:
    """While the pipeline runs, route ``sys.stdout`` through ``ExecutorLogFilter`` (``enabled``)."""
    if not enabled:
        yield
        return
    original = sys.stdout
    sys.stdout = ExecutorLogFilter(original)
    results = _CompactResults()
    logging.getLogger().addFilter(results)  # kfp.local logs task outputs on the root logger
    try:
        yield
    finally:
        logging.getLogger().removeFilter(results)
        sys.stdout.flush()
        sys.stdout = original
