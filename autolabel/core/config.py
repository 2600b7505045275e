"""A labeling run's configuration: one frozen dataclass per stage, built from the CLI's flat options in one place.

Field names are the CLI's option names (`--batch-size` → `batch_size`), so `RunConfig.from_options` routes
each option to its stage by name: a new option is a field here, a flag in cli/run.py, and its use.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from autolabel.core.errors import UsageError

DEFAULT_SHARD_SIZE = 100_000


@dataclass(frozen=True)
class ModelConfig:
    """Which checkpoint, on which device, at which precision."""

    model: str | None = None  # hub id or folder; None: the spec's `model:`, else the default model
    device: str = "auto"
    precision: str = "auto"

    def __post_init__(self) -> None:
        from autolabel.core.precision import CHOICES, require_runtime

        if self.precision not in CHOICES:
            raise UsageError(f"--precision must be {', '.join(CHOICES[:-1])} or {CHOICES[-1]}, got {self.precision}")
        require_runtime(self.precision)


@dataclass(frozen=True)
class DecodeConfig:
    """How images become model inputs."""

    full_decode: bool = False  # False: JPEG DCT draft decoding down to 2x the model input
    workers: int = 0  # decode threads; 0: one per core, at most 32

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise UsageError(f"--workers must be 0 (auto) or more, got {self.workers}")


@dataclass(frozen=True)
class ClassifyConfig:
    """How embeddings become decisions (besides the label spec)."""

    top_k: int | None = None  # None: 3, or every class for a multi-label spec (calibration needs each score)
    threshold: float | None = None  # overrides the spec's global threshold

    def __post_init__(self) -> None:
        if self.top_k is not None and self.top_k < 1:
            raise UsageError(f"--top-k must be at least 1, got {self.top_k}")

    def top_k_for(self, default: int) -> int:
        """--top-k, else the default of the spec's task (3 single-label, every class multi-label)."""
        return self.top_k if self.top_k is not None else default


@dataclass(frozen=True)
class CacheConfig:
    """Where embeddings are cached, if at all."""

    cache_dir: str | None = None  # None: $AUTOLABEL_CACHE_DIR, else $XDG_CACHE_HOME/autolabel, else ~/.cache/autolabel
    no_cache: bool = False


@dataclass(frozen=True)
class OutputConfig:
    """Where results go: one file, or a folder of shards that a re-run resumes."""

    out: str
    shard_size: int = DEFAULT_SHARD_SIZE
    overwrite: bool = False
    summary_json: str | None = None
    max_errors: int | None = None

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise UsageError(f"--shard-size must be at least 1, got {self.shard_size}")
        if self.max_errors is not None and self.max_errors < 0:
            raise UsageError(f"--max-errors must be 0 or more, got {self.max_errors}")


@dataclass(frozen=True)
class EngineConfig:
    """Which engine runs the stages, and its knobs."""

    engine: str = "local"  # or "ray"
    batch_size: int = 32
    ray_address: str | None = None
    actors: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0

    def __post_init__(self) -> None:
        if self.engine not in ("local", "ray"):
            raise UsageError(f"--engine must be local or ray, got {self.engine}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.actors < 1 or self.cpus_per_actor <= 0 or self.gpus_per_actor < 0:
            raise UsageError("--actors must be ≥ 1, --cpus-per-actor > 0 and --gpus-per-actor ≥ 0")


@dataclass(frozen=True)
class RunConfig:
    """Everything `autolabel run` needs, grouped by the stage that uses it."""

    source: str
    labels: str
    output: OutputConfig
    path_column: str | None = None
    examples: tuple[str, ...] = ()
    examples_column: str | None = None
    quiet: bool = False
    verbose: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)

    def __post_init__(self) -> None:
        if self.model.precision == "int8" and self.engine.engine != "local":
            raise UsageError("--precision int8 runs with the local engine (ONNX Runtime); use --engine local, or "
                             "--precision auto with --engine ray")

    @classmethod
    def from_options(cls, source: str, labels: str, out: str, **options: Any) -> RunConfig:
        """Route flat option names (the CLI's) to their stage configs; an unknown name is a UsageError."""
        return cls(source=source, labels=labels, output=OutputConfig(out="")).with_options(out=out, **options)

    def with_options(self, **options: Any) -> RunConfig:
        """This config with flat options (the CLI's names, `out` among them) replaced in the stage configs they
        belong to, each checked again; an unknown name is a UsageError."""
        from autolabel.core.storage import local_path

        for name in ("out", "summary_json"):
            if options.get(name):
                options[name] = local_path(str(options[name]))
        stages: dict[str, Any] = {}
        for attr, stage in _STAGES.items():
            names = {f.name for f in fields(stage)}
            stages[attr] = replace(getattr(self, attr), **{k: options.pop(k) for k in list(options) if k in names})
        output = replace(self.output, **{k: options.pop(k) for k in list(options) if k in _OUTPUT_NAMES})
        own = {f.name for f in fields(self)} - set(_STAGES) - {"source", "labels", "output"}
        unknown = sorted(set(options) - own)
        if unknown:
            raise UsageError(f"unknown run option(s): {', '.join(unknown)}")
        if "examples" in options:
            options["examples"] = tuple(options["examples"] or ())
        return replace(self, **options, **stages, output=output)


_STAGES: dict[str, type] = {"model": ModelConfig, "decode": DecodeConfig, "classify": ClassifyConfig,
                            "cache": CacheConfig, "engine": EngineConfig}
_OUTPUT_NAMES = {f.name for f in fields(OutputConfig)}
