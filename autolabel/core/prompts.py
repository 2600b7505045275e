"""Template sets shipped in prompts/ and `{label}` placeholder expansion."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

PLACEHOLDERS = ("{label}", "{}")


def prompts_dir() -> Path:
    """Folder holding the shipped sets: inside the wheel, else the repository's top-level prompts/."""
    packaged = Path(__file__).resolve().parents[1] / "prompts"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "prompts"


@dataclass(frozen=True)
class TemplateSet:
    """A named list of templates shipped with autolabel."""

    name: str
    description: str
    templates: tuple[str, ...]


def has_placeholder(template: str) -> bool:
    """True if the template contains `{label}` or `{}`."""
    return any(p in template for p in PLACEHOLDERS)


def expand(template: str, label: str) -> str:
    """Put `label` into every placeholder of `template`."""
    for placeholder in PLACEHOLDERS:
        template = template.replace(placeholder, label)
    return template


def template_sets() -> dict[str, TemplateSet]:
    """All shipped template sets by name, sorted."""
    sets = {}
    for path in sorted(prompts_dir().glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        sets[path.stem] = TemplateSet(
            name=path.stem,
            description=str(data.get("description", "")),
            templates=tuple(str(t) for t in data.get("templates", [])),
        )
    return sets


def example_specs() -> list[Path]:
    """The shipped example label specs."""
    return sorted((prompts_dir() / "examples").glob("*.yaml"))
