"""autolabel: label image datasets with zero-shot image-text models; version and public API."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from autolabel.pipeline import RunConfig, RunResult

__all__ = ["__version__", "label_images"]


def label_images(config: RunConfig, **kwargs: Any) -> RunResult:
    """Run a labeling job (see `autolabel.pipeline.run`); imports torch lazily."""
    from autolabel.pipeline import run

    return run(config, **kwargs)
