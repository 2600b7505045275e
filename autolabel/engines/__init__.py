"""Engines run the stages over a stream of records: `local` (threads on this machine) or `ray` (a cluster)."""

from __future__ import annotations

from autolabel.engines.base import Engine
from autolabel.records import Batch, Shard

__all__ = ["Batch", "Engine", "Shard"]
