"""Command-line interface: one module per group of commands, all registered on `main` (see app.py)."""

from __future__ import annotations

from autolabel.cli import annotation, audit, maintenance, review, run, serve  # noqa: F401  (each registers its commands)
from autolabel.cli.app import main

__all__ = ["main"]
