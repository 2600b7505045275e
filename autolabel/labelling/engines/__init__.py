"""Engines run the stages over a stream of records: `local` (threads on this machine) or `ray` (a cluster)."""

from __future__ import annotations

from autolabel.core.records import Batch, Shard
from autolabel.labelling.engines.base import Engine

__all__ = ["Batch", "Engine", "Shard"]
