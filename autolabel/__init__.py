"""autolabel: label image datasets with zero-shot image-text models; version and the public Python API."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from autolabel.core.errors import AutolabelError, ModelError, SourceError, SpecError, TooManyErrors, UsageError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from autolabel.api import Labeler
    from autolabel.core.config import RunConfig
    from autolabel.labelling.pipeline import RunResult

__all__ = ["__version__", "Labeler", "AutolabelError", "UsageError", "SpecError", "SourceError", "ModelError",
           "TooManyErrors", "label_images"]


logging.getLogger(__name__).addHandler(logging.NullHandler())  # a library: the application decides what is shown


def __dir__() -> list[str]:
    """`Labeler` is loaded on first use; list it for tab completion all the same."""
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str) -> Any:
    """`autolabel.Labeler` without importing torch at `import autolabel`."""
    if name == "Labeler":
        from autolabel.api import Labeler

        return Labeler
    raise AttributeError(f"module 'autolabel' has no attribute {name!r}")


def label_images(config: RunConfig, **kwargs: Any) -> RunResult:
    """Run a labeling job from a RunConfig (see `autolabel.labelling.pipeline.run`; `Labeler` is the friendlier way)."""
    from autolabel.labelling.pipeline import run

    return run(config, **kwargs)
