"""The README runs as written: every shell command block in README.md (```bash / ```sh fences and
4-space indented blocks) is run by this test, in a fresh folder, unless the comment line just
before it marks it ``<!-- readme-test: skip (REASON: why) -->`` with REASON one of ``SKIP_REASONS``
(it needs a GPU, a cluster, the model hub, or it is this test suite). A new runnable block is
picked up and must pass. Embedded runs use the smoke profile (``MINI_O3_PROFILE=smoke``, the
documented env of ``mini-o3 run``); the other commands carry their tiny sizes in the README."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SKIP_REASONS = ("gpu", "cluster", "hub", "suite")
MARKER = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>[a-z]+):\s*(?P<why>[^)]+)\)\s*-->")
SHELLS = ("bash", "sh", "shell", "console")
#: What `make demo` needs in the folder it runs in (the venv it runs is the checkout's).
MAKE_FILES = ("Makefile", ".venv", "pyproject.toml", "constraints.txt")


@dataclass
class Block:
    line: int  # 1-based line of the block's first line
    text: str
    skip: str | None  # the marker's reason, None: run it
    marker: str | None  # the marker line (or a comment that looks like one)


def blocks(text: str) -> list[Block]:
    """Shell command blocks of a Markdown text, each with the comment line just before it."""
    lines = text.splitlines()
    found: list[Block] = []
    i = 0

    def marker_before(start: int) -> str | None:
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        return lines[j].strip() if j >= 0 and lines[j].strip().startswith("<!--") else None

    while i < len(lines):
        line = lines[i]
        fence = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)", line)
        if fence:
            end = next((k for k in range(i + 1, len(lines)) if lines[k].startswith(fence.group(1))), len(lines))
            if fence.group(2).lower() in SHELLS:
                found.append(_block(i + 2, "\n".join(lines[i + 1:end]), marker_before(i)))
            i = end + 1
            continue
        if line.startswith("    ") and line.strip() and (i == 0 or not lines[i - 1].strip()):
            end = i
            while end < len(lines) and (lines[end].startswith("    ") or not lines[end].strip()):
                end += 1
            body = "\n".join(l[4:] for l in lines[i:end]).strip("\n")
            found.append(_block(i + 1, body, marker_before(i)))
            i = end
            continue
        i += 1
    return found


def _block(line: int, text: str, marker: str | None) -> Block:
    match = MARKER.fullmatch(marker) if marker else None
    return Block(line, text, match.group("reason") if match else None, marker)


ALL = blocks(README.read_text())
RUN = [b for b in ALL if b.skip is None]


def test_blocks_are_found_and_every_skip_says_why():
    assert len(ALL) >= 8 and len(RUN) >= 2, [(b.line, b.skip) for b in ALL]
    for block in ALL:
        if block.marker and "readme-test" in block.marker:
            assert block.skip in SKIP_REASONS, f"README line {block.line}: bad marker {block.marker!r}"


def test_the_parser_sees_fences_indents_and_markers():
    text = ("intro\n\n```bash\necho a\n```\n\n<!-- readme-test: skip (gpu: needs one) -->\n```bash\necho b\n```\n\n"
            "```python\nx = 1\n```\n\n    echo c \\\n        --flag\n\n- item\n  continued\n")
    got = [(b.line, b.text, b.skip) for b in blocks(text)]
    assert got == [(4, "echo a", None), (9, "echo b", "gpu"), (16, "echo c \\\n    --flag", None)]


@pytest.mark.slow
@pytest.mark.parametrize("block", RUN, ids=[f"README-L{b.line}" for b in RUN])
def test_readme_block_runs_as_written(block: Block, tmp_path: Path):
    for name in MAKE_FILES:
        if (ROOT / name).exists():
            (tmp_path / name).symlink_to(ROOT / name)
    stamp = ROOT / ".venv" / ".installed"
    if stamp.exists():  # the venv is set up (make test did it): make must not re-install it from here, where
        # there is no src/ — a fresh clone's pyproject.toml can be newer than an older venv's stamp
        for name in ("pyproject.toml", "constraints.txt"):
            (tmp_path / name).unlink()
            shutil.copy2(ROOT / name, tmp_path / name)
            os.utime(tmp_path / name, (stamp.stat().st_mtime - 1,) * 2)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MINI_O3_PIPELINES_DIR")}
    env.update({"PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
                "TRANSFORMERS_OFFLINE": "1", "MINI_O3_PROFILE": "smoke", "COLUMNS": "200", "MPLBACKEND": "Agg"})
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block.text], cwd=tmp_path, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=1500)
    assert done.returncode == 0, f"README line {block.line} failed (exit {done.returncode}):\n{done.stdout[-4000:]}"
    assert "Traceback" not in done.stdout, done.stdout[-4000:]
