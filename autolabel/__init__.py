"""autolabel: label image datasets with zero-shot image-text models; version and the public Python API."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from autolabel.core.errors import (
    AutolabelError,
    ModelError,
    RuntimeFailure,
    SourceError,
    SpecError,
    TooManyErrors,
    UsageError,
)
from autolabel.core.version import __version__

if TYPE_CHECKING:
    from autolabel.api import Labeler
    from autolabel.core.config import RunConfig
    from autolabel.labelling.pipeline import RunResult
    from autolabel.review.exchange import (
        ExportOptions,
        ExportResult,
        ImportResult,
        LabelStudioProject,
        PushConfig,
        PushResult,
        export_labels,
        import_reviews,
        push_labels,
    )

__all__ = ["__version__", "Labeler", "AutolabelError", "UsageError", "SpecError", "SourceError", "ModelError",
           "TooManyErrors", "RuntimeFailure", "label_images", "export_labels", "import_reviews", "push_labels",
           "ExportOptions", "ExportResult", "ImportResult", "LabelStudioProject", "PushConfig", "PushResult"]

# The review side's round trip (autolabel.review.exchange), loaded on first use like Labeler.
_EXCHANGE = ("export_labels", "import_reviews", "push_labels", "ExportOptions", "ExportResult", "ImportResult",
             "LabelStudioProject", "PushConfig", "PushResult")


logging.getLogger(__name__).addHandler(logging.NullHandler())  # a library: the application decides what is shown


def __dir__() -> list[str]:
    """`Labeler` and the review functions are loaded on first use; list them for tab completion all the same."""
    return sorted(__all__)


def __getattr__(name: str) -> Any:
    """`autolabel.Labeler` and `autolabel.export_labels` … without importing torch (or pandas) at `import autolabel`."""
    if name == "Labeler":
        from autolabel.api import Labeler

        return Labeler
    if name in _EXCHANGE:
        from autolabel.review import exchange

        return getattr(exchange, name)
    raise AttributeError(f"module 'autolabel' has no attribute {name!r}")


def label_images(config: RunConfig, **kwargs: Any) -> RunResult:
    """Run a labeling job from a RunConfig (see `autolabel.labelling.pipeline.run`; `Labeler` is the friendlier way)."""
    from autolabel.labelling.pipeline import run

    return run(config, **kwargs)
