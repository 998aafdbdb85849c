"""CLI commands of the pipeline layer (registered on the main ``mini-o3`` app)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the pipeline commands to ``app``."""
